// The docs cannot drift from the code: links, quoted messages and the commands they show are checked here.
//
// (a) Links. Every link in README.md, CHANGELOG.md, docs/*.md and the chart's README (inline `[text](target)`, images,
//     and reference definitions `[name]: target`) is either an https:// URL or a relative path that resolves to a file
//     inside the repository; a `#anchor` must name a heading of the target Markdown file, slugged as GitHub does.
// (b) The troubleshooting table (docs/troubleshooting.md, "Messages"). Its column "printed by" says where each
//     row's text comes from. For `ours` (this program) every `code span` in the first column must exist in src/, for
//     `chart` in the chart's templates; any other value names another tool (Helm, Kubernetes, AWS, ...), quoted as that
//     tool prints it, and is not checked here. In a quoted message of ours, `<…>` marks a part the program fills in
//     (written with a typical value, e.g. `<mlflow>`) and `…` a part left out; the rest must appear in the sources
//     literally (string literals joined with `+` count as one), or, where the code assembles it from pieces, each
//     phrase of it between punctuation.
// (c) `kubectl logs` with a label selector (-l / --selector) shows only the last 10 lines per pod unless told
//     otherwise, so every such command in the docs (NOTES.txt included) carries --tail.
// (d) Every `node dist/cli.js <command> ...` uses only options that command accepts: the `options` of the command's
//     module, found through src/cli.ts's command table, plus the ones cli.ts adds to every command.
// (e) Every `helm <subcommand> ...` uses only flags that the real helm binary's `helm <subcommand> --help` lists.
// (f) The manual uninstall the operator guide gives for `helm uninstall --no-hooks` runs the SQL `install-trigger` prints,
//     and names each object that SQL drops.
// (g) The workspace snippet runs under the real boto3. (h) The docs say what proxied does not separate.
// (i) One home per topic: the README within 1,500 words with both local commands on its first screen, the config table
//     in the chart README alone, and no sentence of twelve words or more in two files.
// (g) What the controls do not do is said where they are recommended: the location styles table has a row on isolation
//     between projects, and every doc that offers `proxied` as the answer to workspace credentials says that it
//     separates no projects; no doc says the trigger keeps a user from another project's prefix.
import t from 'tap';
import { execFile, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { promisify } from 'node:util';
import { root } from './helpers/fixtures.js';
import { anchors, prose } from './helpers/markdown.js';
import { COMMON_OPTIONS } from '../src/command.js';

const exec = promisify(execFile);
const read = (file: string) => readFileSync(join(root, file), 'utf8');
const walk = (dir: string, keep: (f: string) => boolean): string[] => readdirSync(join(root, dir), { recursive: true, encoding: 'utf8' })
  .map((f) => join(dir, f)).filter((f) => statSync(join(root, f)).isFile() && keep(f)).sort();

const DOCS = ['README.md', 'CHANGELOG.md', 'charts/mlflow-irsa-webhook/README.md', ...walk('docs', (f) => f.endsWith('.md'))];
/** Where commands are shown to an operator: the docs, the notes Helm prints after an install, the example values. */
const COMMAND_SOURCES = [...DOCS, 'charts/mlflow-irsa-webhook/templates/NOTES.txt', ...walk('examples', (f) => /\.ya?ml$/.test(f))];

/** The links of a Markdown file (outside code), with their line numbers. */
export function links(md: string): Array<{ target: string; line: number }> {
  const text = prose(md).replace(/(`+)[^`\n][\s\S]*?\1/g, (span) => span.replace(/[^\n]/g, ' '));
  const found: Array<{ target: string; line: number }> = [];
  const lineOf = (index: number) => text.slice(0, index).split('\n').length;
  for (const m of text.matchAll(/!?\[[^\]\n]*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)) found.push({ target: m[1], line: lineOf(m.index) });
  for (const m of text.matchAll(/^ {0,3}\[[^\]\n]+\]:\s*<?(\S+?)>?(?:\s|$)/gm)) found.push({ target: m[1], line: lineOf(m.index) });
  for (const m of text.matchAll(/<([a-z][a-z0-9+.-]*:[^>\s]+)>/gi)) found.push({ target: m[1], line: lineOf(m.index) });
  return found;
}

