// The server over real TLS sockets: a fixture posted through HTTPS, certificate reload from disk, SIGTERM draining.
import t, { type Test } from 'tap';
import { request, type RequestOptions } from 'node:https';
import { request as httpRequest } from 'node:http';
import { connect as connectTcp, createServer as createNetServer, type AddressInfo, type Socket } from 'node:net';
import { connect, createServer as createTlsServer, type ConnectionOptions } from 'node:tls';
import { generate } from 'selfsigned';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, openSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { X509Certificate } from 'node:crypto';
import { Writable } from 'node:stream';
import { loadConfig, parseConfig } from '../src/config/config.js';
import { serve } from '../src/webhook/serve.js';
import { API_SERVER_IDLE_SECONDS } from '../src/webhook/server.js';
import { createLogger, TurnBufferedDestination } from '../src/log.js';
import { createCa, createServingCert, daysLeft, TLS12_CIPHERS, watchKeyPair, type KeyPair } from '../src/webhook/tls.js';
import { version } from '../src/version.js';
import { listenDualStack } from '../src/webhook/serve.js';
import { exampleConfig, fixture, root } from './helpers/fixtures.js';

const silent = () => createLogger('silent', new Writable({ write: (_c, _e, cb) => cb() }));

/** A logger that keeps its lines, parsed. */
function capture() {
  const lines: any[] = [];
  const logger = createLogger('info', new Writable({ write: (c, _e, cb) => { for (const l of c.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(l)); cb(); } }));
  return { logger, lines };
}

/** A self-signed pair for localhost with the validity and key type given (the product only makes current ECDSA ones). */
async function pairFor(notBefore: Date, notAfter: Date, keyType: 'ec' | 'rsa' = 'ec'): Promise<KeyPair> {
  const r = await generate([{ name: 'commonName', value: 'localhost' }], {
    keyType, algorithm: 'sha256', notBeforeDate: notBefore, notAfterDate: notAfter,
    extensions: [{ name: 'subjectAltName', altNames: [{ type: 2, value: 'localhost' }] }],
  } as never);
  return { cert: r.cert, key: r.private };
}

const DAY = 86_400_000;
const baseConfig = (server: Record<string, unknown> = {}) =>
  parseConfig({ ...JSON.parse(JSON.stringify(loadConfig(exampleConfig))), reconcile: { enabled: false }, server: { drainSeconds: 0, certReloadSeconds: 0.05, ...server } });

function writePairIn(dir: string, pair: KeyPair) {
  writeFileSync(join(dir, 'tls.crt'), pair.cert);
  writeFileSync(join(dir, 'tls.key'), pair.key);
  return { tlsCert: join(dir, 'tls.crt'), tlsKey: join(dir, 'tls.key') };
}

/** Connects with these TLS options; the negotiated protocol and cipher, or the error code. */
function handshake(o: ConnectionOptions & { port: number }): Promise<{ protocol?: string; cipher?: string; error?: string }> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', servername: 'localhost', rejectUnauthorized: false, ...o }, () => {
      const out = { protocol: socket.getProtocol() ?? undefined, cipher: socket.getCipher().name };
      socket.destroy();
      resolve(out);
    });
    socket.on('error', (err: NodeJS.ErrnoException) => resolve({ error: err.code ?? err.message }));
  });
}

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
  // GET /certificate: what the port serves, as text, for doctor to read through the API server's service proxy
  const served = await https(running.port, '/certificate', { ca: ca.cert });
  t.equal(served.status, 200);
  t.equal(fingerprint(served.body), fingerprint(pair.cert), 'GET /certificate answers the certificate the handshake shows');

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
    t.equal(fingerprint((await https(running.port, '/certificate', { ca: ca.cert })).body), fingerprint(next.cert), 'and GET /certificate answers it');
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

function http(port: number, method: string, path: string, localAddress?: string): Promise<{ status: number; type?: string; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path, method, agent: false, localAddress }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, type: res.headers['content-type'], body: Buffer.concat(chunks).toString() }));
    });
    req.on('error', reject);
    req.end(method === 'POST' ? '{}' : undefined);
  });
}

t.test('server.metricsPort: plain HTTP that serves GET /metrics (from the same registry) and the probes, and nothing else; /readyz turns 503 with the drain', async (t) => {
  const metricsPort = await freePort();
  const config = parseConfig({ ...JSON.parse(JSON.stringify(loadConfig(exampleConfig))), server: { drainSeconds: 0.5, metricsPort } });
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

  t.same(await http(metricsPort, 'GET', '/healthz'), { status: 200, type: 'application/json; charset=utf-8', body: '{"status":"ok"}' }, 'the liveness probe');
  t.same(await http(metricsPort, 'GET', '/readyz'), { status: 200, type: 'application/json; charset=utf-8', body: '{"status":"ready"}' }, 'the readiness probe');
  for (const [method, path] of [['POST', '/mutate'], ['GET', '/mutate'], ['POST', '/metrics'], ['POST', '/readyz'], ['GET', '/'], ['GET', '/metrics/x']]) {
    t.equal((await http(metricsPort, method, path)).status, 404, `${method} ${path}: not served on the metrics port`);
  }
  await t.rejects(https(metricsPort, '/metrics', { rejectUnauthorized: false }), 'no TLS on the metrics port');

  const stopping = running.stop();
  stopped = true;
  t.equal((await http(metricsPort, 'GET', '/readyz')).status, 503, 'draining: the readiness probe on the metrics port fails, as on the HTTPS port');
  t.equal((await http(metricsPort, 'GET', '/healthz')).status, 200, 'while the liveness probe still passes');
  await stopping;
  await t.rejects(http(metricsPort, 'GET', '/metrics'), /ECONNREFUSED/, 'closed with the server');
});

