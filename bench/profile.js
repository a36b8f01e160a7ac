// Profiles the webhook under one mix: the server runs with `node --cpu-prof`, autocannon drives it, and the profile
// is summarised by self time, start-up excluded. Usage: node bench/profile.js [mix=target-create] [seconds=8] [connections=32] [webhook|baseline]
import { mkdtempSync, readdirSync, readFileSync, rmSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildMixes } from './mixes.js';
import { checkAnswer, loadClient, makeTls, serverDefs, startServer, stopServer } from './run.js';
import { format, summarise } from './cpuprofile-summary.js';

const [mixId = 'target-create', seconds = '8', connections = '32', side = 'webhook'] = process.argv.slice(2);
const mix = buildMixes().find((m) => m.id === mixId);
if (!mix) throw new Error(`no mix ${mixId}; one of ${buildMixes().map((m) => m.id).join(', ')}`);

const dir = mkdtempSync(join(tmpdir(), 'mlflow-irsa-profile-'));
const load = loadClient();
try {
  const tls = await makeTls(dir);
  const def = { ...serverDefs(dir)[side], nodeArgs: ['--cpu-prof', '--cpu-prof-dir', join(dir, 'prof')] };
  const server = await startServer(def, tls);
  await checkAnswer(server, mix, tls);
  const result = await load.run({ key: 'profile', url: server.url, body: mix.body, connections: Number(connections), seconds: Number(seconds), ca: tls.ca });
  await stopServer(server);
  const [file] = readdirSync(join(dir, 'prof'));
  const keep = join(tmpdir(), `mlflow-irsa-${side}-${mix.id}.cpuprofile`);
  copyFileSync(join(dir, 'prof', file), keep);
  process.stdout.write(`${side}, ${mix.id}, ${connections} connections, ${seconds} s: ${Math.round(result.rps)} req/s, p99 ${result.latencyMs.p99.toFixed(3)} ms; start-up (${Math.round(server.readyMs)} ms + 200) left out; profile kept at ${keep}\n\n`);
  process.stdout.write(`${format(summarise(JSON.parse(readFileSync(keep, 'utf8')), 25, server.readyMs + 200))}\n`);
} finally {
  load.close();
  rmSync(dir, { recursive: true, force: true });
}
