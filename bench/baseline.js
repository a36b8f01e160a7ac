// The ceiling: a bare node:https server that reads the body, JSON.parses it and answers a constant allowed AdmissionReview.
// Same certificate, TLS floor and keep-alive as the real server, so the only difference left is what the webhook does.
import { createServer } from 'node:https';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

const { values } = parseArgs({ options: { port: { type: 'string' }, host: { type: 'string' }, 'tls-cert': { type: 'string' }, 'tls-key': { type: 'string' } } });
const json = { 'content-type': 'application/json; charset=utf-8' };

const server = createServer({ cert: readFileSync(values['tls-cert']), key: readFileSync(values['tls-key']), minVersion: 'TLSv1.2' }, (req, res) => {
  if (req.method === 'GET' && (req.url === '/readyz' || req.url === '/healthz')) {
    res.writeHead(200, json).end('{"status":"ready"}');
    return;
  }
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    let body;
    try {
      body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch (err) {
      res.writeHead(400, json).end(JSON.stringify({ message: err.message }));
      return;
    }
    // the uid is echoed because an API server rejects a review without it; everything else is constant
    res.writeHead(200, json).end(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":${JSON.stringify(String(body?.request?.uid))},"allowed":true}}`);
  });
});
server.keepAliveTimeout = 30_000;
server.listen(Number(values.port ?? 0), values.host ?? '127.0.0.1');
process.on('SIGTERM', () => server.close(() => process.exit(0)));