t.test('serve loads fastify\'s schema compilers (ajv, fast-json-stringify) on neither port: no route has a schema', async (t) => {
  const metricsPort = await freePort();
  const dist = (m: string) => pathToFileURL(join(root, 'dist', m)).href;
  const code = `import { createRequire } from 'node:module';
    import { loadConfig, parseConfig } from '${dist('config/config.js')}';
    import { serve } from '${dist('webhook/serve.js')}';
    import { createLogger } from '${dist('log.js')}';
    const config = parseConfig({ ...JSON.parse(JSON.stringify(loadConfig(${JSON.stringify(exampleConfig)}))), reconcile: { enabled: false }, server: { drainSeconds: 0, metricsPort: ${metricsPort} } });
    const running = await serve(config, { port: 0, host: '127.0.0.1' }, createLogger('silent'));
    const loaded = Object.keys(createRequire(import.meta.url).cache).filter((k) => /ajv-compiler|fast-json-stringify-compiler/.test(k));
    await running.stop();
    console.log(JSON.stringify({ metrics: running.metrics?.port, loaded }));`;
  const out = spawnSync(process.execPath, ['--input-type=module', '-e', code], { encoding: 'utf8', cwd: root });
  t.equal(out.status, 0, out.stderr);
  t.same(JSON.parse(out.stdout.trim().split('\n').at(-1) ?? '{}'), { metrics: metricsPort, loaded: [] }, 'both listeners up, neither compiler loaded');
});

t.test('a metrics port already taken: serve fails naming the key, and leaves nothing listening', async (t) => {
  const taken = createNetServer().listen(0, '127.0.0.1');
  await new Promise((resolve) => taken.once('listening', resolve));
  t.teardown(() => taken.close());
  const metricsPort = (taken.address() as AddressInfo).port;
  const httpsPort = await freePort();
  const config = parseConfig({ ...JSON.parse(JSON.stringify(loadConfig(exampleConfig))), server: { drainSeconds: 0, metricsPort } });
  await t.rejects(serve(config, { port: httpsPort, host: '127.0.0.1' }, silent()), { message: `server.metricsPort: cannot listen on 127.0.0.1:${metricsPort}: EADDRINUSE (another process listens on this port)` }, 'worded as the HTTPS port\'s');
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
  t.match(out, /"msg":"draining: \/readyz now answers 503, every response closes its connection"/);
  t.match(out, /"msg":"closed: in-flight requests finished"/);
});

t.test('the server\'s log destination: one write per event-loop turn, in order; what is left at exit; a reader gone ends it', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'turn-'));
  const file = join(dir, 'log');
  const dest = new TurnBufferedDestination(openSync(file, 'w'));
  dest.write('a\n');
  dest.write('b\n');
  t.equal(readFileSync(file, 'utf8'), '', 'nothing written while the turn runs');
  await new Promise((r) => setImmediate(r));
  t.equal(readFileSync(file, 'utf8'), 'a\nb\n', 'the turn\'s lines in one write when it ends, in order');
  dest.write('x'.repeat(70_000));
  t.equal(readFileSync(file, 'utf8').length, 4 + 70_000, 'past 64 KiB, written at once within the turn');
  dest.write('é\n');
  dest.flushSync();
  t.ok(readFileSync(file, 'utf8').endsWith('é\n'), 'UTF-8');

  const logModule = pathToFileURL(join(root, 'dist/log.js')).href;
  const run = (code: string) => spawnSync(process.execPath, ['--input-type=module', '-e', `import { TurnBufferedDestination } from '${logModule}'; const d = new TurnBufferedDestination(1); ${code}`], { encoding: 'utf8' });
  t.equal(run("d.write('last\\n'); process.exit(3);").stdout, 'last\n', 'process.exit: the turn\'s lines are written on the way out');
  const crashed = run("d.write('before the crash\\n'); throw new Error('boom');");
  t.equal(crashed.stdout, 'before the crash\n', 'an uncaught exception: the same');
  t.not(crashed.status, 0);

  // a reader that went away: writes fail with EPIPE, and logging ends without taking the process with it
  const child = spawn(process.execPath, ['--input-type=module', '-e', `import { TurnBufferedDestination } from '${logModule}';
    const d = new TurnBufferedDestination(1);
    for (let i = 0; i < 200; i++) { d.write('x'.repeat(1000) + '\\n'); await new Promise((r) => setTimeout(r, 2)); }
    process.stderr.write('still running');`], { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout.destroy();
  let err = '';
  child.stderr.on('data', (c) => (err += c));
  const code = await new Promise((r) => child.on('exit', r));
  t.equal(code, 0, 'exit 0');
  t.equal(err, 'still running', 'and no error');
});

