// The server over real TLS sockets: a fixture posted through HTTPS, certificate reload from disk, SIGTERM draining.
import t from 'tap';
import { request, type RequestOptions } from 'node:https';
import { request as httpRequest } from 'node:http';
import { createServer as createNetServer, type AddressInfo } from 'node:net';
import { connect } from 'node:tls';
import { spawn } from 'node:child_process';
import { mkdtempSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { X509Certificate } from 'node:crypto';
import { Writable } from 'node:stream';
import { loadConfig, parseConfig } from '../src/config.js';
import { serve } from '../src/serve.js';
import { createLogger } from '../src/log.js';
import { createCa, createServingCert, daysLeft } from '../src/tls.js';
import { version } from '../src/version.js';
import { exampleConfig, fixture, root } from './helpers/fixtures.js';

const silent = () => createLogger('silent', new Writable({ write: (_c, _e, cb) => cb() }));

function https(port: number, path: string, opts: RequestOptions & { body?: string } = {}): Promise<{ status: number; body: string; cert: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, servername: 'localhost', method: opts.body ? 'POST' : 'GET', agent: false, headers: opts.body ? { 'content-type': 'application/json' } : {}, ...opts }, (res) => {
      const chunks: Buffer[] = [];
      const peer = (res.socket as any).getPeerCertificate?.(false);
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, body: Buffer.concat(chunks).toString(), cert: peer?.fingerprint256 ?? '' }));
    });
    req.on('error', reject);
    req.end(opts.body);
  });
}

function fingerprint(pem: string): string {
  return new X509Certificate(pem).fingerprint256;
}

/** The certificate a fresh TLS handshake is shown. */
function handshakeCert(port: number, ca: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port, servername: 'localhost', ca }, () => {
      resolve(s.getPeerCertificate().fingerprint256);
      s.end();
    });
    s.on('error', reject);
  });
}

t.test('a fixture over a real TLS socket, verified against the CA', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tls-'));
  const ca = await createCa('test-ca', 1);
  const pair = await createServingCert(['localhost'], 1, ca);
  t.ok(daysLeft(pair.cert) > 0.9 && daysLeft(pair.cert) <= 1.01, 'validity as asked');
  writeFileSync(join(dir, 'tls.crt'), pair.cert);
  writeFileSync(join(dir, 'tls.key'), pair.key);
  const config = parseConfig({ ...JSON.parse(JSON.stringify(loadConfig(exampleConfig))), server: { certReloadSeconds: 0.05, drainSeconds: 0 } });
  const running = await serve(config, { port: 0, host: '127.0.0.1', tlsCert: join(dir, 'tls.crt'), tlsKey: join(dir, 'tls.key') }, silent());
  t.teardown(() => running.stop());

  const review = fixture('deployment-create').review;
  const res = await https(running.port, '/mutate', { ca: ca.cert, body: JSON.stringify(review) });
  t.equal(res.status, 200);
  const body = JSON.parse(res.body);
  t.equal(body.response.uid, review.request.uid);
  t.equal(body.response.patchType, 'JSONPatch');
  t.equal(res.cert, fingerprint(pair.cert), 'the served certificate is the one on disk');
  await t.rejects(https(running.port, '/readyz', { ca: (await createCa('other-ca', 1)).cert }), /self.signed|unable to verify|certificate/i, 'a client trusting another CA refuses it');

  t.test('certificate files replaced on disk are served to new handshakes without a restart', async (t) => {
    const next = await createServingCert(['localhost'], 2, ca);
    // a half-written pair (new cert, old key) must not replace the working one
    writeFileSync(join(dir, 'tls.crt'), next.cert);
    await new Promise((r) => setTimeout(r, 300));
    t.equal(await handshakeCert(running.port, ca.cert), fingerprint(pair.cert), 'mismatched pair ignored, old cert still served');
    // then the key arrives, atomically as Kubernetes does it (rename)
    writeFileSync(join(dir, 'tls.key.new'), next.key);
    renameSync(join(dir, 'tls.key.new'), join(dir, 'tls.key'));
    let seen = '';
    for (let i = 0; i < 100 && seen !== fingerprint(next.cert); i++) {
      await new Promise((r) => setTimeout(r, 50));
      seen = await handshakeCert(running.port, ca.cert);
    }
    t.equal(seen, fingerprint(next.cert), 'new handshakes present the new certificate');
    const metrics = await https(running.port, '/metrics', { ca: ca.cert });
    t.match(metrics.body, /mlflow_irsa_webhook_cert_reloads_total\{result="ok"\} 1/);
    t.match(metrics.body, /mlflow_irsa_webhook_cert_reloads_total\{result="error"\} [1-9]/);
  });
});

t.test('serve without a certificate makes a self-signed one and warns', async (t) => {
  const lines: string[] = [];
  const logger = createLogger('info', new Writable({ write: (c, _e, cb) => { lines.push(c.toString()); cb(); } }));
  const config = parseConfig({ ...JSON.parse(JSON.stringify(loadConfig(exampleConfig))), server: { drainSeconds: 0 } });
  const running = await serve(config, { port: 0, host: '127.0.0.1' }, logger);
  t.teardown(() => running.stop());
  const res = await https(running.port, '/healthz', { rejectUnauthorized: false });
  t.equal(res.status, 200);
  t.match(lines.join(''), /self-signed certificate/);
  t.match(JSON.parse(lines[0]), { msg: 'mlflow-irsa-webhook starting', version, node: process.version }, 'the first line names the version');
  t.equal(running.metrics, undefined, 'no plain-HTTP metrics port unless server.metricsPort is set');
});

