// What `docker build .` puts in the image, worked out without a Docker engine from the Dockerfile's own instructions and
// .dockerignore: the build context, then each stage's files, instruction by instruction. An instruction it does not
// know how to follow (a new RUN) is an error, so the listing can never quietly miss what a change adds.
import ignoreFile from '@balena/dockerignore';
import { DockerfileParser, type Instruction } from 'dockerfile-ast';
import { readdirSync, readFileSync } from 'node:fs';
import { join, posix } from 'node:path';

export interface FileEntry {
  /** "context", "npm ci", "npm ci --omit=dev" or "tsc" */
  readonly origin: string;
  /** the file on disk, for files from the build context */
  readonly disk?: string;
}

export interface Stage {
  readonly name?: string;
  /** the FROM image after ARG substitution, or the name of an earlier stage */
  readonly from: string;
  readonly platform?: string;
  /** absolute path in the image → entry; a path ending in / is a package directory npm wrote */
  readonly files: Map<string, FileEntry>;
  readonly labels: Record<string, string>;
  /** each RUN's words */
  readonly runs: string[][];
  workdir: string;
  user?: string;
  entrypoint?: string[];
  cmd?: string[];
}

export interface Build {
  /** ARG defaults before the first FROM */
  readonly args: Record<string, string>;
  /** files of the build context, relative, after .dockerignore */
  readonly context: string[];
  /** context files some COPY used */
  readonly contextUsed: Set<string>;
  readonly stages: Stage[];
}
/** The build context Docker sends: every file under root that .dockerignore does not exclude. */
export function buildContext(root: string): string[] {
  const patterns = readFileSync(join(root, '.dockerignore'), 'utf8');
  const ig = ignoreFile().add(patterns);
  const exceptions = patterns.split('\n').map((l) => l.trim()).filter((l) => l.startsWith('!')).map((l) => posix.normalize(l.slice(1)));
  const files: string[] = [];
  const walk = (rel: string) => {
    for (const entry of readdirSync(join(root, rel), { withFileTypes: true })) {
      const path = rel ? `${rel}/${entry.name}` : entry.name;
      if (entry.isDirectory()) {
        // Docker skips an excluded directory unless an exception pattern reaches inside it
        if (ig.ignores(path) && !exceptions.some((e) => e.startsWith(`${path}/`))) continue;
        walk(path);
      } else if (!ig.ignores(path)) {
        files.push(path);
      }
    }
  };
  walk('');
  return files.sort();
}

const substitute = (text: string, vars: Record<string, string>) =>
  text.replace(/\$\{(\w+)\}|\$(\w+)/g, (whole, a, b) => vars[a ?? b] ?? whole);

const unquote = (v: string) => (/^".*"$/.test(v) ? v.slice(1, -1) : v);

/** npm ci's node_modules: one entry per package the lockfile lists, without dev ones under --omit=dev. */
function npmCi(stage: Stage, argv: string[]): void {
  const lockfile = stage.files.get(posix.join(stage.workdir, 'package-lock.json'))?.disk;
  if (!lockfile) throw new Error(`RUN ${argv.join(' ')}: no package-lock.json in ${stage.workdir}`);
  const origin = argv.includes('--omit=dev') ? 'npm ci --omit=dev' : 'npm ci';
  const lock = JSON.parse(readFileSync(lockfile, 'utf8'));
  for (const [path, meta] of Object.entries<{ dev?: boolean }>(lock.packages)) {
    if (path === '' || (meta.dev && origin.endsWith('--omit=dev'))) continue;
    stage.files.set(posix.join(stage.workdir, `${path}/`), { origin });
  }
}

/** `npm run build` is `tsc -p tsconfig.json`: each .ts under rootDir becomes .js under outDir, with a .map unless turned off. */
function npmRunBuild(stage: Stage, argv: string[], root: string): void {
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
  if (pkg.scripts.build !== 'tsc -p tsconfig.json') throw new Error(`the build script is now "${pkg.scripts.build}": teach test/helpers/image.ts what it writes`);
  const extra = argv.includes('--') ? argv.slice(argv.indexOf('--') + 1) : [];
  if (extra.length > 0 && !(extra.length === 2 && extra[0] === '--sourceMap' && /^(true|false)$/.test(extra[1]))) {
    throw new Error(`npm run build -- ${extra.join(' ')}: teach test/helpers/image.ts these tsc flags`);
  }
  const tsconfig = stage.files.get(posix.join(stage.workdir, 'tsconfig.json'))?.disk;
  if (!tsconfig) throw new Error(`RUN ${argv.join(' ')}: no tsconfig.json in ${stage.workdir}`);
  const options = JSON.parse(readFileSync(tsconfig, 'utf8')).compilerOptions;
  const sourceMap = extra.length > 0 ? extra[1] === 'true' : Boolean(options.sourceMap);
  const rootDir = posix.join(stage.workdir, options.rootDir);
  const outDir = posix.join(stage.workdir, options.outDir);
  for (const path of [...stage.files.keys()]) {
    if (!path.startsWith(`${rootDir}/`) || !path.endsWith('.ts') || path.endsWith('.d.ts')) continue;
    const out = posix.join(outDir, posix.relative(rootDir, path)).replace(/\.ts$/, '.js');
    stage.files.set(out, { origin: 'tsc' });
    if (sourceMap) stage.files.set(`${out}.map`, { origin: 'tsc' });
    if (options.declaration) stage.files.set(out.replace(/\.js$/, '.d.ts'), { origin: 'tsc' });
  }
}

