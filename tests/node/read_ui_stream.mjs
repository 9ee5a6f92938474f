// Reads chainserve's /chains/{name}/ui stream with the AI SDK's own parser and message
// assembler, and prints what useChat would end up with, as one JSON line.
// Usage: node read_ui_stream.mjs <base-url> <chain> <user text> [extra JSON body fields]
//        node read_ui_stream.mjs --file <saved stream>   (checks a recorded transcript)
import { readFile } from "node:fs/promises";
import { parseJsonEventStream, readUIMessageStream, uiMessageChunkSchema } from "ai";

async function request() {
  if (process.argv[2] === "--file") {
    return new Response(await readFile(process.argv[3]), {
      headers: { "x-vercel-ai-ui-message-stream": "v1" },
    });
  }
  return fetch(`${baseUrl}/chains/${chain}/ui`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
}

const [baseUrl, chain, text, extra = "{}"] = process.argv.slice(2);
const body = process.argv[2] === "--file" ? null : {
  id: "chat-1",
  trigger: "submit-message",
  messages: [{ id: "m1", role: "user", parts: [{ type: "text", text }] }],
  ...JSON.parse(extra ?? "{}"),
};
const response = await request();
const result = {
  status: response.status,
  protocolHeader: response.headers.get("x-vercel-ai-ui-message-stream"),
  chunkTypes: [],
  invalidChunks: [],
  errors: [],
};
if (!response.ok) {
  result.body = await response.text();
} else {
  const parsed = parseJsonEventStream({ stream: response.body, schema: uiMessageChunkSchema });
  const chunks = parsed.pipeThrough(
    new TransformStream({
      transform(part, controller) {
        if (!part.success) {
          result.invalidChunks.push(String(part.error));
          return;
        }
        result.chunkTypes.push(part.value.type);
        controller.enqueue(part.value);
      },
    }),
  );
  let message;
  for await (const snapshot of readUIMessageStream({
    stream: chunks,
    onError: (error) => result.errors.push(String(error?.message ?? error)),
  })) {
    message = snapshot;
  }
  result.message = message ?? null;
  result.text = (message?.parts ?? [])
    .filter((part) => part.type === "text")
    .map((part) => part.text)
    .join("");
}
console.log(JSON.stringify(result));