t.test('watchKeyPair: a rotation that lands before the watcher\'s first stat (right at start) is still reported', async (t) => {
  const now = Date.now();
  const [a, b] = await Promise.all([pairFor(new Date(now - DAY), new Date(now + 30 * DAY)), pairFor(new Date(now - DAY), new Date(now + 60 * DAY))]);
  const dir = mkdtempSync(join(tmpdir(), 'watch-early-'));
  // serve read pair a; the files rotated to b before the watch took its baseline, so polling alone never sees a change
  writePairIn(dir, a);
  const files = writePairIn(dir, b);
  const seen: KeyPair[] = [];
  const errors: Error[] = [];
  const unwatch = watchKeyPair(files.tlsCert, files.tlsKey, 50, (p) => seen.push(p), (e) => errors.push(e), a);
  t.teardown(unwatch);
  for (let i = 0; i < 400 && seen.length === 0; i++) await new Promise((r) => setTimeout(r, 25));
  t.equal(seen.length, 1, 'reported once');
  t.equal(seen[0]?.cert, b.cert, 'the new pair');
  t.same(errors, [], 'no error');
});

t.test('TLS 1.2 is ECDHE with AEAD only: CBC, SHA-1 and RSA key exchange suites are refused over a real socket', async (t) => {
  const now = Date.now();
  const [ecdsa, rsa] = await Promise.all([pairFor(new Date(now - DAY), new Date(now + 30 * DAY)), pairFor(new Date(now - DAY), new Date(now + 30 * DAY), 'rsa')]);
  for (const [kind, pair, refused, accepted] of [
    ['ECDSA', ecdsa, ['ECDHE-ECDSA-AES128-SHA', 'ECDHE-ECDSA-AES256-SHA', 'ECDHE-ECDSA-AES128-SHA256'], 'ECDHE-ECDSA-AES128-GCM-SHA256'],
    ['RSA (cert-manager\'s default)', rsa, ['AES256-SHA', 'AES128-SHA256', 'AES256-SHA256', 'ECDHE-RSA-AES128-SHA', 'AES128-GCM-SHA256'], 'ECDHE-RSA-AES256-GCM-SHA384'],
  ] as const) {
    const dir = mkdtempSync(join(tmpdir(), 'ciphers-'));
    const running = await serve(baseConfig(), { port: 0, host: '127.0.0.1', ...writePairIn(dir, pair) }, silent());
    // control: a server with OpenSSL's defaults and the same certificate agrees to every suite the webhook refuses
    const open = createTlsServer({ ...pair, ciphers: 'ALL@SECLEVEL=0', minVersion: 'TLSv1.2' }, (sock) => sock.end());
    await new Promise<void>((resolve) => open.listen(0, '127.0.0.1', resolve));
    const openPort = (open.address() as AddressInfo).port;
    for (const cipher of refused) {
      const client = { maxVersion: 'TLSv1.2' as const, ciphers: `${cipher}@SECLEVEL=0` };
      t.equal((await handshake({ ...client, port: openPort })).cipher, cipher, `${kind}: ${cipher} is negotiable where allowed`);
      t.match((await handshake({ ...client, port: running.port })).error, /HANDSHAKE_FAILURE|NO_SHARED_CIPHER|NO_CIPHERS/, `${kind}: the webhook refuses ${cipher}`);
    }
    t.same(await handshake({ maxVersion: 'TLSv1.2', ciphers: accepted, port: running.port }), { protocol: 'TLSv1.2', cipher: accepted }, `${kind}: ${accepted} is accepted`);
    const offered = await handshake({ maxVersion: 'TLSv1.2', port: running.port });
    t.ok((TLS12_CIPHERS as readonly string[]).includes(offered.cipher!), `${kind}: a default TLS 1.2 client gets ${offered.cipher}, from the documented list`);
    t.match(await handshake({ port: running.port }), { protocol: 'TLSv1.3', cipher: /^TLS_/ }, `${kind}: TLS 1.3 unchanged`);
    await new Promise((resolve) => open.close(resolve));
    await running.stop();
  }
});

