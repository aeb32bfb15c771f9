// OpenAI webhook events for batches through the official OpenAI Node SDK,
// unmodified: a batch created with client.batches.create ends, and the
// endpoint in queue.batch_webhooks receives an event that
// client.webhooks.unwrap(body, headers, secret) accepts: batch.completed,
// data.id the batch's id, sent once.
// Usage: node batchevents.mjs GATEWAY_ADDR HOOK_PORT SECRET
import http from 'node:http';
import OpenAI, { toFile } from 'openai';
const [addr, hookPort, secret] = process.argv.slice(2);
const client = new OpenAI({ baseURL: `http://${addr}/v1`, apiKey: 'sk-test', webhookSecret: secret });
const events = [];
let arrived;
const first = new Promise(r => { arrived = r; });
const server = http.createServer((req, res) => {
  const parts = [];
  req.on('data', c => parts.push(c));
  req.on('end', async () => {
    const body = Buffer.concat(parts).toString('utf8');
    try {
      events.push(await client.webhooks.unwrap(body, req.headers));
      res.writeHead(200).end();
    } catch (e) {
      events.push({ error: String(e) });
      res.writeHead(400).end();
    }
    arrived();
  });
});
await new Promise(r => server.listen(Number(hookPort), '127.0.0.1', r));
const lines = [0, 1, 2].map(i => JSON.stringify({ custom_id: `r${i}`, method: 'POST', url: '/v1/chat/completions',
  body: { model: 'm', messages: [{ role: 'user', content: `hi ${i}` }], max_tokens: 5 } })).join('\n');
const file = await client.files.create({ file: await toFile(Buffer.from(lines), 'in.jsonl'), purpose: 'batch' });
const batch = await client.batches.create({ input_file_id: file.id, endpoint: '/v1/chat/completions', completion_window: '24h' });
const timeout = setTimeout(() => { console.error('FAIL: no event within 60 s'); process.exit(1); }, 60000);
await first;
clearTimeout(timeout);
const done = await client.batches.retrieve(batch.id);
const ev = events[0];
console.log(['batch event', 'type', ev.type, 'object', ev.object, 'data.id matches', ev.data?.id === batch.id,
  'batch', done.status, 'events', events.length].join(' | '));
server.close();
if (ev.error || ev.type !== 'batch.completed' || ev.object !== 'event' || ev.data?.id !== batch.id || !ev.id?.startsWith('evt_') ||
    done.status !== 'completed' || ev.created_at !== done.completed_at || events.length !== 1) {
  console.error('FAIL:', JSON.stringify(events));
  process.exit(1);
}
