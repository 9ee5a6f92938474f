// Server-Sent Events from a fetch() body, parsed as the HTML standard's EventSource does.
// fetch rather than EventSource: a POST body and an Authorization header, and an
// AbortController whose abort() closes the connection (the server then cancels the run).

const LINE_END = /\r\n|\r|\n/;

// Yields {event, data, id} for each dispatched event; comments (keepalives) are skipped.
// TextDecoderStream drops the one leading BOM the standard allows.
export async function* readEvents(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let pending = { event: "", data: [], id: null };
  // Each whole line in the buffer, in order; at the end of the stream a final "\r" ends one too.
  function* lines(ended) {
    let match;
    while ((match = LINE_END.exec(buffer))) {
      // A lone "\r" at the end may be the first half of "\r\n": wait for the next chunk.
      if (!ended && match[0] === "\r" && match.index === buffer.length - 1) return;
      const line = buffer.slice(0, match.index);
      buffer = buffer.slice(match.index + match[0].length);
      yield line;
    }
  }
  // Applies one line; returns the event a blank line completes, if any.
  function apply(line) {
    if (line === "") {
      const done = pending.data.length
        ? { event: pending.event || "message", data: pending.data.join("\n"), id: pending.id }
        : null;
      pending = { event: "", data: [], id: pending.id };
      return done;
    }
    if (line.startsWith(":")) return null;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") pending.event = value;
    else if (field === "data") pending.data.push(value);
    else if (field === "id" && !value.includes("\0")) pending.id = value;
    return null;
  }
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (!done) buffer += value;
      for (const line of lines(done)) {
        const event = apply(line);
        if (event) yield event;
      }
      // An event the stream did not finish with a blank line is dropped, as the standard says.
      if (done) return;
    }
  } finally {
    // Leaving early (an `end` event, an error) closes the connection rather than draining it.
    reader.cancel().catch(() => {});
  }
}
