// Asks chainserve's Responses API for one answer twice with the official OpenAI SDK for Node,
// streamed (the SDK's typed events, then its stream helper) and whole, and prints what the SDK made of each, as one
// JSON line.
// Usage: node responses_api.mjs <base-url ending in /v1> <chain>
import OpenAI from "openai";

const [baseURL, model] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey: "unused", maxRetries: 0 });

const types = [];
let streamed = "";
const stream = await client.responses.create({ model, input: "hi", stream: true });
for await (const event of stream) {
  types.push(event.type);
  if (event.type === "response.output_text.delta") streamed += event.delta;
}
const whole = await client.responses.create({ model, input: "hi" });
// The SDK's stream helper assembles the response from the events itself.
const helped = await client.responses.stream({ model, input: "hi" }).finalResponse();
const helpedText = helped.output
  .filter((item) => item.type === "message")
  .flatMap((item) => item.content.map((part) => part.text))
  .join("");
const result = { types, streamed, whole: whole.output_text, helped: helpedText };
process.stdout.write(JSON.stringify(result) + "\n");
