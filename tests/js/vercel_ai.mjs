// The Vercel AI SDK's default OpenAI provider (the Responses API) against a running relay.
// usage: node vercel_ai.mjs BASE_URL TOKEN MODEL  -> prints one JSON line with what came back
import { createOpenAI } from "@ai-sdk/openai";
import { generateText, streamText } from "ai";

const [baseURL, apiKey, modelName] = process.argv.slice(2);
const openai = createOpenAI({ baseURL, apiKey });
const model = openai(modelName);

const out = {};
const gen = await generateText({ model, prompt: "hello from node", maxRetries: 0 });
out.generate = { text: gen.text, finishReason: gen.finishReason, usage: gen.usage };

const stream = streamText({ model, system: "be brief", prompt: "stream please", maxRetries: 0,
                            onError: ({ error }) => { out.streamError = String(error); } });
let text = "";
for await (const piece of stream.textStream) text += piece;
out.stream = { text, finishReason: await stream.finishReason, usage: await stream.usage };

try {
  await generateText({ model: openai("no-such-model"), prompt: "x", maxRetries: 0 });
  out.unknown = "no error";
} catch (error) {
  out.unknown = { status: error.statusCode, message: String(error.message) };
}
console.log(JSON.stringify(out));