/** Why a link from `file` is broken, or undefined when it resolves. */
export function brokenLink(file: string, target: string, repo = root): string | undefined {
  if (/^[a-z][a-z0-9+.-]*:/i.test(target)) return /^https:\/\/[^/\s]+/i.test(target) ? undefined : 'leaves the repository by another scheme than https://';
  const [path, anchor] = target.split('#', 2) as [string, string | undefined];
  const absolute = path === '' ? join(repo, file) : resolve(repo, dirname(file), decodeURIComponent(path));
  if (absolute !== repo && !absolute.startsWith(repo.endsWith(sep) ? repo : repo + sep)) return `points outside the repository (${relative(repo, absolute)})`;
  if (!existsSync(absolute)) return `no such file ${relative(repo, absolute)}`;
  if (anchor !== undefined && absolute.endsWith('.md') && !anchors(readFileSync(absolute, 'utf8')).has(anchor)) {
    return `no heading #${anchor} in ${relative(repo, absolute)}`;
  }
  return undefined;
}

t.test('(a) every link resolves inside the repository, or is https://', async (t) => {
  let count = 0;
  for (const file of DOCS) {
    for (const { target, line } of links(read(file))) {
      count++;
      const why = brokenLink(file, target);
      t.equal(why, undefined, `${file}:${line} → ${target}${why ? `: ${why}` : ''}`);
    }
  }
  t.ok(count > 60, `links were found (${count})`);
  // the checker itself fails on each kind of bad link
  t.match(brokenLink('README.md', '../shared/reference/mlflow-irsa-procedure.md'), /outside the repository/);
  t.match(brokenLink('README.md', 'docs/no-such.md'), /no such file/);
  t.match(brokenLink('README.md', 'docs/operator-guide.md#no-such-heading'), /no heading/);
  t.match(brokenLink('README.md', 'http://example.com/'), /https/);
  t.match(brokenLink('README.md', 'file:///etc/passwd'), /https/);
  t.equal(brokenLink('docs/security.md', 'operator-guide.md#the-image'), undefined);
  t.same(links('see [a](x.md), `[b](y.md)`\n```\n[c](z.md)\n```\n[d]: https://e.org\n'), [{ target: 'x.md', line: 1 }, { target: 'https://e.org', line: 5 }]);
  t.ok(anchors('# The two modes (`trigger.mode`)\n## Hooks and their order\n## Hooks and their order\n```\n# not a heading\n```\n')
    .has('the-two-modes-triggermode'), 'code spans and punctuation drop out of the slug');
  t.same([...anchors('## a\n## a\n```\n# b\n```\n')], ['a', 'a-1']);
});

// ---- (b) the troubleshooting table's quoted messages ----

/** A table row's cells, split on `|` outside code spans. */
function cells(row: string): string[] {
  const out: string[] = [];
  let cell = '';
  let tick = false;
  for (const ch of row.trim().replace(/^\||\|$/g, '')) {
    if (ch === '`') tick = !tick;
    if (ch === '|' && !tick) {
      out.push(cell.trim());
      cell = '';
    } else cell += ch;
  }
  return [...out, cell.trim()];
}

