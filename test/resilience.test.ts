// The real `serve` process over real TLS: load, SIGTERM under load, certificate rotation under load, TLS versions,
// limits and slow clients, and that no secret (an env value, the private key) reaches its output on any path.
import t from 'tap';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { Agent, request as httpsRequest } from 'node:https';
import { request as httpRequest } from 'node:http';
import { createServer as createTcpServer, connect as tcpConnect, type AddressInfo } from 'node:net';
import { connect as tlsConnect, createServer as createTlsServer, type ConnectionOptions, type TLSSocket } from 'node:tls';
import { X509Certificate } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { createCa, createServingCert, type KeyPair } from '../src/webhook/tls.js';
import { parseConfig } from '../src/config/config.js';
import { exampleConfig, fixture, root } from './helpers/fixtures.js';
import { applyStrict } from './helpers/strict-patch.js';

// RESILIENCE_CLI=<another build>/cli.js runs the same scenarios against that build (the before/after figures of issue 12)
const cli = process.env.RESILIENCE_CLI ?? join(root, 'dist/cli.js');
const MARKER = 'MARKER-s3cr3t-7c41e9';
const tmp = mkdtempSync(join(tmpdir(), 'resilience-'));
t.teardown(() => rmSync(tmp, { recursive: true, force: true }));

/** Every spawned process's whole output, checked for secrets at the end. */
const outputs: Array<{ what: string; text: () => string }> = [];
const running = new Set<ChildProcess>();
t.teardown(() => { for (const p of running) p.kill('SIGKILL'); });

let pairA: KeyPair;
let pairB: KeyPair;
/** A CA and two serving certificates it signed: a rotation as bootstrap-cert makes one. */
let ca: KeyPair;
let signedA: KeyPair;
let signedB: KeyPair;
/** The base64 body of a private key: a secret as much as any env value. */
const keyMaterial = (pair: KeyPair) => pair.key.split('\n').filter((l) => l && !l.startsWith('-----')).join('');
const fingerprint = (pem: string) => new X509Certificate(pem).fingerprint256;

/** The Deployment review whose env holds the marker, with a uid of our choosing. */
const deploymentCreate = fixture('deployment-create').review;
function secretReview(uid: string) {
  const review = structuredClone(deploymentCreate);
  review.request.uid = uid;
  review.request.object.spec.template.spec.containers[0].env.push({ name: 'DB_PASSWORD', value: MARKER });
  return review;
}

async function freePort(): Promise<number> {
  const srv = createTcpServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const { port } = srv.address() as AddressInfo;
  await new Promise((resolve) => srv.close(resolve));
  return port;
}

let files = 0;
function writePair(pair: KeyPair): { cert: string; key: string } {
  const n = files++;
  const cert = join(tmp, `tls-${n}.crt`);
  const key = join(tmp, `tls-${n}.key`);
  writeFileSync(cert, pair.cert);
  writeFileSync(key, pair.key);
  return { cert, key };
}

function writeConfig(extra: Record<string, unknown>): string {
  const file = join(tmp, `config-${files++}.json`);
  writeFileSync(file, JSON.stringify({ ...parseYaml(readFileSync(exampleConfig, 'utf8')), ...extra }));
  return file;
}

interface Served {
  readonly port: number;
  readonly child: ChildProcess;
  readonly exit: Promise<{ code: number | null; signal: string | null }>;
  /** stdout JSON lines parsed so far */
  lines(): any[];
  text(): string;
}