t.test('a certificate reload keeps the TLS settings: the minimum version (TLS 1.3: a TLS 1.2 client is refused after the reload too), the cipher list and the server\'s cipher order', async (t) => {
  const ca = await createCa('reload-ca', 1);
  const [first, second] = await Promise.all([createServingCert(['localhost'], 1, ca), createServingCert(['localhost'], 2, ca)]);
  /** What a client gets: the protocol and suite, or why it was refused (the alert's name varies with OpenSSL's version). */
  const answer = async (o: ConnectionOptions & { port: number }) => {
    const r = await handshake(o);
    if (r.error === undefined) return `${r.protocol} ${r.cipher}`;
    return /PROTOCOL_VERSION/.test(r.error) ? 'refused: protocol version' : /HANDSHAKE_FAILURE|NO_SHARED_CIPHER|NO_CIPHERS/.test(r.error) ? 'refused: no shared suite' : r.error;
  };
  const profile = async (port: number) => ({
    tls12: await answer({ port, maxVersion: 'TLSv1.2' }),
    cbc: await answer({ port, maxVersion: 'TLSv1.2', ciphers: 'ECDHE-ECDSA-AES128-SHA@SECLEVEL=0' }),
    // the clients prefer the suites the server ranks last: the server's order decides
    order12: await answer({ port, maxVersion: 'TLSv1.2', ciphers: 'ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES128-GCM-SHA256' }),
    order13: await answer({ port, ciphers: 'TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384' }),
  });
  const expected = {
    'TLSv1.3': { tls12: 'refused: protocol version', cbc: 'refused: protocol version', order12: 'refused: protocol version', order13: 'TLSv1.3 TLS_AES_256_GCM_SHA384' },
    'TLSv1.2': { tls12: 'TLSv1.2 ECDHE-ECDSA-AES128-GCM-SHA256', cbc: 'refused: no shared suite', order12: 'TLSv1.2 ECDHE-ECDSA-AES128-GCM-SHA256', order13: 'TLSv1.3 TLS_AES_256_GCM_SHA384' },
  } as const;
  for (const tlsMinVersion of ['TLSv1.3', 'TLSv1.2'] as const) {
    const dir = mkdtempSync(join(tmpdir(), 'reload-tls-'));
    const log = capture();
    const running = await serve(baseConfig({ tlsMinVersion }), { port: 0, host: '127.0.0.1', ...writePairIn(dir, first) }, log.logger);
    t.same(await profile(running.port), expected[tlsMinVersion], `${tlsMinVersion}: at start`);
    writeFileSync(join(dir, 'tls.key.new'), second.key);
    writeFileSync(join(dir, 'tls.crt'), second.cert);
    renameSync(join(dir, 'tls.key.new'), join(dir, 'tls.key'));
    // a loaded machine can delay the file polling by seconds: wait for the reload's line rather than a fixed time
    for (let i = 0; i < 1200 && !log.lines.some((l) => l.msg.startsWith('serving certificate reloaded')); i++) await new Promise((r) => setTimeout(r, 25));
    t.equal(await handshakeCert(running.port, ca.cert), fingerprint(second.cert), `${tlsMinVersion}: reloaded, new handshakes get the new certificate`);
    t.same(await profile(running.port), expected[tlsMinVersion], `${tlsMinVersion}: after the reload, the same answers to the same clients`);
    await running.stop();
  }
});

