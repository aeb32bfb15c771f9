// Queue progress through the official OpenAI Node SDK, unmodified: a
// streamed request that waits in Sluice's queue with X-Sluice-Progress: 1
// receives SSE comment lines before its answer, and the SDK yields exactly
// the answer's chunks (comments are ignored, as the SSE spec says).
import OpenAI from 'openai';
const raw = [];
// A fetch that keeps a copy of the bytes the SDK parses.
const teeFetch = async (url, init) => {
  const res = await fetch(url, init);
  if (!res.body) return res;
  const [mine, copy] = res.body.tee();
  // Once the SDK has thrown it aborts its branch, and the copy may then
  // neither end nor fail: keep what arrived as it arrives (seen below).
  const got = { text: '' };
  got.done = (async () => { const d = new TextDecoder(); try { for await (const b of copy) got.text += d.decode(b, { stream: true }); } catch {} })();
  raw.push(got);
  return new Response(mine, res);
};
const client = new OpenAI({ baseURL: 'http://127.0.0.1:19210/v1', apiKey: 'sk-test', fetch: teeFetch });
const ask = (headers, maxTokens = 20) => client.chat.completions.create(
  { model: 'm', messages: [{ role: 'user', content: 'hi' }], max_tokens: maxTokens, stream: true }, { headers, maxRetries: 0 });
const first = await ask({});
const it = first[Symbol.asyncIterator]();
await it.next(); // streaming: it holds the only slot
const queued = await ask({ 'X-Sluice-Progress': '1' });
let chunks = 0, text = '';
for await (const ch of queued) { chunks++; text += ch.choices[0]?.delta?.content ?? ''; }
for (let r = await it.next(); !r.done; r = await it.next()) {}
// The copy of a stream: whole when it ended, else what arrived within a second.
const seen = async (got) => { await Promise.race([got.done, new Promise(r => setTimeout(r, 1000))]); return got.text; };
const body = await seen(raw[1]);
const comments = body.split('\n').filter(l => l.startsWith(': sluice-queue ')).length;
const dataEvents = body.split('\n').filter(l => l.startsWith('data: ') && l !== 'data: [DONE]').length;
console.log(['progress', 'comments', comments, 'sdk chunks', chunks, 'data events', dataEvents, 'text', text.length > 0].join(' | '));
if (comments < 1 || chunks !== dataEvents || !text) { console.error('FAIL: comments must reach the client and the SDK must yield every data event'); process.exit(1); }

// A refusal after queueing arrives in the stream: the SDK throws it as an
// APIError with its code. The queue expects a slot in about 3 s (the holds
// measured above), so a 6 s objective is queued; the slot is held 9 s, so
// its deadline passes while it waits.
const again = await ask({}, 60);
const it2 = again[Symbol.asyncIterator]();
await it2.next();
let refused = null;
try { for await (const _ of await ask({ 'X-Sluice-Progress': '1', 'X-Sluice-Max-Wait': '6s' })) {} } catch (e) { refused = e; }
for (let r = await it2.next(); !r.done; r = await it2.next()) {}
const body2 = await seen(raw[3]);
console.log(['refusal', refused?.constructor.name, refused?.code, 'comments before it', body2.split('\n').filter(l => l.startsWith(': sluice-queue ')).length].join(' | '));
if (!refused || refused.code !== 'deadline') { console.error('FAIL: want the in-stream deadline refusal as an APIError'); process.exit(1); }
