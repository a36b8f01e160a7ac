// The references, in one file so that they differ only where they should: a bare node:https server that reads the
// body, JSON.parses it and answers a constant allowed AdmissionReview (the ceiling); with --review it answers with
// this project's review() instead (mutation, diff, base64), which prices our review work without any server extras.
// Same certificate, TLS floor and keep-alive as the real server, so the only difference left is what the webhook does.
import { createServer } from 'node:https';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

const { values } = parseArgs({ options: { port: { type: 'string' }, host: { type: 'string' }, 'tls-cert': { type: 'string' }, 'tls-key': { type: 'string' }, review: { type: 'boolean' }, replay: { type: 'boolean' }, config: { type: 'string' } } });
const json = { 'content-type': 'application/json; charset=utf-8' };

/** The constant answer: the uid is echoed because an API server rejects a review without it. */
const constant = (body) => `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":${JSON.stringify(String(body?.request?.uid))},"allowed":true}}`;

let answer = (body) => ({ status: 200, text: constant(body) });
/** With --review: answers given and the milliseconds review() took making them (after JSON.parse, before the write), as it costs in a server. */
const timed = { answers: 0, ms: 0 };
if (values.review || values.replay) {
  const dist = new URL('../dist/', import.meta.url);
  const [{ loadConfig }, { buildMutators }, { review }] = await Promise.all([
    import(new URL('config.js', dist)), import(new URL('mutators/index.js', dist)), import(new URL('admission.js', dist)),
  ]);
  const mutators = buildMutators(loadConfig(values.config ?? new URL('../examples/config.yaml', import.meta.url).pathname));
  const reviewed = (body) => {
    const result = review(body, mutators);
    return result.ok ? { status: 200, text: JSON.stringify(result.review) } : { status: 400, text: JSON.stringify({ message: result.error }) };
  };
  // timed with --review only, so that the other references carry no clock reads
  answer = (body) => {
    const t0 = performance.now();
    const r = reviewed(body);
    timed.ms += performance.now() - t0;
    timed.answers++;
    return r;
  };
  if (values.replay) {
    // --replay: the answer review() gave for the first body of this length, with this request's uid: what sending the
    // webhook's answer costs when computing it costs nothing (the bench sends one body per mix, so length tells them apart)
    const replies = new Map();
    answer = (body, length) => {
      let r = replies.get(length);
      if (r === undefined) {
        const first = reviewed(body);
        const uid = JSON.stringify(String(body?.request?.uid));
        const at = first.text.indexOf(uid);
        r = { status: first.status, head: first.text.slice(0, at), tail: first.text.slice(at + uid.length) };
        replies.set(length, r);
      }
      return { status: r.status, text: `${r.head}${JSON.stringify(String(body?.request?.uid))}${r.tail}` };
    };
  }
}

const server = createServer({ cert: readFileSync(values['tls-cert']), key: readFileSync(values['tls-key']), minVersion: 'TLSv1.2' }, (req, res) => {
  if (req.method === 'GET' && (req.url === '/readyz' || req.url === '/healthz')) {
    res.writeHead(200, json).end('{"status":"ready"}');
    return;
  }
  // how long answering took inside this server, summed: the bench reads it before and after a run
  if (req.method === 'GET' && req.url === '/answer-time') {
    res.writeHead(200, json).end(JSON.stringify(timed));
    return;
  }
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    let body;
    const data = Buffer.concat(chunks);
    try {
      body = JSON.parse(data.toString('utf8'));
    } catch (err) {
      res.writeHead(400, json).end(JSON.stringify({ message: err.message }));
      return;
    }
    const { status, text } = answer(body, data.length);
    res.writeHead(status, json).end(text);
  });
});
server.keepAliveTimeout = 30_000;
server.listen(Number(values.port ?? 0), values.host ?? '127.0.0.1');
process.on('SIGTERM', () => server.close(() => process.exit(0)));
