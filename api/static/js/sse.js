// Server-Sent Events from a fetch() body, parsed as the HTML standard's EventSource does.
// fetch rather than EventSource: a POST body and an Authorization header, and an
// AbortController whose abort() closes the connection (the server then cancels the run).

const LINE_END = /\r\n|\r|\n/;

// Yields {event, data, id} for each dispatched event; comments (keepalives) are skipped.
export async function* readEvents(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let started = false;
  let pending = { event: "", data: [], id: null };
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      if (!started && buffer) {
        buffer = buffer.replace(/^\uFEFF/, "");
        started = true;
      }
      let match;
      while ((match = LINE_END.exec(buffer))) {
        // A lone "\r" at the end may be the first half of "\r\n": wait for the next chunk.
        if (match[0] === "\r" && match.index === buffer.length - 1) break;
        const line = buffer.slice(0, match.index);
        buffer = buffer.slice(match.index + match[0].length);
        if (line === "") {
          if (pending.data.length) {
            yield { event: pending.event || "message", data: pending.data.join("\n"), id: pending.id };
          }
          pending = { event: "", data: [], id: pending.id };
          continue;
        }
        if (line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        let value = colon < 0 ? "" : line.slice(colon + 1);
        if (value.startsWith(" ")) value = value.slice(1);
        if (field === "event") pending.event = value;
        else if (field === "data") pending.data.push(value);
        else if (field === "id" && !value.includes("\0")) pending.id = value;
      }
    }
  } finally {
    // Leaving early (an `end` event, an error) closes the connection rather than draining it.
    reader.cancel().catch(() => {});
  }
}
