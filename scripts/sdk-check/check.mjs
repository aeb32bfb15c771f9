import OpenAI, { toFile } from 'openai';
import fs from 'node:fs';
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
// The model-addressed endpoints: moderations; the audio endpoints with a
// real WAV file through the SDK's own multipart encoding (an fs stream, and
// toFile), streamed (vLLM's chunks); the gateway's 400s for answers it
// does not relay (text without stream, verbose_json with it) as the SDK's
// BadRequestError naming the field; vLLM's rerank and
// tokenize, which the SDK has no method for, through its client.post.
// Each asserts: a failure throws, and node exits non-zero.
const must = (ok, what) => { if (!ok) throw new Error('check failed: ' + what); };
const m1 = await client.moderations.create({ model: 'm', input: 'a sluice gate' });
must(m1.id && m1.model === 'm' && m1.results.length === 1 && typeof m1.results[0].category_scores.violence === 'number', 'moderations string ' + JSON.stringify(m1));
out.push(['moderations (string)', m1.id, m1.results.length, m1.results[0].flagged]);
const m3 = await client.moderations.create({ model: 'm', input: ['a sluice', 'a gate', 'a weir'] });
must(m3.results.length === 3, 'moderations array');
out.push(['moderations (array)', m3.results.length]);
// A 0.5 s 440 Hz tone, mono 16-bit PCM at 16 kHz, as a RIFF/WAVE file.
const rate = 16000, n = rate / 2, wav = Buffer.alloc(44 + 2 * n);
wav.write('RIFF', 0); wav.writeUInt32LE(36 + 2 * n, 4); wav.write('WAVEfmt ', 8); wav.writeUInt32LE(16, 16);
wav.writeUInt16LE(1, 20); wav.writeUInt16LE(1, 22); wav.writeUInt32LE(rate, 24); wav.writeUInt32LE(2 * rate, 28);
wav.writeUInt16LE(2, 32); wav.writeUInt16LE(16, 34); wav.write('data', 36); wav.writeUInt32LE(2 * n, 40);
for (let i = 0; i < n; i++) wav.writeInt16LE(Math.round(8000 * Math.sin(2 * Math.PI * 440 * i / rate)), 44 + 2 * i);
const wavPath = new URL('tone.wav', import.meta.url); // beside this copy, in run.sh's temp dir
fs.writeFileSync(wavPath, wav);
const t1 = await client.audio.transcriptions.create({ file: fs.createReadStream(wavPath), model: 'm', language: 'en', temperature: 0 });
must(typeof t1.text === 'string' && t1.text.length > 0, 'transcription json ' + JSON.stringify(t1));
out.push(['transcriptions (fs stream)', wav.length, t1.text.length]);
const tv = await client.audio.transcriptions.create({ file: await toFile(wav, 'tone.wav', { type: 'audio/wav' }), model: 'm', response_format: 'verbose_json' });
must(tv.text.length > 0 && tv.duration > 0, 'transcription verbose_json ' + JSON.stringify(tv));
out.push(['transcriptions (verbose_json, toFile)', tv.text.length, tv.language, tv.duration]);
const tr = await client.audio.translations.create({ file: await toFile(wav, 'tone.wav'), model: 'm' });
must(tr.text.length > 0, 'translation');
out.push(['translations', tr.text.length]);
// A stream is relayed: the simulator sends vLLM's transcription.chunk
// events, which the SDK's Stream yields as parsed objects up to [DONE].
const ts = await client.audio.transcriptions.create({ file: await toFile(wav, 'tone.wav'), model: 'm', stream: true });
let streamed = '', streamEvents = 0;
for await (const ev of ts) { must(ev.object === 'transcription.chunk', 'stream event ' + JSON.stringify(ev)); for (const ch of ev.choices) streamed += ch.delta.content; streamEvents++; }
must(streamEvents > 0 && streamed.length > 0, 'transcription stream: ' + streamEvents + ' events');
out.push(['transcriptions (stream)', streamEvents, streamed.length]);
for (const [name, extra, param] of [['text', { response_format: 'text' }, 'response_format'], ['stream verbose_json', { stream: true, response_format: 'verbose_json' }, 'response_format']]) {
  let err = null;
  try { const r = await client.audio.transcriptions.create({ file: await toFile(wav, 'tone.wav'), model: 'm', ...extra }); if (r && r[Symbol.asyncIterator]) for await (const _ of r) {} } catch (e) { err = e; }
  must(err instanceof OpenAI.BadRequestError && err.status === 400 && err.param === param, `transcription ${name}: ${err && err.constructor.name} ${err && err.status} param ${err && err.param}`);
  out.push([`transcriptions ${name}: 400`, err.constructor.name, err.code, err.param]);
}
const rr = await client.post('/rerank', { body: { model: 'm', query: 'a sluice', documents: ['a gate', 'a weir', 'a lock'], top_n: 2 } });
must(rr.results.length === 2 && rr.results[0].relevance_score >= rr.results[1].relevance_score, 'rerank ' + JSON.stringify(rr));
out.push(['rerank (client.post)', rr.results.map(r => r.index).join(',')]);
// vLLM serves /tokenize beside /v1, not under it: an absolute URL.
const tk = await client.post(new URL('/tokenize', client.baseURL).href, { body: { model: 'm', prompt: 'what is a sluice' } });
must(tk.count > 0 && tk.count === tk.tokens.length, 'tokenize ' + JSON.stringify(tk));
out.push(['tokenize (client.post)', tk.count]);
for (const o of out) console.log(o.join(' | '));
