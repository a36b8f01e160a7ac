#!/usr/bin/env node
// A stand-in for the aws CLI's `aws s3 sync` between two S3 locations, over directories: s3://<bucket>/<key> is the
// file $AWS_STANDIN_ROOT/<bucket>/<key>. It copies as the real command does (awscli customizations/s3: a source or
// target is a directory, so a trailing "/" is implied and s3://b/mlflow/3 never reaches s3://b/mlflow/30; an object is
// copied when the target lacks it, their sizes differ, or the source is newer; nothing is ever deleted) and prints
// "copy: <from> to <to>" per object, "(dryrun) copy: ..." with --dryrun. Anything else it refuses, exit 252 (the real
// CLI's usage error), so a script cannot lean on an option this stand-in would ignore.
// Every call is appended to $AWS_STANDIN_ROOT/calls.jsonl. $AWS_STANDIN_SKIP: a copying sync silently leaves out keys
// containing it (an object that failed to arrive); $AWS_STANDIN_FAIL_AFTER=N: it exits 1 after N copies (interrupted).
import { appendFileSync, copyFileSync, existsSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';

const root = process.env.AWS_STANDIN_ROOT;
const args = process.argv.slice(2);

function usage(message) {
  process.stderr.write(`aws: error: ${message}\n`);
  process.exit(252);
}

if (!root) usage('AWS_STANDIN_ROOT is not set');
appendFileSync(join(root, 'calls.jsonl'), `${JSON.stringify(args)}\n`);
if (args[0] !== 's3' || args[1] !== 'sync') usage(`the stand-in knows only "s3 sync", not ${JSON.stringify(args.slice(0, 2))}`);
const rest = args.slice(2);
const dryRun = rest.includes('--dryrun');
const paths = rest.filter((a) => a !== '--dryrun');
const unknown = paths.filter((a) => a.startsWith('--'));
if (unknown.length > 0) usage(`unknown options: ${unknown.join(', ')}`);
if (paths.length !== 2) usage(`expected a source and a target, got ${JSON.stringify(paths)}`);

/** s3://bucket/key as the directory aws s3 sync treats it as: bucket, and the key prefix ending in "/" (or ""). */
function location(uri) {
  const m = /^s3:\/\/([a-z0-9][a-z0-9.-]+[a-z0-9])(?:\/(.*))?$/.exec(uri);
  if (!m) usage(`${JSON.stringify(uri)} is not an s3:// location (the stand-in copies S3 to S3 only)`);
  const prefix = m[2] ?? '';
  const key = prefix === '' || prefix.endsWith('/') ? prefix : `${prefix}/`;
  const dir = resolve(root, m[1], key);
  if (dir !== resolve(root, m[1]) && !dir.startsWith(resolve(root, m[1]) + sep)) usage(`${JSON.stringify(uri)} leaves its bucket`);
  return { bucket: m[1], key, dir };
}

const source = location(paths[0]);
const target = location(paths[1]);

function* files(dir) {
  if (!existsSync(dir)) return;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) yield* files(path);
    else if (entry.isFile()) yield path;
  }
}

const skip = process.env.AWS_STANDIN_SKIP;
const failAfter = process.env.AWS_STANDIN_FAIL_AFTER === undefined ? Infinity : Number(process.env.AWS_STANDIN_FAIL_AFTER);
let copied = 0;
for (const file of [...files(source.dir)].sort()) {
  const rel = relative(source.dir, file).split(sep).join('/');
  const to = join(target.dir, rel);
  const from = statSync(file);
  const there = existsSync(to) ? statSync(to) : undefined;
  if (there && there.size === from.size && from.mtimeMs <= there.mtimeMs) continue;
  const line = `copy: s3://${source.bucket}/${source.key}${rel} to s3://${target.bucket}/${target.key}${rel}`;
  if (dryRun) {
    process.stdout.write(`(dryrun) ${line}\n`);
    continue;
  }
  if (skip && rel.includes(skip)) continue;
  if (copied >= failAfter) {
    process.stderr.write('upload failed: connection reset (the stand-in\'s AWS_STANDIN_FAIL_AFTER)\n');
    process.exit(1);
  }
  mkdirSync(dirname(to), { recursive: true });
  copyFileSync(file, to);
  copied += 1;
  process.stdout.write(`${line}\n`);
}