t.test('certificate validity: logged at start and at every reload, error when expired or not yet valid, warn within 30 days; the gauge follows', async (t) => {
  const now = Date.now();
  const gauge = async (port: number) => {
    const m = /^mlflow_irsa_webhook_serving_cert_not_after_timestamp_seconds (\S+)$/m.exec((await https(port, '/metrics', { rejectUnauthorized: false })).body);
    return m ? Number(m[1]) : undefined;
  };
  const notAfterOf = (pair: KeyPair) => Math.floor(Date.parse(new X509Certificate(pair.cert).validTo) / 1000);
  const cases = [
    ['valid 2020-2021 (expired)', await pairFor(new Date('2020-01-01T00:00:00Z'), new Date('2021-01-01T00:00:00Z')), 'error', /^serving certificate: EXPIRED \(valid 2020-01-01T00:00:00\.000Z to 2021-01-01T00:00:00\.000Z\)/],
    ['valid from tomorrow', await pairFor(new Date(now + DAY), new Date(now + 400 * DAY)), 'error', /^serving certificate: NOT YET VALID \(valid /],
    ['10 days left', await pairFor(new Date(now - DAY), new Date(now + 10 * DAY)), 'warn', /^serving certificate: expires in (9\.9|10\.0) days \(valid /],
    ['a year left', await pairFor(new Date(now - DAY), new Date(now + 365 * DAY)), 'info', /^serving certificate$/],
  ] as const;
  for (const [what, pair, level, message] of cases) {
    const dir = mkdtempSync(join(tmpdir(), 'validity-'));
    const log = capture();
    const running = await serve(baseConfig(), { port: 0, host: '127.0.0.1', ...writePairIn(dir, pair) }, log.logger);
    const line = log.lines.find((l) => /serving certificate/.test(l.msg));
    t.match(line, { level, msg: message, notAfter: new Date(new X509Certificate(pair.cert).validTo).toISOString() }, `${what}: logged at ${level} at start`);
    t.equal(await gauge(running.port), notAfterOf(pair), `${what}: the gauge holds notAfter`);
    t.equal((await https(running.port, '/readyz', { rejectUnauthorized: false })).status, 200, `${what}: still serves (a clock may be wrong; the log and the metric say so)`);
    await running.stop();
  }

  // rotation to an expired pair: the reload is logged at error and the gauge moves back
  const dir = mkdtempSync(join(tmpdir(), 'validity-reload-'));
  const log = capture();
  const good = cases[3][1];
  const running = await serve(baseConfig(), { port: 0, host: '127.0.0.1', ...writePairIn(dir, good) }, log.logger);
  t.teardown(() => running.stop());
  const expired = cases[0][1];
  writeFileSync(join(dir, 'tls.key.new'), expired.key);
  writeFileSync(join(dir, 'tls.crt'), expired.cert);
  renameSync(join(dir, 'tls.key.new'), join(dir, 'tls.key'));
  // a loaded machine can delay the file polling by seconds: wait for the line rather than a fixed time
  for (let i = 0; i < 1200 && !log.lines.some((l) => l.msg.startsWith('serving certificate reloaded')); i++) await new Promise((r) => setTimeout(r, 25));
  t.match(log.lines.find((l) => l.msg.startsWith('serving certificate reloaded')), { level: 'error', msg: /^serving certificate reloaded: EXPIRED/ });
  t.equal(await gauge(running.port), notAfterOf(expired), 'the gauge follows the reload');
});

t.test('dual stack: "::" (the default) answers IPv4 and IPv6; a kernel without IPv6 falls back to 0.0.0.0; listen errors name the address', async (t) => {
  const config = baseConfig();
  t.equal(config.server.host, '::', 'the default host');
  const log = capture();
  const running = await serve(config, { port: 0 }, log.logger);
  t.teardown(() => running.stop());
  for (const host of ['127.0.0.1', '::1']) {
    const res = await https(running.port, '/mutate', { host, rejectUnauthorized: false, body: JSON.stringify(fixture('serviceaccount-create').review) });
    t.equal(res.status, 200, `a review over ${host}`);
  }
  t.match(log.lines.find((l) => l.msg === 'listening (HTTPS)'), { host: '::', port: running.port });

  // In use: the error names the address and the cause.
  const busy = await serve(config, { port: running.port }, silent()).then(() => 'listened', (err: Error) => err.message);
  t.equal(busy, `cannot listen on [::]:${running.port}: EADDRINUSE (another process listens on this port)`);

  // A kernel without IPv6 cannot be had here: the first listen on "::" fails as it would there (EAFNOSUPPORT), the
  // fallback then listens for real.
  const fallback = capture();
  const { buildServer } = await import('../src/webhook/server.js');
  const s = buildServer({ config, tls: await createServingCert(['localhost'], 1), logger: fallback.logger });
  t.teardown(() => s.app.close());
  const tried: string[] = [];
  const host = await listenDualStack(async (h) => {
    tried.push(h);
    if (h === '::') throw Object.assign(new Error('address family not supported'), { code: 'EAFNOSUPPORT' });
    await s.app.listen({ port: 0, host: h });
  }, '::', 0, fallback.logger);
  t.same(tried, ['::', '0.0.0.0']);
  t.equal(host, '0.0.0.0');
  const port = (s.app.server.address() as AddressInfo).port;
  t.equal((await https(port, '/healthz', { rejectUnauthorized: false })).status, 200, 'answers over IPv4');
  await t.rejects(https(port, '/healthz', { host: '::1', rejectUnauthorized: false }), /ECONNREFUSED/, 'and not over IPv6');
  t.match(fallback.lines, [{ level: 'warn', msg: /IPv6 is not available on this host: listening on 0\.0\.0\.0/, code: 'EAFNOSUPPORT' }]);
  const explicit = await listenDualStack(async () => { throw Object.assign(new Error('x'), { code: 'EAFNOSUPPORT' }); }, '::1', 8443, fallback.logger).then(() => 'listened', (err: Error) => err.message);
  t.equal(explicit, 'cannot listen on [::1]:8443: EAFNOSUPPORT (this host does not support the address family)', 'an address set on purpose is never replaced');
  const neither = await listenDualStack(async (h) => { throw Object.assign(new Error('x'), { code: h === '::' ? 'EAFNOSUPPORT' : 'EADDRINUSE' }); }, '::', 8443, fallback.logger)
    .then(() => 'listened', (err: Error) => err.message);
  t.equal(neither, 'cannot listen on 0.0.0.0:8443: EADDRINUSE (another process listens on this port)', 'a failed fallback names the address it tried');
});

t.test('server.maxConnections: connections past the cap are closed on arrival, counted, and logged once', async (t) => {
  const log = capture();
  const running = await serve(baseConfig({ maxConnections: 5, maxConnectionsPerSource: 5 }), { port: 0, host: '127.0.0.1' }, log.logger);
  t.teardown(() => running.stop());
  const open = await Promise.all(Array.from({ length: 5 }, () => new Promise<ReturnType<typeof connect>>((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port: running.port, rejectUnauthorized: false }, () => resolve(s));
    s.on('error', reject);
  })));
  const extra = await Promise.all([1, 2, 3].map(() => handshake({ port: running.port })));
  for (const e of extra) t.match(e.error, /ECONNRESET|socket disconnected|socket hang up|EPIPE/, `a sixth connection is closed before its handshake (${e.error})`);
  const metrics = await (async () => {
    open.pop()!.destroy();
    await new Promise((r) => setTimeout(r, 100));
    return (await https(running.port, '/metrics', { rejectUnauthorized: false })).body;
  })();
  t.match(metrics, /^mlflow_irsa_webhook_connections_dropped_total\{listener="webhook",reason="total"\} 3$/m, 'each one counted');
  t.equal(log.lines.filter((l) => l.msg === 'connections closed on arrival: server.maxConnections are open').length, 1, 'one warning, not one per connection');
  t.match(log.lines.find((l) => l.msg.startsWith('connections closed')), { level: 'warn', listener: 'webhook', maxConnections: 5, dropped: 1, source: '127.0.0.1' });
  for (const s of open) s.destroy();
  t.equal(parseConfig({ roleArn: 'arn:aws:iam::111122223333:role/r', artifactsDestination: 's3://bkt' }).server.maxConnections, 1000, 'the default cap');
  t.throws(() => baseConfig({ maxConnections: 5 }), { message: /server\.maxConnectionsPerSource: 64 must be <= server\.maxConnections \(5\)/ }, 'a cap per address above the total one is refused, naming both keys');
  t.throws(() => baseConfig({ metricsMaxConnections: 4 }), { message: /server\.metricsMaxConnectionsPerSource: 8 must be <= server\.metricsMaxConnections \(4\)/ });
  t.notOk(log.lines.some((l) => l.msg.startsWith('server.idleTimeoutSeconds')), 'no idle-timeout warning at the default');
});

