// The official Node SDK, unmodified, at the gateway's edges: every kind of
// refusal (what the SDK raises, with which type/code/param, how many
// requests it sends and how long it waits), streams cut mid-way (the
// in-band error event raised as an APIError), a stream aborted by the
// client (the backend's sequence freed), embeddings as the SDK asks for
// them (base64 on the wire), models, and Files/Batches auto-pagination.
// Each check asserts; node exits non-zero when one fails. Run by edges.sh.
import OpenAI, { toFile } from 'openai';
const [GW, SLOW_SIM] = process.argv.slice(2);
let sent = [];
const counting = async (url, init) => {
  const s = { at: Date.now(), url: String(url) };
  sent.push(s);
  const r = await fetch(url, init);
  s.status = r.status; s.ms = r.headers.get('retry-after-ms'); s.xsr = r.headers.get('x-should-retry');
  return r;
};
const C = (key, o = {}) => new OpenAI({ baseURL: `http://${GW}/v1`, apiKey: key, fetch: counting, ...o });
const api = (s) => s.url.includes('/v1/'); // the SDK also fetches a data: URL once, to probe the platform
let failed = 0;
const must = (ok, what) => { if (!ok) { failed++; console.log('FAIL', what); } return ok; };
const pad = (s) => s.padEnd(34);
async function refusal(name, fn, want) {
  sent = [];
  const t0 = Date.now();
  let err = null;
  try { await fn(); } catch (e) { err = e; }
  const reqs = sent.filter(api);
  const got = err ? `${err.constructor.name} ${err.status} type=${err.type} code=${err.code} param=${err.param}` : 'no error';
  const ok = err instanceof want.cls && err.status === want.status && err.code === want.code && (want.param === undefined || err.param === want.param) &&
    reqs.length === want.sent && typeof err.requestID === 'string' && err.requestID.length > 0;
  if (must(ok, `${name}: ${got}, sent ${reqs.length} (want ${want.cls.name} ${want.status} ${want.code}, sent ${want.sent}, a request id)`))
    console.log(`PASS ${pad(name)} | ${got} | sent ${reqs.length} in ${((Date.now() - t0) / 1000).toFixed(1)} s | request id ${err.requestID}`);
  return { err, reqs };
}
const chat = (c, model = 'm', extra = {}, opts) => c.chat.completions.create({ model, messages: [{ role: 'user', content: 'hi' }], max_tokens: 4, ...extra }, opts);
const a = C('sk-a');

// Refusals the SDK must raise at once (statuses it does not retry).
await refusal('401 unknown key', () => chat(C('sk-nope')), { cls: OpenAI.AuthenticationError, status: 401, code: 'invalid_api_key', sent: 1 });
await refusal('404 unknown model', () => chat(a, 'nope'), { cls: OpenAI.NotFoundError, status: 404, code: 'model_not_found', param: 'model', sent: 1 });
await refusal('400 bad max_tokens', () => chat(a, 'm', { max_tokens: -1 }), { cls: OpenAI.BadRequestError, status: 400, code: 'invalid_value', param: 'max_tokens', sent: 1 });
await refusal('413 body over max_body_bytes', () => chat(a, 'm', { messages: [{ role: 'user', content: 'x'.repeat(70000) }] }), { cls: OpenAI.APIError, status: 413, code: 'request_too_large', sent: 1 });
await refusal('400 over the token limit at once', () => chat(C('sk-tok'), 'm', { max_tokens: 5000 }), { cls: OpenAI.BadRequestError, status: 400, code: 'exceeds_rate_limit_capacity', sent: 1 });
// X-Request-Id: the client's own id is the one the error names.
{
  let err = null;
  try { await chat(a, 'nope', {}, { headers: { 'X-Request-Id': 'edges-check-1' } }); } catch (e) { err = e; }
  if (must(err?.requestID === 'edges-check-1', `X-Request-Id echoed into the error: ${err?.requestID}`))
    console.log(`PASS ${pad('X-Request-Id in the SDK error')} | the client's edges-check-1`);
}
// 503 no healthy backend: a status the SDK retries; with maxRetries 0 the
// answer itself is checked: both Retry-After forms, agreeing, no x-should-retry.
{
  const { err, reqs } = await refusal('503 no healthy backend', () => chat(a, 'dead', {}, { maxRetries: 0 }), { cls: OpenAI.InternalServerError, status: 503, code: 'no_healthy_backend', sent: 1 });
  const ra = Number(err?.headers?.get('retry-after')), ms = Number(reqs[0]?.ms);
  if (must(ra > 0 && ms > 0 && Math.ceil(ms / 1000) === ra && reqs[0].xsr === null, `503 headers: retry-after ${ra}, retry-after-ms ${ms}, x-should-retry ${reqs[0]?.xsr}`))
    console.log(`PASS ${pad('503 Retry-After agrees')} | retry-after ${ra}, retry-after-ms ${ms}, no x-should-retry: the SDK would wait ${ms} ms`);
}
// A rate limit refilling in a third of a second: the SDK waits what
// retry-after-ms says (sub-second) and its retry is served.
{
  const rl = C('sk-rl');
  await chat(rl);
  sent = [];
  const r = await chat(rl);
  const reqs = sent.filter(api);
  const waited = reqs.length === 2 ? reqs[1].at - reqs[0].at : -1;
  if (must(r.object === 'chat.completion' && reqs.length === 2 && reqs[0].status === 429 && Number(reqs[0].ms) < 1000 && waited >= Number(reqs[0].ms),
    `429 sub-second: ${JSON.stringify(reqs.map(s => [s.status, s.ms]))}, waited ${waited} ms`))
    console.log(`PASS ${pad('429 sub-second retry-after-ms')} | refused with retry-after-ms ${reqs[0].ms}, resent after ${waited} ms, served`);
}