/** Runs `node dist/cli.js <args>` and keeps its whole output. */
function runCli(what: string, args: string[]) {
  const child = spawn(process.execPath, [cli, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  running.add(child);
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (c) => { stdout += c; });
  child.stderr!.on('data', (c) => { stderr += c; });
  const exit = new Promise<{ code: number | null; signal: string | null }>((resolve) => child.on('exit', (code, signal) => { running.delete(child); resolve({ code, signal }); }));
  outputs.push({ what, text: () => stdout + stderr });
  return { child, exit, stdout: () => stdout, stderr: () => stderr };
}

/** Starts `serve` on a free port with this config and key pair; resolves once it logs that it listens. */
async function startServe(what: string, server: Record<string, unknown>, pair: { cert: string; key: string }): Promise<Served> {
  const port = await freePort();
  const config = writeConfig({ server, logLevel: 'info' });
  const p = runCli(what, ['serve', '--config', config, '--port', String(port), '--host', '127.0.0.1', '--tls-cert', pair.cert, '--tls-key', pair.key]);
  // complete lines only: a read of the child's stdout may end in the middle of one (a burst over the pipe's buffer)
  const lines = () => p.stdout().split('\n').slice(0, -1).filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what}: serve did not report listening:\n${p.stdout()}${p.stderr()}`)), 30_000);
    const check = () => {
      if (lines().some((l) => l.msg === 'listening (HTTPS)' && l.port === port)) { clearTimeout(timer); resolve(); }
    };
    p.child.stdout!.on('data', check);
    p.exit.then(() => { clearTimeout(timer); reject(new Error(`${what}: serve exited early:\n${p.stdout()}${p.stderr()}`)); });
  });
  return { port, child: p.child, exit: p.exit, lines, text: () => p.stdout() + p.stderr() };
}

/** `reused`: the request went out on a kept-alive connection; `close`: the answer said Connection: close. */
interface Answer { status: number; text: string; fingerprint?: string; reused: boolean; close: boolean }

/** One HTTPS request; resolves with the answer, rejects with the socket error (its `reused` says on which connection). */
function call(port: number, o: { agent: Agent | false; ca: string[]; method?: string; path?: string; body?: string; contentType?: string }): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest({
      host: '127.0.0.1', port, servername: 'localhost', ca: o.ca, agent: o.agent, method: o.method ?? 'POST', path: o.path ?? '/mutate',
      headers: o.body === undefined ? {} : { 'content-type': o.contentType ?? 'application/json', 'content-length': Buffer.byteLength(o.body) },
    }, (res) => {
      const chunks: Buffer[] = [];
      const fp = (res.socket as TLSSocket).getPeerCertificate?.()?.fingerprint256;
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({
        status: res.statusCode!, text: Buffer.concat(chunks).toString('utf8'), fingerprint: fp, reused: req.reusedSocket, close: res.headers.connection === 'close',
      }));
      res.on('error', (err) => reject(Object.assign(err, { reused: req.reusedSocket })));
    });
    req.on('error', (err) => reject(Object.assign(err, { reused: req.reusedSocket })));
    req.end(o.body);
  });
}

/** The load's bodies: one serialised review, uid swapped in (cheap, so the load measures the server, not the client). */
const UID_SLOT = 'uid-slot-7f3a';
let loadBody: string;
const bodyFor = (uid: string) => loadBody.replace(UID_SLOT, uid);
/** The patch every load request must get (they differ only in uid), checked with the strict applier once. */
let referencePatch: string | undefined;

/** Checks one /mutate answer: 200, our uid echoed, allowed, the patch that applies strictly. Returns the problem or undefined. */
function answerProblem(a: Answer, uid: string): string | undefined {
  if (a.status !== 200) return `status ${a.status}: ${a.text.slice(0, 200)}`;
  const body = JSON.parse(a.text);
  if (body.response?.uid !== uid || body.response.allowed !== true) return `uid not echoed: ${a.text.slice(0, 200)}`;
  if (referencePatch === undefined) {
    try {
      applyStrict(secretReview(uid).request.object, JSON.parse(Buffer.from(body.response.patch, 'base64').toString('utf8')));
    } catch (err) {
      return `patch does not apply: ${(err as Error).message}`;
    }
    referencePatch = body.response.patch;
  }
  return body.response.patch === referencePatch ? undefined : `a different patch: ${body.response.patch}`;
}

/**
 * `workers` loops sending /mutate until `stop()` says so or their own request fails (with `keepGoing`, until `stop()`
 * only). Each outcome is recorded in order, so a test can ask what happened before what.
 */
async function load(port: number, o: { workers: number; agent: (i: number) => Agent | false; ca: string[]; total?: number; stop?: () => boolean; prefix: string; mark?: () => boolean; keepGoing?: boolean }) {
  const events: Array<{ uid: string; kind: 'ok' | 'bad' | 'error'; detail?: string; fingerprint?: string; seq: number; reused?: boolean; close?: boolean; marked?: boolean }> = [];
  let next = 0;
  let seq = 0;
  const worker = async (w: number) => {
    while ((o.total === undefined || next < o.total) && !(o.stop?.() ?? false)) {
      const uid = `${o.prefix}-${next++}`;
      // `mark` is read as the request leaves, so a test can ask what came back for requests sent after some moment
      const marked = o.mark?.();
      try {
        const a = await call(port, { agent: o.agent(w), ca: o.ca, body: bodyFor(uid) });
        if (a.status === 503) {
          // a request refused while closing (fastify's return503OnClosing, in builds before issue 12): not processed
          events.push({ uid, kind: 'error', detail: 'HTTP 503 while closing', seq: seq++, reused: a.reused, marked });
          if (!o.keepGoing) return;
          continue;
        }
        const problem = answerProblem(a, uid);
        events.push({ uid, kind: problem ? 'bad' : 'ok', detail: problem ?? String(a.status), fingerprint: a.fingerprint, seq: seq++, reused: a.reused, close: a.close, marked });
        if (problem) return;
      } catch (err) {
        const e = err as NodeJS.ErrnoException & { reused?: boolean };
        events.push({ uid, kind: 'error', detail: e.code ?? e.message, seq: seq++, reused: e.reused, marked });
        if (!o.keepGoing) return;
        await new Promise((r) => setTimeout(r, 10));
      }
    }
  };
  await Promise.all(Array.from({ length: o.workers }, (_, w) => worker(w)));
  return events;
}

t.before(async () => {
  [pairA, pairB, ca] = await Promise.all([createServingCert(['localhost'], 30), createServingCert(['localhost'], 30), createCa('resilience test CA', 30)]);
  loadBody = JSON.stringify(secretReview(UID_SLOT));
  [signedA, signedB] = await Promise.all([createServingCert(['localhost'], 30, ca), createServingCert(['localhost'], 30, ca)]);
});

t.test('serve under load, bad input and bad clients (server settings: body limit 256 KiB)', async (t) => {
  // all the load comes from 127.0.0.1: the cap per address is server.test.ts's subject, not this test's
  const served = await startServe('serve (load)', { bodyLimitBytes: 262_144, requestTimeoutSeconds: 10, maxConnectionsPerSource: 1000 }, writePair(pairA));
  t.teardown(() => { served.child.kill('SIGKILL'); });
  const ca = [pairA.cert];

  t.test('10,000 requests at 64 concurrent keep-alive connections: every one answered, none dropped', async (t) => {
    const agent = new Agent({ keepAlive: true, maxSockets: 64 });
    t.teardown(() => agent.destroy());
    const sockets = new Set();
    agent.on('free', (socket) => sockets.add(socket));
    const events = await load(served.port, { workers: 64, agent: () => agent, ca, total: 10_000, prefix: 'load' });
    const failed = events.filter((e) => e.kind !== 'ok');
    t.equal(events.length, 10_000, 'every request made');
    t.same(failed.slice(0, 5), [], `no error, no bad answer (${failed.length} failed)`);
    t.equal(sockets.size, 64, 'over 64 connections');
    // a decision line is written at the end of its event-loop turn, after its answer: on a busy machine the last ones
    // can still be in the pipe when the last answer arrives, so wait for them (up to 10 s) rather than read at once
    const decisions = () => new Set(served.lines().filter((l) => l.msg === 'admission decision').map((l) => l.uid)).size;
    for (let waited = 0; decisions() < 10_000 && waited < 10_000; waited += 50) await new Promise((r) => setTimeout(r, 50));
    t.equal(decisions(), 10_000, 'the server logged a decision for each');
  });

  t.test('error paths answer 4xx JSON and neither reply nor log repeats the body', async (t) => {
    const agent = new Agent({ keepAlive: false });
    const review = secretReview('errors');
    const text = JSON.stringify(review);
    const cases: Array<[string, string, string, number, RegExp]> = [
      ['unquoted secret (V8 quotes the text around a bad token)', text.replace(`"${MARKER}"`, MARKER), 'application/json', 400, /not valid JSON/],
      ['secret followed by garbage', text.replace(`"${MARKER}"`, `"${MARKER}" x`), 'application/json', 400, /not valid JSON/],
      ['truncated right after the secret', text.slice(0, text.indexOf(MARKER) + MARKER.length + 1), 'application/json', 400, /not valid JSON/],
      ['__proto__ next to the secret', text.replace('"DB_PASSWORD"', '"DB_PASSWORD","__proto__":{"x":1}'), 'application/json', 400, /prototype/],
      ['not an AdmissionReview', JSON.stringify({ ...review, kind: 'Pod' }), 'application/json', 400, /kind must be "AdmissionReview"/],
      ['object: null on CREATE', JSON.stringify({ ...review, request: { ...review.request, object: null, oldObject: review.request.object } }), 'application/json', 400, /request.object/],
      ['over the body limit', JSON.stringify({ ...review, pad: 'x'.repeat(262_144) }), 'application/json', 413, /too large/i],
      ['text/plain', text, 'text/plain', 415, /Unsupported Media Type|content-type/i],
    ];
    for (const [what, body, contentType, status, message] of cases) {
      const a = await call(served.port, { agent, ca, body, contentType });
      t.equal(a.status, status, `${what} → ${status}`);
      const parsed = JSON.parse(a.text);
      t.match(parsed, { statusCode: status, error: String, message }, `${what}: ${parsed.message}`);
      t.notOk(a.text.includes(MARKER), `${what}: the reply does not repeat the secret`);
    }
    const under = JSON.stringify({ ...review, request: { ...review.request, uid: 'just-under-limit' }, pad: '' });
    const padded = JSON.stringify({ ...JSON.parse(under), pad: 'x'.repeat(262_144 - Buffer.byteLength(under)) });
    t.equal(Buffer.byteLength(padded), 262_144, 'a body of exactly the limit');
    t.equal((await call(served.port, { agent, ca, body: padded })).status, 200, 'is accepted');
    t.equal(parseConfig({ roleArn: 'arn:aws:iam::111122223333:role/r', artifactsDestination: 's3://bkt' }).server.bodyLimitBytes, 3 * 2 ** 20, 'the default limit is 3 MiB');
  });

  t.test('a TLS 1.1 client is refused by the server', async (t) => {
    const client = { minVersion: 'TLSv1' as const, maxVersion: 'TLSv1.1' as const, ciphers: 'DEFAULT@SECLEVEL=0', rejectUnauthorized: false, servername: 'localhost' };
    // control: the same client does speak TLS 1.1 to a server that allows it, so the refusal below is the webhook's
    const old = createTlsServer({ ...pairA, minVersion: 'TLSv1', ciphers: 'DEFAULT@SECLEVEL=0' }, (s) => s.end());
    await new Promise<void>((resolve) => old.listen(0, '127.0.0.1', resolve));
    t.teardown(() => old.close());
    const control = await handshake({ ...client, port: (old.address() as AddressInfo).port });
    t.equal(control.protocol, 'TLSv1.1', 'the test client negotiates TLS 1.1 where allowed');
    const refused = await handshake({ ...client, port: served.port });
    t.equal(refused.error, 'ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION', 'the webhook answers with a protocol_version alert');
    const ok = await handshake({ ...client, maxVersion: 'TLSv1.2' as const, ciphers: 'DEFAULT', port: served.port });
    t.equal(ok.protocol, 'TLSv1.2', 'TLS 1.2 is accepted');
  });

  t.test('no plain-HTTP listener answers /mutate', async (t) => {
    const attempt = await new Promise<string>((resolve) => {
      const req = httpRequest({ host: '127.0.0.1', port: served.port, method: 'POST', path: '/mutate', headers: { 'content-type': 'application/json' } }, (res) => {
        let body = '';
        res.on('data', (c) => { body += c; });
        res.on('end', () => resolve(`answered ${res.statusCode}: ${body.slice(0, 100)}`));
      });
      req.on('error', (err: NodeJS.ErrnoException) => resolve(`error ${err.code ?? err.message}`));
      req.end(JSON.stringify(secretReview('plain')));
    });
    t.match(attempt, /^error /, `plain HTTP fails (${attempt})`);
  });

});

/** Connects with these TLS options; reports the negotiated protocol or the error code. */
function handshake(o: ConnectionOptions & { port: number }): Promise<{ protocol?: string; error?: string }> {
  return new Promise((resolve) => {
    const socket = tlsConnect({ host: '127.0.0.1', ...o }, () => {
      const protocol = socket.getProtocol() ?? undefined;
      socket.destroy();
      resolve({ protocol });
    });
    socket.on('error', (err: NodeJS.ErrnoException) => resolve({ error: err.code ?? err.message }));
  });
}

t.test('SIGTERM in the middle of keep-alive load: readyz 503, Connection: close on every answer, no reset on a reused connection, exit 0', async (t) => {
  // long enough that, on a loaded machine, the probe sees 503 well before the listener closes and requests still arrive after it
  const drainSeconds = 3;
  const served = await startServe('serve (sigterm)', { drainSeconds, maxConnectionsPerSource: 1000 }, writePair(pairA));
  t.teardown(() => { served.child.kill('SIGKILL'); });
  const ca = [pairA.cert];
  const agent = new Agent({ keepAlive: true, maxSockets: 64 });
  const probeAgent = new Agent({ keepAlive: true, maxSockets: 1 });
  t.teardown(() => { agent.destroy(); probeAgent.destroy(); });

  let exited = false;
  const exitInfo = served.exit.then((e) => { exited = true; return e; });
  const order: string[] = [];
  let seen503 = false;
  // the readiness probe, as the kubelet would run it
  const probe = (async () => {
    while (!exited) {
      try {
        const a = await call(served.port, { agent: probeAgent, ca, method: 'GET', path: '/readyz' });
        if (a.status === 503 && !seen503) {
          seen503 = true;
          order.push('readyz 503');
        }
      } catch {
        // refused once the listener has closed: the loop ends when the process does
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  let signalled = false;
  let answered = 0;
  const events = load(served.port, {
    workers: 64, agent: () => agent, ca, prefix: 'sigterm',
    stop: () => {
      if (!signalled && ++answered >= 1500) {
        signalled = true;
        order.push('SIGTERM');
        served.child.kill('SIGTERM');
      }
      return exited;
    },
    // every worker keeps sending until the process is gone, so each connection is tried at every stage of the drain
    keepGoing: true,
    // a request that leaves after the probe saw 503 reaches a server that is draining
    mark: () => seen503,
  });
  const all = await events;
  const exit = await Promise.race([exitInfo, new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), (drainSeconds + 25) * 1000))]);
  await probe;
  t.same(exit, { code: 0, signal: null }, 'the process exits 0 within the grace period');

  const firstFailure = all.find((e) => e.kind !== 'ok');
  if (firstFailure) order.push(`first /mutate failure (${firstFailure.detail})`);
  t.equal(order[0], 'SIGTERM');
  t.equal(order[1], 'readyz 503', `/readyz turned 503 before any request failed: ${order.join(' → ')}`);
  const firstSeq = firstFailure?.seq ?? Infinity;
  t.ok(all.filter((e) => e.seq > firstSeq && e.kind === 'ok').length < 64, 'after the first refusal, only requests already on their way are answered');
  t.same(all.filter((e) => e.kind === 'bad'), [], 'no answer was wrong (a 5xx, a bad review)');
  const okUids = new Set(all.filter((e) => e.kind === 'ok').map((e) => e.uid));
  const accepted = served.lines().filter((l) => l.msg === 'admission decision').map((l) => l.uid);
  const unanswered = accepted.filter((uid) => !okUids.has(uid));
  t.same(unanswered, [], `every request the server accepted (${accepted.length}) got its answer`);

  const errors = all.filter((e) => e.kind === 'error');
  const resetReused = errors.filter((e) => e.reused);
  const refused503 = errors.filter((e) => e.detail === 'HTTP 503 while closing');
  const onNew = errors.filter((e) => !e.reused && e.detail !== 'HTTP 503 while closing');
  const tally = (list: typeof errors) => [...new Set(list.map((e) => e.detail))].map((d) => `${d} ${list.filter((e) => e.detail === d).length}`).join(', ');
  t.comment(`${all.length} requests: ${okUids.size} answered; failed on a reused connection ${resetReused.length} (${tally(resetReused)}), 503 ${refused503.length}, `
    + `on a new connection after the listener closed ${onNew.length} (${tally(onNew)})`);
  t.same(resetReused.map((e) => e.detail), [], 'no request failed on a reused (kept-alive) connection: the one failure the API server does not retry');
  t.same(refused503, [], 'no request was refused with 503');
  t.ok(onNew.every((e) => /ECONNREFUSED|ECONNRESET/.test(e.detail ?? '')), `a new connection after the listener closed is refused (or reset in the accept queue): ${[...new Set(onNew.map((e) => e.detail))]}`);
  const afterDrain = all.filter((e) => e.kind === 'ok' && e.marked);
  t.ok(afterDrain.length > 0, `requests were answered during the drain (${afterDrain.length})`);
  t.same(afterDrain.filter((e) => !e.close).map((e) => e.uid), [], 'every answer during the drain said Connection: close');
  t.ok(okUids.size > 1500, `requests kept being answered during the drain (${okUids.size} answered)`);
  const msgs = served.lines().map((l) => l.msg);
  const at = (m: string) => msgs.indexOf(m);
  t.ok(at('shutting down') >= 0 && at('shutting down') < at('draining: /readyz now answers 503, every response closes its connection')
    && at('draining: /readyz now answers 503, every response closes its connection') < at('listener closed; connections ended')
    && at('listener closed; connections ended') < at('closed: in-flight requests finished'), 'logged: shutting down → draining → listener closed → closed');
});

t.test('certificate rotation under load: new handshakes get the new certificate, no request fails', async (t) => {
  const paths = writePair(signedA);
  const served = await startServe('serve (rotation)', { certReloadSeconds: 0.1 }, paths);
  t.teardown(() => { served.child.kill('SIGKILL'); });
  const trust = [ca.cert];
  const keepAlive = new Agent({ keepAlive: true, maxSockets: 24 });
  t.teardown(() => keepAlive.destroy());

  const seen: string[] = [];
  const handshakeErrors: string[] = [];
  let rotatedSeen = 0;
  let rotatedAt = Infinity;
  let done = false;
  // a fresh handshake every few milliseconds: what a new API server connection would be served
  const watcher = (async () => {
    while (!done) {
      const h = await new Promise<string>((resolve) => {
        const s = tlsConnect({ host: '127.0.0.1', port: served.port, servername: 'localhost', ca: trust }, () => { resolve(s.getPeerCertificate().fingerprint256); s.destroy(); });
        s.on('error', (err: NodeJS.ErrnoException) => { handshakeErrors.push(err.code ?? err.message); resolve('error'); });
      });
      if (h === 'error') continue;
      if (seen.at(-1) !== h) seen.push(h);
      if (h === fingerprint(signedB.cert)) rotatedSeen++;
      await new Promise((r) => setTimeout(r, 10));
    }
  })();
  let answered = 0;
  let rotated = false;
  const events = load(served.port, {
    // 24 workers on kept-alive connections, 8 making a new connection (a new handshake) for every request
    workers: 32, agent: (w) => (w < 24 ? keepAlive : false), ca: trust, prefix: 'rotate',
    stop: () => {
      answered++;
      if (!rotated && answered >= 500) {
        rotated = true;
        rotatedAt = Date.now();
        // as a Secret volume update would: each file replaced whole, cert first (for a moment the pair does not match)
        writeFileSync(`${paths.cert}.new`, signedB.cert);
        writeFileSync(`${paths.key}.new`, signedB.key);
        renameSync(`${paths.cert}.new`, paths.cert);
        setTimeout(() => renameSync(`${paths.key}.new`, paths.key), 150);
      }
      // enough handshakes with the new certificate, or (should it never come) a generous deadline
      return rotatedSeen >= 20 || Date.now() > rotatedAt + 30_000;
    },
  });
  const all = await events;
  done = true;
  await watcher;
  const failed = all.filter((e) => e.kind !== 'ok');
  t.same(failed.slice(0, 5), [], `no request failed (${all.length} made, ${failed.length} failed)`);
  t.same(handshakeErrors, [], 'no fresh handshake failed');
  t.same(seen, [fingerprint(signedA.cert), fingerprint(signedB.cert)], 'fresh handshakes present the old certificate, then only the new one');
  const fresh = all.filter((e) => e.fingerprint && e.uid && e.kind === 'ok');
  t.ok(fresh.some((e) => e.fingerprint === fingerprint(signedB.cert)), 'requests on new connections were served with the new certificate');
  t.ok(served.lines().some((l) => l.msg.startsWith('serving certificate reloaded')), 'the reload is logged');
});

t.test('TLS 1.3 minimum, and slow or silent clients are cut off (requestTimeoutSeconds 1)', async (t) => {
  const served = await startServe('serve (tls1.3, timeouts)', { tlsMinVersion: 'TLSv1.3', requestTimeoutSeconds: 1 }, writePair(pairA));
  t.teardown(() => { served.child.kill('SIGKILL'); });

  const v12 = await handshake({ port: served.port, maxVersion: 'TLSv1.2' as const, ca: [pairA.cert], servername: 'localhost' });
  t.equal(v12.error, 'ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION', 'a TLS 1.2 client is refused');
  const v13 = await handshake({ port: served.port, ca: [pairA.cert], servername: 'localhost' });
  t.equal(v13.protocol, 'TLSv1.3', 'TLS 1.3 is accepted');

  /** Sends `head` whole, then `trickle` a byte each 100 ms; reports how the server ended it, or 'still open' after 20 s. */
  const slow = (head: string, trickle: string, tls = true) => new Promise<{ ended: string; sent: number; reply: string }>((resolve) => {
    let reply = '';
    let sent = 0;
    let timer: NodeJS.Timeout;
    const giveUp = setTimeout(() => finish('still open after 20 s'), 20_000);
    const finish = (ended: string) => { clearInterval(timer); clearTimeout(giveUp); socket.destroy(); resolve({ ended, sent, reply }); };
    const start = () => {
      socket.write(head);
      timer = setInterval(() => { if (sent < trickle.length) socket.write(trickle[sent++]); }, 100);
    };
    const socket = tls
      ? tlsConnect({ host: '127.0.0.1', port: served.port, ca: [pairA.cert], servername: 'localhost' }, start)
      : tcpConnect({ host: '127.0.0.1', port: served.port }, start);
    socket.on('data', (c) => { reply += c; });
    socket.on('close', () => finish('closed by the server'));
    socket.on('error', () => finish('closed by the server'));
  });
  const endless = 'X-Slow: ' + 'a'.repeat(400);
  const [headers, body, silent, noHandshake] = await Promise.all([
    slow('POST /mutate HTTP/1.1\r\nHost: localhost\r\n', endless),
    slow(`POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n`, '{"a":"' + 'b'.repeat(400)),
    slow('', ''),
    slow('', '', false),
  ]);
  t.equal(headers.ended, 'closed by the server', `headers sent byte by byte: cut off after ${headers.sent} bytes`);
  t.ok(headers.sent < endless.length, 'while it was still sending');
  t.match(headers.reply, /^HTTP\/1\.1 408/, 'with 408 Request Timeout');
  t.equal(body.ended, 'closed by the server', `body sent byte by byte: cut off after ${body.sent} bytes`);
  t.match(body.reply, /^HTTP\/1\.1 408/, 'with 408 Request Timeout');
  t.equal(silent.ended, 'closed by the server', 'a TLS connection that never sends a request is closed');
  t.equal(noHandshake.ended, 'closed by the server', 'a TCP connection that never starts the TLS handshake is closed');
});

t.test('bad config and bad certificate files: a clear error, exit code, and no secret', async (t) => {
  const pair = writePair(pairA);
  const badConfigs: Array<[string, string, RegExp[]]> = [
    ['secret-looking keys', JSON.stringify({ ...parseYaml(readFileSync(exampleConfig, 'utf8')), password: MARKER, databaseUrl: `postgres://mlflow:${MARKER}@db/mlflow`, server: { PGPASSWORD: MARKER } }), [/- password: unknown key/, /- databaseUrl: unknown key/, /- server\.PGPASSWORD: unknown key/]],
    ['YAML syntax error on the secret\'s line', `roleArn: arn:aws:iam::111122223333:role/r\nartifactsDestination: s3://bkt\npassword: [${MARKER}\n  x: {`, [/\(file\): not valid YAML or JSON/]],
  ];
  const runs = await Promise.all(badConfigs.map(async ([what, text]) => {
    const file = join(tmp, `bad-${files++}.yaml`);
    writeFileSync(file, text);
    const p = runCli(`serve (${what})`, ['serve', '--config', file, '--port', String(await freePort()), '--tls-cert', pair.cert, '--tls-key', pair.key]);
    return { p, exit: await p.exit };
  }));
  badConfigs.forEach(([what, , messages], i) => {
    t.equal(runs[i].exit.code, 2, `${what}: exit 2`);
    for (const m of messages) t.match(runs[i].p.stderr(), m, `${what}: the error names the problem (${m})`);
  });
  const other = writePair(pairB);
  const [swapped, mismatched] = [
    runCli('serve (cert and key swapped)', ['serve', '--config', exampleConfig, '--port', String(await freePort()), '--tls-cert', pair.key, '--tls-key', pair.cert]),
    runCli('serve (key of another cert)', ['serve', '--config', exampleConfig, '--port', String(await freePort()), '--tls-cert', pair.cert, '--tls-key', other.key]),
  ];
  t.equal((await swapped.exit).code, 1, 'cert and key swapped: exit 1');
  t.match(swapped.stderr(), /^serve: \S+tls-\d+\.key is not a PEM certificate \(/, `cert and key swapped: ${swapped.stderr().trim()}`);
  t.equal((await mismatched.exit).code, 1, 'a key that does not match the cert: exit 1');
  t.match(mismatched.stderr(), /^serve: \S+\.key is not the private key of the certificate in \S+\.crt \(.*key values mismatch/, `mismatched: ${mismatched.stderr().trim()}`);
});

t.test('no output of any process above holds the env secret or private key material', async (t) => {
  t.ok(outputs.length >= 8, `${outputs.length} process outputs captured`);
  const secrets = [MARKER, ...[pairA, pairB, ca, signedA, signedB].map(keyMaterial), ...keyMaterial(pairA).match(/.{1,40}/g)!.slice(0, 2), ...keyMaterial(pairB).match(/.{1,40}/g)!.slice(0, 2)];
  for (const o of outputs) {
    const text = o.text();
    t.ok(text.length > 0, `${o.what}: output captured (${text.length} bytes)`);
    const leaks = secrets.filter((s) => text.includes(s));
    t.same(leaks, [], `${o.what}: no secret in its output`);
  }
});
