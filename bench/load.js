// The load generator, in a process of its own: runs autocannon (keep-alive HTTPS) on request over IPC and answers JSON figures.
// Latency is taken from autocannon's per-response timer into a nanosecond histogram, because autocannon's own
// histogram keeps whole milliseconds, too coarse for a sub-millisecond webhook.
import autocannon from 'autocannon';
import { createHistogram } from 'node:perf_hooks';

/** Figures accumulate per key (server × mix × connections) across interleaved rounds; each answer is the running total. */
const totals = new Map();

function run({ key, url, body, connections, seconds, ca }) {
  const t = totals.get(key) ?? { latency: createHistogram(), ok: 0, seconds: 0, rounds: [], roundsOk: [], non2xx: 0, errors: 0, timeouts: 0 };
  totals.set(key, t);
  const { latency } = t;
  return new Promise((resolve, reject) => {
    let ok = 0;
    const instance = autocannon({
      url,
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body,
      connections,
      pipelining: 1,
      duration: seconds,
      servername: 'localhost',
      tlsOptions: { ca },
    }, (err, result) => {
      if (err) return reject(err);
      const ms = (p) => latency.count ? latency.percentile(p) / 1e6 : null;
      t.ok += ok;
      t.seconds += result.duration;
      t.rounds.push(Math.round(ok / result.duration));
      t.roundsOk.push(ok);
      t.non2xx += result.non2xx;
      t.errors += result.errors;
      t.timeouts += result.timeouts;
      resolve({
        connections,
        seconds: t.seconds,
        ok: t.ok,
        rps: t.ok / t.seconds,
        roundsRps: t.rounds,
        roundsOk: t.roundsOk,
        non2xx: t.non2xx,
        errors: t.errors,
        timeouts: t.timeouts,
        latencyMs: { p50: ms(50), p99: ms(99), p99_9: ms(99.9), max: latency.count ? latency.max / 1e6 : null },
      });
    });
    instance.on('response', (_client, statusCode, _bytes, responseTimeMs) => {
      if (statusCode >= 200 && statusCode < 300) {
        ok++;
        latency.record(Math.max(1, Math.round(responseTimeMs * 1e6)));
      }
    });
  });
}

process.on('message', (msg) => {
  run(msg).then((result) => process.send({ id: msg.id, result }), (err) => process.send({ id: msg.id, error: err.message }));
});
