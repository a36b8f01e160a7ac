#!/usr/bin/env node
// npm run mutants [-- ID...]: the suite's own mutation check. Applies each one-line break listed in test/mutants.json,
// one at a time, in a temporary copy of the repository (never the working tree), builds it with tsc there and runs
// the test files named for that break. Exit 1 when a break survives (its tests pass), when a listed snippet is not
// found exactly once (the list is out of step with the code), when a break does not compile, or when the named tests
// fail before any break. Arguments select breaks whose id contains one of them. Not part of `npm test`.
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const LIST = 'test/mutants.json';

class Stop extends Error {
  constructor(message, code = 1) {
    super(message);
    this.code = code;
  }
}

function fail(message, code = 1) {
  throw new Stop(message, code);
}

/** The list, each entry checked for its fields, its files, and its snippet found exactly once in the code as it is. */
function readList(selectors) {
  let all;
  try {
    all = JSON.parse(readFileSync(join(root, LIST), 'utf8')).mutants;
  } catch (err) {
    fail(`${LIST}: ${err.message}`, 2);
  }
  if (!Array.isArray(all) || all.length === 0) fail(`${LIST}: "mutants" must be a non-empty list`, 2);
  const problems = [];
  const ids = new Set();
  for (const [i, m] of all.entries()) {
    const at = `${LIST} entry ${i}${typeof m?.id === 'string' ? ` (${m.id})` : ''}`;
    for (const key of ['id', 'file', 'find', 'why']) if (typeof m?.[key] !== 'string' || m[key] === '') problems.push(`${at}: "${key}" must be a non-empty string`);
    if (typeof m?.replace !== 'string') problems.push(`${at}: "replace" must be a string`);
    if (!Array.isArray(m?.tests) || m.tests.length === 0 || !m.tests.every((f) => typeof f === 'string' && existsSync(join(root, f)))) problems.push(`${at}: "tests" must list test files that exist`);
    if (problems.length > 0) continue;
    if (ids.has(m.id)) problems.push(`${at}: the id is used twice`);
    ids.add(m.id);
    if (m.find === m.replace) problems.push(`${at}: "replace" equals "find": nothing would break`);
    if (!existsSync(join(root, m.file))) {
      problems.push(`${at}: ${m.file} does not exist`);
      continue;
    }
    const found = readFileSync(join(root, m.file), 'utf8').split(m.find).length - 1;
    if (found !== 1) problems.push(`${at}: the snippet occurs ${found} times in ${m.file}, not once: ${JSON.stringify(m.find)}`);
  }
  if (problems.length > 0) fail(`the list is out of step with the code:\n  ${problems.join('\n  ')}`);
  const chosen = selectors.length === 0 ? all : all.filter((m) => selectors.some((s) => m.id.includes(s)));
  if (chosen.length === 0) fail(`no break's id contains ${selectors.map((s) => JSON.stringify(s)).join(' or ')}`, 2);
  return chosen;
}

/** The repository's files as they are now (tracked and new, not ignored) copied; node_modules and .cache linked. */
function copyRepository() {
  const listed = spawnSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], { cwd: root, encoding: 'utf8' });
  if (listed.status !== 0) fail(`git ls-files: ${listed.stderr.trim()}`);
  const dir = mkdtempSync(join(tmpdir(), 'mutants-'));
  for (const file of listed.stdout.split('\0').filter(Boolean)) {
    if (!existsSync(join(root, file))) continue; // deleted in the working tree
    mkdirSync(dirname(join(dir, file)), { recursive: true });
    cpSync(join(root, file), join(dir, file));
  }
  for (const shared of ['node_modules', '.cache']) {
    if (existsSync(join(root, shared))) symlinkSync(realpathSync(join(root, shared)), join(dir, shared));
  }
  return dir;
}

