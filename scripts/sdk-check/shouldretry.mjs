// What the official Node SDK does with the gateway's answers, unmodified,
// with its default max_retries (2): every HTTP request it sends is counted
// through its fetch option. Run by shouldretry.sh.
import OpenAI, { toFile } from 'openai';
let sent = 0;
const counting = (url, init) => { sent++; return fetch(url, init); };
const client = (key) => new OpenAI({ baseURL: 'http://127.0.0.1:19210/v1', apiKey: key, fetch: counting });
const chat = (c) => c.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'hi' }], max_tokens: 4 });
async function attempt(name, fn) {
  const before = sent, t0 = Date.now();
  let outcome;
  try { await fn(); outcome = 'ok'; } catch (e) { outcome = `${e.status} ${e.code ?? e.error?.code ?? ''}`.trim(); }
  console.log(`${name} | ${outcome} | requests sent ${sent - before} | ${((Date.now() - t0) / 1000).toFixed(1)} s`);
}
// A limit refilling in 10 minutes: the 429 says Retry-After: 600 and
// x-should-retry: false (sent past 2 minutes); without the header the SDK
// would retry twice on its 0.5-8 s backoff (it honours a Retry-After only
// up to 60 s).
const slow = client('sk-slow');
await attempt('slow limit, first', () => chat(slow));
await attempt('slow limit, second', () => chat(slow));
// A limit refilling in 2 s: no header, the SDK waits as told and succeeds.
const fast = client('sk-fast');
await attempt('fast limit, first', () => chat(fast));
await attempt('fast limit, second', () => chat(fast));
// A 409 (cancel a cancelled batch): the SDK retries 409s unless told.
const c = client('sk-batch');
const f = await c.files.create({ file: await toFile(Buffer.from(JSON.stringify({ custom_id: 'a', method: 'POST', url: '/v1/chat/completions', body: { model: 'm', messages: [{ role: 'user', content: 'q' }], max_tokens: 4 } })), 'in.jsonl'), purpose: 'batch' });
let b = await c.batches.create({ input_file_id: f.id, endpoint: '/v1/chat/completions', completion_window: '24h' });
await c.batches.cancel(b.id);
for (let i = 0; i < 100 && !['cancelled', 'completed'].includes(b.status); i++) { await new Promise(r => setTimeout(r, 100)); b = await c.batches.retrieve(b.id); }
await attempt(`cancel a ${b.status} batch`, () => c.batches.cancel(b.id));