/**
 * A connection spoken to by hand, so that a test sees every byte and how the connection ends. `send` writes and
 * resolves with the answer that follows (whole by its content-length), or with what came instead when the connection
 * closes or 5 s pass, so that a test fails rather than waits; `ask` GETs a path on the same connection. `ended` says
 * how the connection ended ('end', 'close' or an error code); `idleBeforeClose` how long after its last answer the
 * server closed it (-1: not within `waitMs`).
 */
function speak(socket: Socket) {
  let text = '';
  let lastAnswerAt = Date.now();
  socket.on('data', (c) => { text += c; });
  const ended = new Promise<string>((resolve) => {
    socket.on('end', () => resolve('end'));
    socket.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
    socket.on('close', () => resolve('close'));
  });
  const closed = new Promise<number>((resolve) => socket.once('close', () => resolve(Date.now() - lastAnswerAt)));
  const send = (data: string) => new Promise<string>((resolve) => {
    const from = text.length;
    const start = Date.now();
    socket.write(data);
    const poll = setInterval(() => {
      const got = text.slice(from);
      const head = got.indexOf('\r\n\r\n');
      const length = head < 0 ? undefined : /\r\ncontent-length: (\d+)/i.exec(got.slice(0, head))?.[1];
      const whole = length !== undefined && Buffer.byteLength(got.slice(head + 4)) >= Number(length);
      if (!whole && !socket.destroyed && Date.now() - start < 5000) return;
      clearInterval(poll);
      lastAnswerAt = Date.now();
      resolve(got || '(no answer)');
    }, 5);
  });
  return {
    send,
    ask: (path: string) => send(`GET ${path} HTTP/1.1\r\nHost: localhost\r\nConnection: keep-alive\r\n\r\n`),
    write: (data: string) => { socket.write(data); },
    ended,
    idleBeforeClose: (waitMs: number) => Promise.race([closed, new Promise<number>((r) => setTimeout(() => r(-1), waitMs).unref())]),
  };
}

/** Resolves with the socket once it is connected ('connect') or its TLS handshake done ('secureConnect'). */
const connected = (socket: Socket, ready: 'secureConnect' | 'connect') =>
  new Promise<Socket>((resolve, reject) => socket.once('error', reject).once(ready, () => resolve(socket)));