const codeSpans = (cell: string) => [...cell.matchAll(/`([^`]+)`/g)].map((m) => m[1]);

/**
 * Source text without comments, where `'a' + 'b'` reads as `'ab'` and escaped quotes as quotes, so a message is found
 * as it prints and a phrase is not found in a comment.
 */
const sourceText = (file: string) => read(file)
  .replace(/^\s*(\/\/|\/\*|\*).*$/gm, '').replace(/\s\/\/\s.*$/gm, '').replace(/\{\{-?\s*\/\*[\s\S]*?\*\/\s*-?\}\}/g, '')
  .replace(/(['"`])\s*\+\s*(['"`])/g, '').replace(/\\(['"`])/g, '$1');

/**
 * Where a quoted message was not found, or undefined when it was: whole, or each literal part between placeholders,
 * or, where the code joins a part from pieces (a hint from a table, a clause in a variable), each phrase of it between
 * punctuation.
 */
export function missingMessage(quote: string, corpus: readonly string[]): string | undefined {
  const found = (text: string) => corpus.some((source) => source.includes(text));
  if (found(quote)) return undefined;
  const parts = quote.split(/<[^<>]*>|…/).filter((p) => p.trim().length >= 3);
  if (!parts.some((p) => p.trim().length >= 10)) return 'too little of it is literal text to check';
  const missing = parts.flatMap((p) => (found(p) ? [] : p.split(/[(),;:"]/).map((w) => w.trim()).filter((w) => w.length >= 3 && !found(w))));
  return missing.length === 0 ? undefined : `not in the sources: ${missing.map((p) => JSON.stringify(p)).join(', ')}`;
}

t.test('(b) each message the troubleshooting table quotes as ours exists in the code that prints it', async (t) => {
  const page = read('docs/troubleshooting.md');
  const section = /^## Messages\n([\s\S]*?)(?=^## |(?![\s\S]))/m.exec(page)?.[1] ?? '';
  const rows = section.split('\n').filter((l) => l.startsWith('|')).map(cells);
  const header = rows[0] ?? [];
  const by = header.findIndex((h) => /^printed by$/i.test(h));
  t.ok(by > 0, 'the table has a "printed by" column');
  const corpora: Record<string, string[]> = {
    ours: walk('src', (f) => f.endsWith('.ts')).map(sourceText),
    chart: walk('charts/mlflow-irsa-webhook/templates', () => true).map(sourceText),
  };
  const checked: Record<string, number> = { ours: 0, chart: 0 };
  for (const row of rows.slice(2)) {
    if (row.slice(1).every((c) => c === '')) continue; // a group heading
    const origin = row[by] ?? '';
    t.not(origin, '', `a row says who prints it: ${row[0]}`);
    const corpus = corpora[origin];
    if (!corpus) continue;
    const quotes = codeSpans(row[0]);
    t.ok(quotes.length > 0, `a row marked ${origin} quotes its message: ${row[0]}`);
    for (const quote of quotes) {
      checked[origin]++;
      const why = missingMessage(quote, corpus);
      t.equal(why, undefined, `${origin}: ${quote}${why ? `: ${why}` : ''}`);
    }
  }
  t.ok(checked.ours >= 30, `messages of ours checked (${checked.ours})`);
  t.ok(checked.chart >= 5, `messages of the chart checked (${checked.chart})`);
  // the check fails on a message the code does not print, and on one that is all placeholder
  t.match(missingMessage('webhook not ready at <url>, so it sulks', corpora.ours), /not in the sources/);
  t.match(missingMessage('<everything>: <else>', corpora.ours), /too little/);
  t.equal(missingMessage('cannot listen on <[::]>:<8443>: <EADDRINUSE> (another process listens on this port)', corpora.ours), undefined);
});

// ---- commands shown in the docs ----

/** Every command line in the sources that starts with `prefix`: continuation lines joined, cut at a shell operator or the end of a code span. */
function commandLines(prefix: RegExp): Array<{ file: string; command: string }> {
  const found: Array<{ file: string; command: string }> = [];
  for (const file of COMMAND_SOURCES) {
    const text = read(file).replace(/\\\n\s*/g, ' ');
    for (const line of text.split('\n')) {
      for (const m of line.matchAll(new RegExp(prefix.source, 'g'))) {
        const rest = line.slice(m.index);
        found.push({ file, command: rest.split(/`|\s[|;&>#]|\s\|\||\$\(|\)\s|'\)|\)$/)[0].trim() });
      }
    }
  }
  return found;
}

t.test('(c) kubectl logs with a label selector shows every line (--tail)', async (t) => {
  const selecting = commandLines(/kubectl\s[^\n`]*?\blogs\b/).filter(({ command }) => /\s(-l|--selector)[\s=]/.test(` ${command}`));
  t.ok(selecting.length >= 3, `kubectl logs -l commands found (${selecting.length})`);
  for (const { file, command } of selecting) t.match(command, /\s--tail[= ]-?\d+/, `${file}: ${command}`);
});

/** The options each command accepts: its module's `options` (through src/cli.ts's table) and what cli.ts adds. */
async function commandOptions(): Promise<Map<string, Set<string>>> {
  const table = [...read('src/cli.ts').matchAll(/^\s*'?([a-z-]+)'?: \{ summary: .*import\('\.\/([^']+)'\)/gm)];
  const out = new Map<string, Set<string>>();
  for (const [, name, module] of table) {
    const m = await import(`../src/${module}`) as { options: Record<string, { short?: string }>; deprecatedOptions?: Record<string, string> };
    const names = ['help', 'h', ...Object.keys(m.deprecatedOptions ?? {})];
    for (const [long, spec] of Object.entries({ ...COMMON_OPTIONS, ...m.options })) names.push(long, ...('short' in spec && spec.short ? [spec.short] : []));
    out.set(name, new Set(names));
  }
  return out;
}

/** The option names a command line uses: `--name`, `--name=value` and `-x`. */
const flagsOf = (command: string) => command.split(/\s+/).filter((w) => /^--?[a-z]/i.test(w)).map((w) => w.replace(/^--?/, '').replace(/=.*$/, ''));

t.test('(d) node dist/cli.js commands in the docs use only options the command accepts', async (t) => {
  const options = await commandOptions();
  t.ok(options.size >= 6 && options.get('iam-policy')?.has('kms-key-arn'), 'the command table was read');
  const lines = commandLines(/node dist\/cli\.js\s/);
  t.ok(lines.length >= 10, `commands found (${lines.length})`);
  for (const { file, command } of lines) {
    const [name, ...rest] = command.replace(/^node dist\/cli\.js\s+/, '').split(/\s+/);
    if (name === '--version' || name.startsWith('<')) continue; // the version, or a placeholder for any command
    const accepted = options.get(name);
    t.ok(accepted, `${file}: ${command}: ${name} is a command`);
    for (const flag of flagsOf(rest.join(' '))) t.ok(accepted?.has(flag), `${file}: ${command}: ${name} accepts --${flag}`);
  }
  // the check fails on an option the command does not have
  t.notOk(options.get('doctor')?.has('kms-key-arn'), 'doctor takes no --kms-key-arn');
  t.ok(options.get('doctor')?.has('values'), 'every command takes --values');
});

t.test('(e) helm commands in the docs use only flags helm has', async (t) => {
  const helm = join(root, '.cache/helm/helm');
  const lines = commandLines(/\bhelm (install|upgrade|uninstall|test|template|lint|rollback|status|get)\s/);
  t.ok(lines.length >= 10, `helm commands found (${lines.length})`);
  const help = new Map<string, string>();
  for (const sub of new Set(lines.map(({ command }) => command.split(/\s+/)[1]))) help.set(sub, (await exec(helm, [sub, '--help'])).stdout);
  const has = (text: string, flag: string) => new RegExp(flag.length === 1 ? `(^|\\s)-${flag},` : `(^|\\s)--${flag}[\\s=]`, 'm').test(text);
  for (const { file, command } of lines) {
    const [, sub, ...rest] = command.split(/\s+/);
    for (const flag of flagsOf(rest.join(' '))) t.ok(has(help.get(sub) ?? '', flag), `${file}: ${command}: helm ${sub} has ${flag.length === 1 ? '-' : '--'}${flag}`);
  }
  t.notOk(has(help.get('install') ?? '', 'no-such-flag'), 'the check fails on a flag helm lacks');
});

t.test('(f) the manual uninstall in the operator guide runs the SQL install-trigger prints, and names what it drops', async (t) => {
  const { stdout } = await exec(process.execPath, [join(root, 'dist/cli.js'), 'install-trigger', '--config', join(root, 'examples/config.yaml'), '--dry-run', '--uninstall']);
  const drops = stdout.split('\n').filter((l) => l.startsWith('DROP '));
  t.ok(drops.length >= 4, `the script drops our triggers and functions (${drops.length})`);
  t.match(stdout, /^SET LOCAL lock_timeout = '\d+s';$/m, 'with a lock timeout, so a hand run never queues MLflow behind it');
  const guide = read('docs/operator-guide.md');
  t.ok(guide.includes('node dist/cli.js install-trigger --config config.yaml --dry-run --uninstall | psql -v ON_ERROR_STOP=1'), 'the guide pipes that script into psql, stopping at the first error');
  // each statement without its `;`, as the guide's prose quotes it
  for (const drop of drops) {
    const named = drop.replace(/^DROP (TRIGGER|FUNCTION) IF EXISTS /, '').replace(/;$/, '');
    const [object] = named.split(' ON ');
    t.ok(guide.includes(object), `the guide names ${object}`);
  }
});

t.test('(g) the workspace snippet in docs/trigger.md, run by the real boto3: web identity answers, and the region is set where boto3 reads it', async (t) => {
  const python = ['python3', '/usr/bin/python3'].find((p) => spawnSync(p, ['-c', 'import boto3'], { stdio: 'ignore' }).status === 0);
  if (!python) {
    t.fail('no python3 with boto3 (.ci/run installs python3-boto3)');
    return;
  }
  const section = /^### Credentials that refresh themselves[^\n]*\n([\s\S]*?)(?=^#{2,3} )/m.exec(read('docs/trigger.md'))?.[1] ?? '';
  const snippet = /```python\n([\s\S]*?)```/.exec(section)?.[1];
  t.ok(snippet, 'the snippet is there');
  const dir = mkdtempSync(join(tmpdir(), 'workspace-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const token = join(dir, 'token');
  writeFileSync(token, 'eyJhbGciOiJSUzI1NiJ9.e30.c2ln');
  // a workspace as Domino and an earlier notebook left it: the token, AWS_REGION only, exported static keys
  const env = {
    PATH: process.env.PATH ?? '', HOME: dir, AWS_WEB_IDENTITY_TOKEN_FILE: token, AWS_ACCOUNT_NO: '111122223333', AWS_ROLE_NAME: 'workspace-artifacts',
    AWS_REGION: 'eu-central-1', AWS_ACCESS_KEY_ID: 'AKIAIOSFODNN7EXAMPLE', AWS_SECRET_ACCESS_KEY: 'wJalrXUtnFEMI', AWS_SESSION_TOKEN: 'old',
    AWS_CONFIG_FILE: join(dir, 'none'), AWS_SHARED_CREDENTIALS_FILE: join(dir, 'none'), AWS_EC2_METADATA_DISABLED: 'true',
  };
  const probe = 'import boto3\ns = boto3.Session()\nprint(s.region_name, s.get_credentials().method, s.client("sts").meta.endpoint_url)';
  const before = spawnSync(python, ['-c', 'import boto3\nprint(boto3.Session().region_name)'], { env, encoding: 'utf8' });
  t.equal(before.stdout.trim(), 'None', `without the snippet boto3 has no region, though AWS_REGION is set ${before.stderr.trim()}`);
  const r = spawnSync(python, ['-c', `${snippet}\n${probe}`], { env, encoding: 'utf8' });
  t.equal(r.status, 0, r.stderr);
  t.equal(r.stdout.trim(), 'eu-central-1 assume-role-with-web-identity https://sts.eu-central-1.amazonaws.com',
    'the region from AWS_REGION, web identity instead of the exported keys, and the regional STS endpoint');
});

t.test('(h) the docs say what proxied and the location rules do not separate, where they recommend them', async (t) => {
  const styles = read('docs/trigger.md').split('\n').find((l) => l.startsWith('| isolation between projects |'));
  t.ok(styles, 'the styles table has a row "isolation between projects"');
  const [, direct, proxied] = (styles ?? '').split(' | ');
  t.match(direct, /S3 IAM can separate them/, 'direct: by IAM');
  t.match(proxied, /none at the storage layer: anyone who can reach MLflow reads, writes and deletes every project's artifacts/, 'proxied: none');
  t.match(proxied, /MLflow's auth app cannot protect these paths/);
  // wherever proxied answers "workspaces hold the role on the whole bucket" or "need no credentials", the cost is named
  const recommending = [
    ['docs/procedure.md', /Exported session keys in workspaces[^\n]*/],
    ['docs/trigger.md', /\*\*Use `proxied`\*\*[^]*?\n\n/],
    ['docs/security.md', /With `trigger\.locationStyle: proxied`[^]*?\n- /],
  ] as const;
  for (const [file, where] of recommending) {
    const passage = where.exec(read(file))?.[0] ?? '';
    t.ok(passage.length > 0, `${file}: the passage that recommends proxied`);
    t.match(passage, /every (MLflow user|project's artifacts)|nothing separates projects/, `${file}: it says proxied separates no projects`);
  }
  for (const file of DOCS) t.notMatch(prose(read(file)), /(refuses|stops|prevents)[^.]*another project's prefix/, `${file}: claims no wall between projects`);
});

t.test('(i) one home per topic: the README is a first screen, the config table stands once, no sentence is told twice', async (t) => {
  const readme = read('README.md');
  const words = prose(readme).split(/\s+/).filter(Boolean).length + (readme.match(/^```[\s\S]*?^```/gm) ?? []).join(' ').split(/\s+/).length;
  t.ok(words <= 1500, `README.md: ${words} words (at most 1,500)`);
  const firstScreen = readme.split('\n').slice(0, 40).join('\n');
  t.match(firstScreen, /npm ci && npm start/, 'the first screen has the webhook running locally');
  t.match(firstScreen, /npm ci && npm test/, 'and the test command');
  // the config keys' reference is the chart README's generated values table, and only there
  const tables = DOCS.filter((f) => /^\| *key *\| *type *\| *default *\|/im.test(read(f)));
  t.same(tables, ['charts/mlflow-irsa-webhook/README.md'], 'the config table lives in one place');
  // a sentence of twelve words or more said in two files is a topic explained twice: say it once and link to it
  const seen = new Map<string, string>();
  const repeated: string[] = [];
  for (const file of DOCS.filter((f) => f !== 'CHANGELOG.md')) {
    const text = prose(read(file)).split('\n').filter((l) => !/^\s*(\||#)/.test(l)).join(' ').replace(/\s+/g, ' ');
    for (const sentence of text.split(/(?<=[.!?])\s+(?=[A-Z`*[])/)) {
      const s = sentence.trim();
      if (s.split(' ').length < 12) continue;
      const first = seen.get(s);
      if (first !== undefined && first !== file) repeated.push(`${first} and ${file}: ${s.slice(0, 100)}`);
      else seen.set(s, file);
    }
  }
  t.same(repeated, [], 'no sentence stands in two files');
});
