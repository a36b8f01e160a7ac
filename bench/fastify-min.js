// The framework's own cost: a minimal fastify (the version this project runs) with its default JSON parser (which
// includes its prototype-poisoning check), no logger, no hooks, no schema, answering what bench/baseline.js answers.
import Fastify from 'fastify';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

const { values } = parseArgs({ options: { port: { type: 'string' }, host: { type: 'string' }, 'tls-cert': { type: 'string' }, 'tls-key': { type: 'string' } } });
const app = Fastify({ https: { cert: readFileSync(values['tls-cert']), key: readFileSync(values['tls-key']), minVersion: 'TLSv1.2' }, keepAliveTimeout: 30_000 });
app.get('/readyz', async () => ({ status: 'ready' }));
app.post('/mutate', async (request, reply) => {
  reply.type('application/json; charset=utf-8');
  return `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":${JSON.stringify(String(request.body?.request?.uid))},"allowed":true}}`;
});
await app.listen({ port: Number(values.port ?? 0), host: values.host ?? '127.0.0.1' });
process.on('SIGTERM', () => app.close().then(() => process.exit(0)));
