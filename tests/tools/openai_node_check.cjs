// The official `openai` npm client against augur serve, unchanged: models, completions
// and chat, streaming and not, a usage chunk, and a 400 surfacing as the client's
// APIError (tests/mpi/serve_openai_node.sh). Usage: node openai_node_check.cjs PORT MODEL
// PROMPT MAX_TOKENS EXPECTED_FILE
const fs = require('fs');
const mod = require('openai');
const OpenAI = mod.OpenAI || mod.default || mod;

const [port, model, prompt, maxTokensText, expectedFile] = process.argv.slice(2);
const maxTokens = Number(maxTokensText);
const expected = fs.readFileSync(expectedFile, 'utf8');
const client = new OpenAI({ baseURL: `http://127.0.0.1:${port}/v1`, apiKey: 'unused', maxRetries: 0 });

function check(cond, what) {
  if (!cond) throw new Error(what);
}

async function main() {
  const version = JSON.parse(fs.readFileSync(require.resolve('openai').replace(/index\.js$/, 'package.json'), 'utf8')).version;
  console.log(`openai npm client ${version}, node ${process.version}`);
  const models = await client.models.list();
  const ids = [];
  for await (const m of models) ids.push(m.id);
  check(ids.includes(model), `models.list: ${JSON.stringify(ids)}`);
  console.log('ok: models.list');

  const c = await client.completions.create({ model, prompt, max_tokens: maxTokens, temperature: 0 });
  check(c.choices[0].text === expected, `completions: ${JSON.stringify(c.choices[0].text)} vs ${JSON.stringify(expected)}`);
  check(c.usage.completion_tokens === maxTokens, `completions usage: ${JSON.stringify(c.usage)}`);
  console.log('ok: completions.create equals augur generate');

  const s = await client.completions.create({ model, prompt, max_tokens: maxTokens, temperature: 0, stream: true,
                                              stream_options: { include_usage: true } });
  let text = '', usage = null, finish = null;
  for await (const chunk of s) {
    if (chunk.usage) usage = chunk.usage;
    if (chunk.choices.length) {
      text += chunk.choices[0].text;
      if (chunk.choices[0].finish_reason) finish = chunk.choices[0].finish_reason;
    }
  }
  check(text === expected && finish === 'length', `streamed completion: ${JSON.stringify(text)} (${finish})`);
  check(usage && usage.completion_tokens === maxTokens, `stream usage: ${JSON.stringify(usage)}`);
  console.log('ok: streamed completions with a usage chunk');

  const messages = [{ role: 'user', content: prompt }];
  const chat = await client.chat.completions.create({ model, messages, max_tokens: maxTokens, temperature: 0 });
  const content = chat.choices[0].message.content;
  check(chat.choices[0].message.role === 'assistant' && typeof content === 'string', `chat: ${JSON.stringify(chat)}`);
  const cs = await client.chat.completions.create({ model, messages, max_tokens: maxTokens, temperature: 0, stream: true });
  let streamed = '';
  for await (const chunk of cs) streamed += chunk.choices[0]?.delta?.content || '';
  check(streamed === content, `streamed chat ${JSON.stringify(streamed)} vs ${JSON.stringify(content)}`);
  console.log('ok: chat.completions.create, streaming and not');

  try {
    await client.completions.create({ model, prompt, max_tokens: maxTokens, n: 2 });
    throw new Error('n=2 was accepted');
  } catch (e) {
    check(e instanceof OpenAI.APIError && e.status === 400 && e.param === 'n', `n=2: ${e}`);
  }
  console.log('ok: a 400 arrives as APIError with status and param');
  console.log('PASS');
}

main().catch((e) => {
  console.error(`FAIL: ${e.stack || e}`);
  process.exit(1);
});