t.test('server.idleTimeoutSeconds: a kept-alive connection outlives the request and socket timeouts and is closed once idle that long, on both ports; the default is above the API server\'s 90 s', async (t) => {
  const log = capture();
  const metricsPort = await freePort();
  // requestTimeoutSeconds 1 makes headersTimeout 1 s and the socket timeout 3 s: the idle connections must outlive both
  const running = await serve(baseConfig({ requestTimeoutSeconds: 1, idleTimeoutSeconds: 4, metricsIdleTimeoutSeconds: 4, metricsPort }), { port: 0, host: '127.0.0.1' }, log.logger);
  t.teardown(() => running.stop());
  const tlsConn = speak(await connected(connect({ host: '127.0.0.1', port: running.port, rejectUnauthorized: false }), 'secureConnect'));
  const plainConn = speak(await connected(connectTcp({ host: '127.0.0.1', port: metricsPort }), 'connect'));
  t.match(await tlsConn.ask('/healthz'), /^HTTP\/1\.1 200/);
  t.match(await plainConn.ask('/metrics'), /^HTTP\/1\.1 200/);
  await new Promise((r) => setTimeout(r, 3500));
  t.match(await tlsConn.ask('/healthz'), /^HTTP\/1\.1 200/, 'HTTPS: idle 3.5 s (past the 1 s request and 3 s socket timeouts), the same connection still answers');
  t.match(await plainConn.ask('/metrics'), /^HTTP\/1\.1 200/, 'metrics port: the same');
  const [tlsIdle, plainIdle] = await Promise.all([tlsConn.idleBeforeClose(8000), plainConn.idleBeforeClose(8000)]);
  t.ok(tlsIdle >= 3900 && tlsIdle < 6000, `HTTPS: closed once idle 4 s (Node allows up to a second more; ${tlsIdle} ms)`);
  t.ok(plainIdle >= 3900 && plainIdle < 6000, `metrics port: the same (${plainIdle} ms)`);
  t.match(log.lines.find((l) => l.msg.startsWith('server.idleTimeoutSeconds is not above')), { level: 'warn', idleTimeoutSeconds: 4, apiServerIdleSeconds: 90 }, 'a value the API server outlasts is warned about');
  const defaults = parseConfig({ roleArn: 'arn:aws:iam::111122223333:role/r', artifactsDestination: 's3://bkt' }).server.idleTimeoutSeconds;
  t.ok(defaults > API_SERVER_IDLE_SECONDS, `the default (${defaults} s) outlasts the API server's idle timeout, so the API server closes first`);
});

/**
 * Opens a connection from `localAddress` (TLS to the HTTPS port, plain TCP to the metrics port) and sends one keep-alive
 * GET on it: 'held' when it is answered (the connection then stays open, idle), 'refused' when the server closed it
 * first. The socket is kept open for the test's lifetime.
 */
async function occupy(t: Test, port: number, localAddress: string, secure: boolean): Promise<'held' | 'refused'> {
  const socket = secure
    ? connect({ host: '127.0.0.1', port, localAddress, rejectUnauthorized: false })
    : connectTcp({ host: '127.0.0.1', port, localAddress });
  t.teardown(() => { socket.destroy(); });
  try {
    await connected(socket, secure ? 'secureConnect' : 'connect');
  } catch {
    return 'refused';
  }
  const answer = await speak(socket).ask(secure ? '/healthz' : '/metrics');
  return /^HTTP\/1\.1 200/.test(answer) ? 'held' : 'refused';
}

t.test('one client holding every connection it may take (attacker 127.0.0.1) does not keep another address (127.0.0.2) from /mutate, nor the kubelet from the probes on the metrics port', async (t) => {
  const log = capture();
  const metricsPort = await freePort();
  const running = await serve(baseConfig({
    maxConnections: 24, maxConnectionsPerSource: 6, requestTimeoutSeconds: 2,
    metricsPort, metricsMaxConnections: 12, metricsMaxConnectionsPerSource: 3,
  }), { port: 0, host: '127.0.0.1' }, log.logger);
  t.teardown(() => running.stop());

  // the attacker tries to take every slot of both listeners, each with a kept-alive request so the connection is idle, not silent
  const webhookTries = await Promise.all(Array.from({ length: 24 }, () => occupy(t, running.port, '127.0.0.1', true)));
  const metricsTries = await Promise.all(Array.from({ length: 12 }, () => occupy(t, metricsPort, '127.0.0.1', false)));
  t.equal(webhookTries.filter((r) => r === 'held').length, 6, 'the HTTPS port lets one address hold maxConnectionsPerSource connections');
  t.equal(metricsTries.filter((r) => r === 'held').length, 3, 'the metrics port lets it hold metricsMaxConnectionsPerSource');

  // the API server, from its own address
  const review = fixture('deployment-create').review;
  const answer = await https(running.port, '/mutate', { rejectUnauthorized: false, localAddress: '127.0.0.2', body: JSON.stringify(review) });
  t.equal(answer.status, 200, '/mutate is answered for the caller at 127.0.0.2');
  t.match(JSON.parse(answer.body).response, { uid: review.request.uid, allowed: true, patchType: 'JSONPatch' }, 'with its patch');
  // the kubelet, from the node's address
  for (const path of ['/healthz', '/readyz']) {
    t.equal((await http(metricsPort, 'GET', path, '127.0.0.3')).status, 200, `the kubelet's ${path} probe on the metrics port passes`);
  }

  const metrics = (await http(metricsPort, 'GET', '/metrics', '127.0.0.4')).body;
  t.match(metrics, /^mlflow_irsa_webhook_connections_dropped_total\{listener="webhook",reason="per-source"\} 18$/m, 'each refusal counted by listener and reason');
  t.match(metrics, /^mlflow_irsa_webhook_connections_dropped_total\{listener="metrics",reason="per-source"\} 9$/m);
  t.match(log.lines.find((l) => l.listener === 'webhook' && l.msg === 'connections closed on arrival: this client address holds as many as it may'),
    { level: 'warn', maxConnectionsPerSource: 6, source: '127.0.0.1' }, 'logged (once a minute at most) with the address and the key');
});

