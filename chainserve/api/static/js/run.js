// One streamed run: POST /chains/{name}/stream, its events handed to a view as they arrive.

import { endpoint, errorFrom, requestHeaders, unreachable, ApiError } from "./api.js";
import { readEvents } from "./sse.js";

const MESSAGE_TYPES = new Set(["ai", "AIMessage", "AIMessageChunk"]);

// The text a `data` event adds: a string chunk, or a model message chunk's content (a string
// or text parts). Any other value (structured output, a dict) is drawn from its `object`
// events instead, as one object updated in place.
export function textOf(chunk) {
  if (typeof chunk === "string") return chunk;
  return MESSAGE_TYPES.has(chunk?.type) ? contentText(chunk.content) : "";
}

// A message's content as text: a string, or the text of its parts (others, images, dropped).
export function contentText(content) {
  if (typeof content === "string") return content;
  if (!Array.isArray(content)) return "";
  const text = (part) => (typeof part === "string" ? part : part?.type === "text" ? part.text ?? "" : "");
  return content.map(text).join("");
}

// Streams one run into `view` ({metadata, text, object, toolCall, toolResult, sources, end,
// fail, stopped}).
// Returns "done", "stopped" or "failed"; aborting `signal` is the Stop button.
export async function streamRun(chain, body, signal, view) {
  const clock = { started: performance.now(), firstToken: null, chunks: 0 };
  let response;
  try {
    response = await fetch(endpoint(`chains/${encodeURIComponent(chain)}/stream`), {
      method: "POST",
      headers: requestHeaders(),
      body: JSON.stringify(body),
      signal,
    });
  } catch (error) {
    if (signal.aborted) return view.stopped(clock), "stopped";
    return view.fail(unreachable(error), clock), "failed";
  }
  try {
    if (!response.ok) return view.fail(await errorFrom(response), clock), "failed";
    for await (const { event, data } of readEvents(response.body)) {
      const payload = JSON.parse(data);
      if (event === "metadata") view.metadata(payload);
      else if (event === "sources") view.sources(payload);
      else if (event === "data") {
        clock.firstToken ??= performance.now();
        clock.chunks += 1;
        view.text(textOf(payload));
      } else if (event === "object") {
        clock.firstToken ??= performance.now();
        view.object(payload);
      } else if (event === "tool_call") view.toolCall(payload);
      else if (event === "tool_result") view.toolResult(payload);
      else if (event === "end") return view.end(payload, clock), "done";
      else if (event === "error") {
        const failure = new ApiError(0, payload.code, payload.message);
        failure.retryable = payload.retryable;
        return view.fail(failure, clock), "failed";
      }
    }
  } catch (error) {
    if (signal.aborted) return view.stopped(clock), "stopped";
    return view.fail(new ApiError(0, "", `the stream broke: ${error.message}`), clock), "failed";
  }
  return view.fail(new ApiError(0, "", "the stream ended without an end event"), clock), "failed";
}
