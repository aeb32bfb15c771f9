import OpenAI from 'openai';
import { createHmac } from 'node:crypto';
const secret = process.env.SLUICE_JWT_SECRET;
const b64 = (x) => Buffer.from(typeof x === 'string' ? x : JSON.stringify(x)).toString('base64url');
const now = Math.floor(Date.now() / 1000);
const sign = (claims, header = { alg: 'HS256', typ: 'JWT' }) => {
  const head = b64(header) + '.' + b64(claims);
  return head + '.' + (header.alg === 'none' ? '' : createHmac('sha256', secret).update(head).digest('base64url'));
};
const good = { iss: 'sdk-check', aud: 'sluice', sub: 'alice', org: 'acme', iat: now, exp: now + 3600 };
const ask = (apiKey, stream = false) => new OpenAI({ baseURL: 'http://127.0.0.1:19210/v1', apiKey, maxRetries: 0 })
  .chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'hi' }], max_tokens: 8, stream });
const out = [];
const c = await ask(sign(good)); out.push(['token', c.object, c.choices[0].message.content.length > 0]);
let chunks = 0; for await (const _ of await ask(sign(good), true)) chunks++; out.push(['token stream', chunks > 1]);
const k = await ask('sk-ops'); out.push(['api key', k.object]);
const t = sign(good).split('.');
const bad = {
  expired: sign({ ...good, exp: now - 3600 }),
  'wrong audience': sign({ ...good, aud: 'billing' }),
  'alg none': sign(good, { alg: 'none' }),
  tampered: t[0] + '.' + b64({ ...good, org: 'someone-else' }) + '.' + t[2],
};
const messages = new Set();
for (const [name, tok] of Object.entries(bad)) {
  try { await ask(tok); out.push([name, 'ACCEPTED']); } catch (e) { out.push([name, e.constructor.name, e.status, e.code]); messages.add(e.message); }
}
out.push(['distinct refusal messages', messages.size, [...messages][0]]);
for (const o of out) console.log(o.join(' | '));