t.test('a connection that brings no request within server.requestTimeoutSeconds is closed; one that did stays open past it, for the idle timeout', async (t) => {
  const running = await serve(baseConfig({ requestTimeoutSeconds: 1, idleTimeoutSeconds: 120 }), { port: 0, host: '127.0.0.1' }, silent());
  t.teardown(() => running.stop());
  const used = speak(await connected(connect({ host: '127.0.0.1', port: running.port, rejectUnauthorized: false }), 'secureConnect'));
  t.match(await used.ask('/healthz'), /^HTTP\/1\.1 200/);
  const silentSocket = await connected(connect({ host: '127.0.0.1', port: running.port, localAddress: '127.0.0.5', rejectUnauthorized: false }), 'secureConnect');
  t.teardown(() => { silentSocket.destroy(); });
  const silentConn = speak(silentSocket);
  t.not(await silentConn.ended, 'error', 'the silent connection is closed by the server');
  t.match(await used.ask('/healthz'), /^HTTP\/1\.1 200/, 'the connection that brought a request is still open after that: only the idle timeout closes it');
  t.match((await https(running.port, '/metrics', { rejectUnauthorized: false })).body,
    /^mlflow_irsa_webhook_connections_dropped_total\{listener="webhook",reason="no-request"\} 1$/m, 'counted as no-request');
});

t.test('drain in process: answers say Connection: close, idle kept-alive connections are ended, a request still arriving and a just-accepted connection are answered, a client that never closes is cut at the deadline', async (t) => {
  const log = capture();
  // requestTimeoutSeconds 2: the just-accepted connection below sends its first request about 1 s after it opened
  const running = await serve(baseConfig({ drainSeconds: 0.5, requestTimeoutSeconds: 2 }), { port: 0, host: '127.0.0.1' }, log.logger);
  const raw = async (allowHalfOpen = false) => {
    const socket = await connected(connect({ host: '127.0.0.1', port: running.port, rejectUnauthorized: false, allowHalfOpen } as ConnectionOptions), 'secureConnect');
    t.teardown(() => { socket.destroy(); });
    return speak(socket);
  };
  const idle = await raw();
  t.notMatch(await idle.ask('/healthz'), /connection: close/i, 'before SIGTERM, keep-alive');
  const halfOpen = await raw(true);
  await halfOpen.ask('/healthz');
  const during = await raw();
  const fresh = await raw();
  const slow = await raw();
  await slow.ask('/healthz');

  const stopped = running.stop();
  await new Promise((r) => setTimeout(r, 100));
  // a request whose body is still on its way when the listener closes: its connection is left alone until it is answered
  const body = JSON.stringify(fixture('serviceaccount-create').review);
  slow.write(`POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body.slice(0, 100)}`);
  const answer = await during.ask('/readyz');
  t.match(answer, /^HTTP\/1\.1 503/, 'readyz 503 while draining');
  t.match(answer, /\r\nconnection: close\r\n/i, 'and the answer closes its connection');
  t.equal(await during.ended, 'end', 'which the server then ends cleanly');

  // the listener closes at 0.5 s; the just-accepted connection sends its first request after that, within the grace
  await new Promise((r) => setTimeout(r, 900));
  await t.rejects(https(running.port, '/healthz', { rejectUnauthorized: false }), /ECONNREFUSED/, 'no new connections after the drain');
  const slowAnswer = await slow.send(body.slice(100));
  t.match(slowAnswer, /^HTTP\/1\.1 200/, 'a request still arriving when the listener closed is answered');
  t.match(slowAnswer, /\r\nconnection: close\r\n/i);
  t.equal(await slow.ended, 'end', 'and its connection ended after that');
  const late = await fresh.ask('/healthz');
  t.match(late, /^HTTP\/1\.1 200/, 'a connection accepted before the close still gets its request answered');
  t.match(late, /\r\nconnection: close\r\n/i);
  t.equal(await idle.ended, 'end', 'a kept-alive connection idle through the drain is ended with close_notify and FIN, not reset');
  t.equal(await halfOpen.ended, 'end', 'so is one whose client does not close its side');
  await stopped;
  t.match(log.lines.find((l) => l.msg === 'listener closed; connections ended'), { closedIdle: 2, closedWithoutRequest: 0, destroyed: 1 },
    'two idle connections ended (the slow one closed itself with its answer); the one whose client never closed its side destroyed at the deadline');
  t.ok(log.lines.some((l) => l.msg === 'closed: in-flight requests finished'));
});
