// The Anthropic TypeScript SDK against a running `cfai serve --offline` (tests/server/test_anthropic_js.py).
// Reads CFAI_URL and CFAI_KEY; prints one JSON object of what each call gave, for the test to check.
import Anthropic from "@anthropic-ai/sdk";

const client = new Anthropic({ apiKey: process.env.CFAI_KEY, baseURL: process.env.CFAI_URL, maxRetries: 0 });
const model = "claude-sonnet-4-5";
const weather = {
  name: "get_weather",
  description: "Current weather for a city",
  input_schema: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
};
const text = (message) => message.content.filter((b) => b.type === "text").map((b) => b.text).join("");
const out = {};

const plain = await client.messages.create({
  model, max_tokens: 200, system: [{ type: "text", text: "Be brief.", cache_control: { type: "ephemeral" } }],
  messages: [{ role: "user", content: "Hello from TypeScript" }],
});
out.plain = { id: plain.id, model: plain.model, text: text(plain), stop_reason: plain.stop_reason,
              output_tokens: plain.usage.output_tokens };

const stopped = await client.messages.stream({
  model, max_tokens: 200, stop_sequences: ["canned"], messages: [{ role: "user", content: "hi" }],
}).finalMessage();
out.stopped = { text: text(stopped), stop_reason: stopped.stop_reason, stop_sequence: stopped.stop_sequence };

// A whole tool loop, streamed: tool_use, the tool's result sent back, the answer.
const turns = [{ role: "user", content: 'Weather in Paris? [emulator:args={"city": "Paris"}]' }];
const first = await client.messages.stream({ model, max_tokens: 300, tools: [weather], messages: turns }).finalMessage();
const call = first.content.find((b) => b.type === "tool_use");
turns.push({ role: "assistant", content: first.content },
           { role: "user", content: [{ type: "tool_result", tool_use_id: call.id, content: "18 C and sunny" }] });
const final = await client.messages.create({ model, max_tokens: 300, tools: [weather], messages: turns });
out.tools = { stop_reason: first.stop_reason, call: { id: call.id, name: call.name, input: call.input },
              final: text(final), final_stop: final.stop_reason };

out.count = (await client.messages.countTokens({ model, messages: [{ role: "user", content: "Hi" }] })).input_tokens;
out.models = (await client.models.list({ limit: 3 })).data.map((m) => m.type);

try {
  await new Anthropic({ apiKey: "sk-wrong", baseURL: process.env.CFAI_URL, maxRetries: 0 }).messages.create({
    model, max_tokens: 5, messages: [{ role: "user", content: "hi" }] });
  out.auth = "no error";
} catch (error) {
  out.auth = { authError: error instanceof Anthropic.AuthenticationError, status: error.status,
               type: error.error?.error?.type };
}
console.log(JSON.stringify(out));