// Streams cut mid-way: the gateway ends them with an in-band error event;
// the SDK's iterator raises it as an APIError with the gateway's code and
// message, and the request id from the stream's headers.
async function cut(name, mk, wantType) {
  let n = 0, err = null;
  try { for await (const _ of await mk()) n++; } catch (e) { err = e; }
  if (must(err instanceof OpenAI.APIError && err.status === undefined && err.code === 'upstream_error' && err.type === wantType &&
    /mid-stream/.test(err.message) && err.message.includes(err.requestID) && n > 0, `${name}: ${n} events, ${err?.constructor.name} ${err?.code} ${err?.type} ${err?.message}`))
    console.log(`PASS ${pad(name)} | ${n} events, then APIError type=${err.type} code=${err.code}: ${err.message}`);
}
await cut('chat stream cut', () => a.chat.completions.create({ model: 'cut', messages: [{ role: 'user', content: 'hi' }], max_tokens: 20, stream: true, stream_options: { include_usage: true } }), 'server_error');
await cut('completions stream cut', () => a.completions.create({ model: 'cut', prompt: 'hi', max_tokens: 20, stream: true }), 'server_error');
// The Responses API's error event is {"type":"error","code","message",...}, as OpenAI's.
await cut('responses stream cut', () => a.responses.create({ model: 'cut', input: 'hi', max_output_tokens: 20, stream: true }), 'error');

// A stream aborted by the client (AbortController): the backend's
// sequence ends at once, and the token limit keeps only what was relayed.
{
  const running = async () => Number((await (await fetch(`http://${SLOW_SIM}/metrics`)).text()).match(/^vllm:num_requests_running\{[^}]*\} (\S+)/m)?.[1]);
  const tok = C('sk-tok');
  const ac = new AbortController();
  sent = [];
  const s = await tok.chat.completions.create({ model: 'slow', messages: [{ role: 'user', content: 'hi' }], max_tokens: 250, stream: true }, { signal: ac.signal });
  let n = 0;
  try { for await (const _ of s) if (++n === 5) ac.abort(); } catch { /* the SDK may raise the abort */ }
  const t0 = Date.now();
  let left = await running();
  for (let i = 0; i < 50 && left !== 0; i++) { await new Promise(r => setTimeout(r, 100)); left = await running(); }
  const freed = Date.now() - t0;
  const after = await tok.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'hi' }], max_tokens: 1 }).asResponse();
  const rem = Number(after.headers.get('x-ratelimit-remaining-tokens'));
  // 250 tokens were reserved; 5 relayed: the reservation goes back, all but
  // what was relayed: well over 600 - 250, which a kept reservation leaves.
  if (must(left === 0 && rem > 600 - 100, `abort: backend running ${left} after ${freed} ms, remaining tokens after ${rem}`))
    console.log(`PASS ${pad('stream aborted by the client')} | ${n} chunks read, backend sequence ended within ${freed} ms, remaining tokens ${rem} of 600 (250 were reserved)`);
}

