// See tenants.sh. Prints one line; exits 1 when the token reached any of
// the key's objects.
import OpenAI, { toFile } from 'openai';
import { createHmac } from 'node:crypto';
const b64 = (x) => Buffer.from(JSON.stringify(x)).toString('base64url');
const now = Math.floor(Date.now() / 1000);
const head = b64({ alg: 'HS256', typ: 'JWT' }) + '.' + b64({ iss: 'sdk-check', aud: 'sluice', sub: 'acme', iat: now, exp: now + 3600 });
const token = head + '.' + createHmac('sha256', process.env.SLUICE_JWT_SECRET).update(head).digest('base64url');
const baseURL = process.env.SLUICE_URL ?? 'http://127.0.0.1:19230/v1';
const key = new OpenAI({ apiKey: 'sk-acme', baseURL, maxRetries: 0 });
const jwt = new OpenAI({ apiKey: token, baseURL, maxRetries: 0 });
const line = JSON.stringify({ custom_id: 'a', method: 'POST', url: '/v1/chat/completions',
  body: { model: 'm', messages: [{ role: 'user', content: 'x' }] } }) + '\n';
const ids = [];
for (let i = 0; i < 3; i++) ids.push((await key.files.create({ file: await toFile(Buffer.from(line), 'in.jsonl'), purpose: 'batch' })).id);
const batch = await key.batches.create({ input_file_id: ids[0], endpoint: '/v1/chat/completions', completion_window: '24h' });
let listed = 0;
for await (const f of jwt.files.list()) if (ids.includes(f.id)) listed++;
let served = 0, notFound = 0;
const calls = ids.flatMap((id) => [() => jwt.files.retrieve(id), () => jwt.files.content(id), () => jwt.files.delete(id)])
  .concat([() => jwt.batches.retrieve(batch.id), () => jwt.batches.cancel(batch.id)]);
for (const call of calls) {
  try { await call(); served++; } catch (e) { if (e instanceof OpenAI.NotFoundError) notFound++; else console.log('other:', e.status, e.message); }
}
let kept = 0;
for await (const f of key.files.list()) if (ids.includes(f.id)) kept++;
console.log(`token sub=acme: listed ${listed} of acme's 3 files; ${served} of ${calls.length} calls served, ` +
  `${notFound} NotFoundError; the key keeps ${kept} of 3`);
process.exit(listed + served > 0 || kept !== 3 ? 1 : 0);
