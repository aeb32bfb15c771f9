import OpenAI, { toFile } from 'openai';
const client = new OpenAI({ baseURL: 'http://127.0.0.1:19200/v1', apiKey: 'sk-test' });
const out = [];
const c = await client.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'hi' }], max_tokens: 8 });
out.push(['chat', c.object, c.choices[0].message.content.length > 0]);
const s = await client.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'hi' }], max_tokens: 8, stream: true, stream_options: { include_usage: true } });
let chunks = 0, usage = null; for await (const ch of s) { chunks++; if (ch.usage) usage = ch.usage; }
out.push(['stream', chunks, usage && usage.completion_tokens]);
try { await client.chat.completions.create({ model: 'nope', messages: [] }); } catch (e) { out.push(['404', e.constructor.name, e.status, e.code]); }
const lines = Array.from({ length: 5 }, (_, i) => JSON.stringify({ custom_id: 'r' + i, method: 'POST', url: '/v1/chat/completions', body: { model: 'm', messages: [{ role: 'user', content: 'q' + i }], max_tokens: 4 } })).join('\n');
const f = await client.files.create({ file: await toFile(Buffer.from(lines), 'in.jsonl'), purpose: 'batch' });
out.push(['file', f.id, f.object, f.bytes, f.purpose]);
const fr = await client.files.retrieve(f.id); out.push(['file.retrieve', fr.id === f.id]);
const fl = []; for await (const x of client.files.list({ purpose: 'batch' })) fl.push(x.id); out.push(['files.list', fl.includes(f.id)]);
let b = await client.batches.create({ input_file_id: f.id, endpoint: '/v1/chat/completions', completion_window: '24h', metadata: { k: 'v' } });
out.push(['batch', b.id, b.status, b.request_counts.total]);
for (let i = 0; i < 200 && b.status !== 'completed'; i++) { await new Promise(r => setTimeout(r, 100)); b = await client.batches.retrieve(b.id); }
out.push(['batch done', b.status, JSON.stringify(b.request_counts), b.output_file_id != null, b.metadata.k]);
const content = await (await client.files.content(b.output_file_id)).text();
out.push(['output lines', content.trim().split('\n').length, JSON.parse(content.split('\n')[0]).response.status_code]);
const list = await client.batches.list({ limit: 2 }); out.push(['list', list.data.length, list.data[0].id === b.id]);
const b2 = await client.batches.create({ input_file_id: f.id, endpoint: '/v1/chat/completions', completion_window: '24h' });
const cancelled = await client.batches.cancel(b2.id); out.push(['cancel', cancelled.status]);
const del = await client.files.delete(f.id); out.push(['delete', del.deleted]);
try { await client.files.retrieve(f.id); } catch (e) { out.push(['deleted 404', e.status]); }
// The Responses API over two backends: each follow-up must reach the one that made the response.
const r1 = await client.responses.create({ model: 'm', input: 'what is a sluice', instructions: 'be brief', max_output_tokens: 8 });
out.push(['responses', r1.object, r1.id.startsWith('resp_'), r1.output_text.length > 0, r1.usage.output_tokens]);
const rs = await client.responses.create({ model: 'm', input: 'hi', max_output_tokens: 5, stream: true });
let evs = 0, deltas = 0, last = null; for await (const ev of rs) { evs++; if (ev.type === 'response.output_text.delta') deltas++; last = ev; }
out.push(['responses stream', evs, deltas, last.type, last.response.usage.output_tokens]);
let prev = r1.id;
for (let i = 0; i < 3; i++) { const r = await client.responses.create({ model: 'm', input: 'and then?', previous_response_id: prev, max_output_tokens: 4 }); prev = r.id; }
out.push(['previous_response_id x3', prev !== r1.id]);
const got = await client.responses.retrieve(r1.id); out.push(['responses.retrieve', got.id === r1.id, got.status]);
const items = []; for await (const it of client.responses.inputItems.list(r1.id)) items.push(it.type); out.push(['input_items', items.join(',')]);
const gone = await client.responses.delete(r1.id); out.push(['responses.delete', gone === undefined || gone === null || gone.deleted !== false]);
try { await client.responses.retrieve(r1.id); } catch (e) { out.push(['deleted 404', e.status, e.code]); }
for (const o of out) console.log(o.join(' | '));