// Embeddings as the SDK asks for them: encoding_format base64 on the wire
// (the SDK's default), decoded to the same vector as a float request.
{
  let wire = null;
  const peek = new OpenAI({ baseURL: `http://${GW}/v1`, apiKey: 'sk-a', fetch: async (url, init) => { const r = await fetch(url, init); if (String(url).endsWith('/embeddings')) wire = await r.clone().json(); return r; } });
  const e = await peek.embeddings.create({ model: 'm', input: ['a sluice', 'a gate'] });
  const f = await a.embeddings.create({ model: 'm', input: ['a sluice', 'a gate'], encoding_format: 'float' });
  const same = e.data.every((d, i) => d.embedding.length === f.data[i].embedding.length && d.embedding.every((x, j) => Math.abs(x - f.data[i].embedding[j]) < 1e-6));
  if (must(typeof wire?.data?.[0]?.embedding === 'string' && same && e.data.length === 2, `embeddings: wire ${typeof wire?.data?.[0]?.embedding}, decoded equal to float: ${same}`))
    console.log(`PASS ${pad('embeddings (SDK default: base64)')} | base64 on the wire (${wire.data[0].embedding.length} chars), decoded = the float answer, ${e.data[0].embedding.length} dims`);
}
// Models.
{
  const m = await a.models.retrieve('m');
  const ids = []; for await (const x of a.models.list()) ids.push(x.id);
  if (must(m.id === 'm' && m.object === 'model' && ids.includes('m') && ids.includes('cut'), `models: ${JSON.stringify(m)} ${ids}`))
    console.log(`PASS ${pad('models.retrieve / list')} | ${m.id} (${m.object}); list ${ids.join(',')}`);
  await refusal('models.retrieve unknown', () => a.models.retrieve('nope'), { cls: OpenAI.NotFoundError, status: 404, code: 'model_not_found', param: 'model', sent: 1 });
}
// Files and Batches, auto-paged two at a time over five of each.
{
  const line = JSON.stringify({ custom_id: 'a', method: 'POST', url: '/v1/chat/completions', body: { model: 'm', messages: [{ role: 'user', content: 'q' }], max_tokens: 2 } });
  const b = C('sk-b');
  const files = [], batches = [];
  for (let i = 0; i < 5; i++) files.push((await b.files.create({ file: await toFile(Buffer.from(line), `in${i}.jsonl`), purpose: 'batch' })).id);
  for (const id of files) batches.push((await b.batches.create({ input_file_id: id, endpoint: '/v1/chat/completions', completion_window: '24h' })).id);
  const fl = [], bl = [];
  sent = [];
  for await (const f of b.files.list({ limit: 2 })) fl.push(f.id);
  const filePages = sent.filter(api).length;
  sent = [];
  for await (const x of b.batches.list({ limit: 2 })) bl.push(x.id);
  const batchPages = sent.filter(api).length;
  const all = (want, got) => want.every(id => got.includes(id)) && new Set(got).size === got.length;
  if (must(all(files, fl) && all(batches, bl) && filePages >= 3 && batchPages >= 3, `paging: files ${fl.length} in ${filePages} pages, batches ${bl.length} in ${batchPages}`))
    console.log(`PASS ${pad('files/batches auto-paging, limit 2')} | files ${fl.length} in ${filePages} pages, batches ${bl.length} in ${batchPages} pages, none twice, all found`);
  const content = await (await b.files.content(files[0])).text();
  if (must(content === line, `files.content: ${content.length} bytes`))
    console.log(`PASS ${pad('files.content')} | the uploaded ${content.length} bytes`);
  await refusal('batches.retrieve unknown', () => b.batches.retrieve('batch_nope'), { cls: OpenAI.NotFoundError, status: 404, code: null, param: 'id', sent: 1 });
  await refusal('batches.create bad endpoint', () => b.batches.create({ input_file_id: files[0], endpoint: '/v1/nope', completion_window: '24h' }), { cls: OpenAI.BadRequestError, status: 400, code: 'invalid_value', param: 'endpoint', sent: 1 });
}
console.log(failed ? `${failed} check(s) failed` : 'all checks passed');
process.exit(failed ? 1 : 0);