/** A port nothing listens on right now. */
const freePort = () => new Promise<number>((resolve) => {
  const s = createNetServer().listen(0, '127.0.0.1', () => { const p = (s.address() as AddressInfo).port; s.close(() => resolve(p)); });
});

function http(port: number, method: string, path: string): Promise<{ status: number; type?: string; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path, method, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, type: res.headers['content-type'], body: Buffer.concat(chunks).toString() }));
    });
    req.on('error', reject);
    req.end(method === 'POST' ? '{}' : undefined);
  });
}

t.test('server.metricsPort: plain HTTP that serves GET /metrics and nothing else, from the same registry', async (t) => {
  const metricsPort = await freePort();
  const config = parseConfig({ ...JSON.parse(JSON.stringify(loadConfig(exampleConfig))), server: { drainSeconds: 0, metricsPort } });
  const running = await serve(config, { port: 0, host: '127.0.0.1' }, silent());
  let stopped = false;
  t.teardown(() => (stopped ? undefined : running.stop()));
  t.equal(running.metrics?.port, metricsPort);

  // one review over HTTPS, then the plain port shows it counted: one registry behind both ports
  const review = fixture('serviceaccount-create').review;
  t.equal((await https(running.port, '/mutate', { rejectUnauthorized: false, body: JSON.stringify(review) })).status, 200);
  const res = await http(metricsPort, 'GET', '/metrics');
  t.equal(res.status, 200);
  t.match(res.type, /^text\/plain; version=0\.0\.4/);
  t.match(res.body, /mlflow_irsa_webhook_admission_requests_total\{kind="v1\/ServiceAccount",operation="CREATE",outcome="patched"\} 1/);
  t.match(res.body, `mlflow_irsa_webhook_build_info{version="${version}",node="${process.version}"} 1`);
  t.equal((await http(metricsPort, 'HEAD', '/metrics')).status, 200);

  for (const [method, path] of [['POST', '/mutate'], ['GET', '/mutate'], ['GET', '/healthz'], ['GET', '/readyz'], ['POST', '/metrics'], ['GET', '/'], ['GET', '/metrics/x']]) {
    t.equal((await http(metricsPort, method, path)).status, 404, `${method} ${path}: not served on the metrics port`);
  }
  await t.rejects(https(metricsPort, '/metrics', { rejectUnauthorized: false }), 'no TLS on the metrics port');

  await running.stop();
  stopped = true;
  await t.rejects(http(metricsPort, 'GET', '/metrics'), /ECONNREFUSED/, 'closed with the server');
});

t.test('a metrics port already taken: serve fails naming the key, and leaves nothing listening', async (t) => {
  const taken = createNetServer().listen(0, '127.0.0.1');
  await new Promise((resolve) => taken.once('listening', resolve));
  t.teardown(() => taken.close());
  const metricsPort = (taken.address() as AddressInfo).port;
  const httpsPort = await freePort();
  const config = parseConfig({ ...JSON.parse(JSON.stringify(loadConfig(exampleConfig))), server: { drainSeconds: 0, metricsPort } });
  await t.rejects(serve(config, { port: httpsPort, host: '127.0.0.1' }, silent()), new RegExp(`^server\\.metricsPort ${metricsPort}: listen EADDRINUSE`));
  await t.rejects(https(httpsPort, '/healthz', { rejectUnauthorized: false }), /ECONNREFUSED/, 'the HTTPS port was closed again, so the process can exit');
});

t.test('SIGTERM: /readyz turns 503, in-flight work finishes, exit 0', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'term-'));
  const cfg = join(dir, 'config.yaml');
  writeFileSync(cfg, `roleArn: arn:aws:iam::111122223333:role/x\nartifactsDestination: s3://sw-bucket\nserver:\n  drainSeconds: 1.5\n`);
  const probe = await import('node:net').then((net) => new Promise<number>((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => { const p = (s.address() as any).port; s.close(() => resolve(p)); });
  }));
  const child = spawn(process.execPath, [join(root, 'dist/cli.js'), 'serve', '--config', cfg, '--port', String(probe), '--host', '127.0.0.1'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d) => { out += d; });
  child.stderr.on('data', (d) => { out += d; });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  t.teardown(() => { if (child.exitCode === null) child.kill('SIGKILL'); });
  // a loaded CI machine can take many seconds to start node; wait for the line rather than a fixed time
  for (let i = 0; i < 1200 && !out.includes('listening (HTTPS)'); i++) await new Promise((r) => setTimeout(r, 50));
  t.match(out, /listening \(HTTPS\)/, 'started');
  t.equal((await https(probe, '/readyz', { rejectUnauthorized: false })).status, 200, 'ready before the signal');
  child.kill('SIGTERM');
  await new Promise((r) => setTimeout(r, 300));
  const during = await https(probe, '/readyz', { rejectUnauthorized: false });
  t.equal(during.status, 503, '/readyz answers 503 while draining');
  const mutate = await https(probe, '/mutate', { rejectUnauthorized: false, body: JSON.stringify(fixture('serviceaccount-create').review) });
  t.equal(mutate.status, 200, 'requests during the drain are still answered');
  t.equal(await exited, 0, 'exit 0');
  t.match(out, /"msg":"draining: \/readyz now answers 503"/);
  t.match(out, /"msg":"closed: in-flight requests finished"/);
});