function build(dir) {
  // incremental: after the first build, only the file a break touched (and the one it restores) is compiled again
  const tsc = join(dir, 'node_modules/typescript/bin/tsc');
  return spawnSync(process.execPath, [tsc, '-p', 'tsconfig.json', '--incremental', '--tsBuildInfoFile', '.mutants.tsbuildinfo'], { cwd: dir, encoding: 'utf8' });
}

/** Runs the test files; the exit status and the first failing assertions. */
function runTests(dir, tests) {
  // FC_SEED=fixed: property tests use their fixed seed alone, so that whether a break is caught never depends on luck
  const res = spawnSync('npx', ['tap', '--disable-coverage', '-R', 'tap', ...tests], {
    cwd: dir, encoding: 'utf8', maxBuffer: 256 * 1024 * 1024, env: { ...process.env, FC_SEED: 'fixed', FC_PATH: '' },
  });
  const failures = (res.stdout ?? '').split('\n').filter((l) => /^\s*not ok /.test(l)).map((l) => l.trim());
  // the deepest failures name the assertion; the enclosing tests only repeat that they failed
  return { ok: res.status === 0, failures: failures.slice(0, 2), output: `${res.stdout}${res.stderr}` };
}

const seconds = (since) => `${Math.round((Date.now() - since) / 1000)} s`;

const keep = process.env.MUTANTS_KEEP === '1';
let exitCode = 0;
let dir;
try {
  const mutants = readList(process.argv.slice(2));
  dir = copyRepository();
  console.log(`mutants: ${mutants.length} breaks from ${LIST}, in a copy at ${dir}`);
  const first = build(dir);
  if (first.status !== 0) fail(`the copy does not build:\n${first.stdout}${first.stderr}`);
  const tests = [...new Set(mutants.flatMap((m) => m.tests))].sort();
  let start = Date.now();
  const baseline = runTests(dir, tests);
  if (!baseline.ok) fail(`the named tests fail before any break (${tests.join(' ')}); fix them first:\n${baseline.output.slice(-4000)}`);
  console.log(`baseline: ${tests.join(' ')} pass without a break (${seconds(start)})`);

  const survived = [];
  const broken = [];
  for (const [i, m] of mutants.entries()) {
    const file = join(dir, m.file);
    const original = readFileSync(file, 'utf8');
    writeFileSync(file, original.replace(m.find, () => m.replace));
    start = Date.now();
    const label = `[${i + 1}/${mutants.length}] ${m.id} (${m.file}; ${m.tests.join(' ')})`;
    try {
      const built = build(dir);
      if (built.status !== 0) {
        broken.push(m.id);
        console.log(`${label}: DOES NOT COMPILE, so it is no realistic break:\n${built.stdout}${built.stderr}`);
        continue;
      }
      const result = runTests(dir, m.tests);
      if (result.ok) {
        survived.push(m.id);
        console.log(`${label}: SURVIVED (${seconds(start)}): ${m.why}`);
      } else {
        console.log(`${label}: caught (${seconds(start)})${result.failures.map((f) => `\n    ${f.slice(0, 200)}`).join('')}`);
      }
    } finally {
      writeFileSync(file, original);
    }
  }
  if (broken.length > 0) {
    console.log(`\n${broken.length} breaks do not compile: ${broken.join(', ')}`);
    exitCode = 1;
  }
  if (survived.length > 0) {
    console.log(`\n${survived.length} of ${mutants.length} breaks survived: ${survived.join(', ')}`);
    exitCode = 1;
  } else if (broken.length === 0) {
    console.log(`\nall ${mutants.length} breaks were caught`);
  }
} catch (err) {
  if (!(err instanceof Stop)) throw err;
  console.error(`mutants: ${err.message}`);
  exitCode = err.code;
} finally {
  if (dir && keep) console.log(`the copy stays at ${dir} (MUTANTS_KEEP=1)`);
  else if (dir) rmSync(dir, { recursive: true, force: true });
}
process.exit(exitCode);