/** Follows the Dockerfile at root; throws on an instruction whose effect on the files it cannot tell. */
export function simulateBuild(root: string): Build {
  const dockerfile = DockerfileParser.parse(readFileSync(join(root, 'Dockerfile'), 'utf8'));
  const args: Record<string, string> = {};
  for (const arg of dockerfile.getInitialARGs()) {
    const p = arg.getProperty();
    if (p?.getName()) args[p.getName()] = p.getValue() ?? '';
  }
  const context = buildContext(root);
  const contextUsed = new Set<string>();
  const stages: Stage[] = [];
  let stage: Stage | undefined;
  let vars: Record<string, string> = {};

  for (const instruction of dockerfile.getInstructions()) {
    const keyword = instruction.getKeyword();
    const argv = instruction.getArguments().map((a) => a.getValue());
    if (keyword === 'FROM') {
      const from = substitute(argv[0], args);
      const parent = stages.find((s) => s.name === from);
      const platform = (instruction as any).getPlatformFlag()?.getValue() ?? undefined;
      stage = { name: argv[2], from, platform, files: new Map(parent?.files), labels: { ...parent?.labels }, runs: [], workdir: parent?.workdir ?? '/' };
      stages.push(stage);
      vars = { ...args };
      continue;
    }
    if (!stage) {
      if (keyword === 'ARG') continue;
      throw new Error(`${keyword} before the first FROM`);
    }
    switch (keyword) {
      case 'ARG':
        for (const a of argv) {
          const [name, ...value] = a.split('=');
          vars[name] = value.join('=');
        }
        break;
      case 'WORKDIR':
        stage.workdir = posix.resolve(stage.workdir, argv[0]);
        break;
      case 'LABEL':
        for (const p of (instruction as any).getProperties()) stage.labels[p.getName()] = substitute(unquote(p.getValue()), vars);
        break;
      case 'USER':
        stage.user = argv[0];
        break;
      case 'ENTRYPOINT':
      case 'CMD': {
        const words = (instruction as any).getJSONStrings().map((s: any) => JSON.parse(s.getValue()));
        if (keyword === 'ENTRYPOINT') stage.entrypoint = words;
        else stage.cmd = words;
        break;
      }
      case 'COPY':
        copy(instruction, stage, stages, root, context, contextUsed);
        break;
      case 'RUN':
        stage.runs.push(argv);
        if (argv[0] === 'npm' && argv[1] === 'ci') npmCi(stage, argv);
        else if (argv[0] === 'npm' && argv[1] === 'run' && argv[2] === 'build') npmRunBuild(stage, argv, root);
        else throw new Error(`RUN ${argv.join(' ')}: teach test/helpers/image.ts which files it writes`);
        break;
      case 'ENV':
      case 'EXPOSE':
        break;
      default:
        throw new Error(`${keyword}: teach test/helpers/image.ts what it does to the image's files`);
    }
  }
  return { args, context, contextUsed, stages };
}

/** COPY [--from=stage] SRC... DEST: a file goes to DEST (or into it, when DEST ends in / or there are several
 *  sources); a directory's contents go into DEST. */
function copy(instruction: Instruction, stage: Stage, stages: Stage[], root: string, context: string[], used: Set<string>): void {
  const flags = (instruction as any).getFlags() as Array<{ getName(): string; getValue(): string | null }>;
  const unknown = flags.find((f) => f.getName() !== 'from');
  if (unknown) throw new Error(`COPY --${unknown.getName()}: teach test/helpers/image.ts this flag`);
  const fromName = flags.find((f) => f.getName() === 'from')?.getValue() ?? undefined;
  const source = fromName === undefined ? undefined : stages.find((s) => s.name === fromName);
  if (fromName !== undefined && !source) throw new Error(`COPY --from=${fromName}: no stage of that name before it`);
  const argv = instruction.getArguments().map((a) => a.getValue());
  const [sources, destArg] = [argv.slice(0, -1), argv.at(-1)!];
  const dest = posix.resolve(stage.workdir, destArg);
  const intoDir = destArg.endsWith('/') || sources.length > 1;
  for (const src of sources) {
    if (/[*?[]/.test(src)) throw new Error(`COPY ${src}: teach test/helpers/image.ts wildcards`);
    // the source's files as [path relative to the source, entry]
    let found: Array<[string, FileEntry]>;
    let isFile: boolean;
    if (source) {
      const abs = posix.resolve('/', src);
      isFile = source.files.has(abs);
      found = [...source.files].filter(([p]) => p === abs || p.startsWith(`${abs}/`)).map(([p, e]) => [p === abs ? '' : p.slice(abs.length + 1), e]);
    } else {
      const rel = posix.normalize(src).replace(/\/$/, '');
      isFile = context.includes(rel);
      const files = context.filter((f) => f === rel || f.startsWith(`${rel}/`));
      for (const f of files) used.add(f);
      found = files.map((f) => [f === rel ? '' : f.slice(rel.length + 1), { origin: 'context', disk: join(root, f) }]);
    }
    if (found.length === 0) throw new Error(`COPY ${fromName ? `--from=${fromName} ` : ''}${src}: not found (excluded by .dockerignore, or not in that stage)`);
    for (const [rel, entry] of found) {
      // (posix.join keeps the trailing / that marks a package directory)
      const target = isFile ? (intoDir ? posix.join(dest, posix.basename(src)) : dest) : posix.join(dest, rel);
      stage.files.set(target, entry);
    }
  }
}

/** The final stage's files under its WORKDIR, relative and sorted, with where each came from. */
export function finalFiles(build: Build): Array<[string, string]> {
  const final = build.stages.at(-1)!;
  return [...final.files]
    .filter(([path]) => path.startsWith(`${final.workdir}/`))
    .map(([path, entry]): [string, string] => [path.slice(final.workdir.length + 1), entry.origin])
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}
