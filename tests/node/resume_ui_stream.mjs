// Does what useChat({resume: true}) does after a reload, with the AI SDK's own transport:
// send a message, drop the connection after a few text deltas, then `reconnectToStream`
// (GET {api}/{chatId}/stream) and assemble the resumed message with `readUIMessageStream`.
// Prints one JSON line per stage: {"stage": "dropped"}, {"stage": "resumed"} (the test lets
// the held upstream go on only then), and the result.
// Usage: node resume_ui_stream.mjs <base-url> <chain> <chat id> <user text | ""> [headers JSON]
//        An empty user text only reconnects (a chat with nothing running: `resumed` is null).
import { DefaultChatTransport, readUIMessageStream } from "ai";

const [baseUrl, chain, chatId, text, headers = "{}"] = process.argv.slice(2);
const transport = new DefaultChatTransport({
  api: `${baseUrl}/chains/${chain}/ui`,
  headers: JSON.parse(headers),
  // The run must outlive the dropped request for there to be something to resume.
  body: { on_disconnect: "continue" },
});
const say = (line) => console.log(JSON.stringify(line));

async function sendThenDrop() {
  const abortController = new AbortController();
  const stream = await transport.sendMessages({
    chatId,
    messages: [{ id: "m1", role: "user", parts: [{ type: "text", text }] }],
    trigger: "submit-message",
    messageId: undefined,
    abortSignal: abortController.signal,
  });
  const reader = stream.getReader();
  const types = [];
  while (types.filter((type) => type === "text-delta").length < 2) {
    const { value, done } = await reader.read();
    if (done) break;
    types.push(value.type);
  }
  abortController.abort();
  await reader.cancel().catch(() => {});
  return types;
}

const result = { firstChunkTypes: text ? await sendThenDrop() : [], errors: [] };
say({ stage: "dropped" });
const resumed = await transport.reconnectToStream({ chatId });
say({ stage: "resumed" });
if (resumed === null) {
  result.resumed = null;
} else {
  let message;
  for await (const snapshot of readUIMessageStream({
    stream: resumed,
    onError: (error) => result.errors.push(String(error?.message ?? error)),
  })) {
    message = snapshot;
  }
  result.resumed = message ?? null;
  result.text = (message?.parts ?? [])
    .filter((part) => part.type === "text")
    .map((part) => part.text)
    .join("");
}
say(result);
