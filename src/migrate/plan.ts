// migrate-artifacts' plan, pure: where each artifact reference of the tracking database has its objects relative to the
// old destination, the fewest prefixes that cover them, and the plan printed as a reviewed-before-run aws script or JSON.
//
// How MLflow resolves a proxied reference (mlflow/server/handlers.py, _get_proxied_run_artifact_destination_path, and
// mlflow/store/artifact/mlflow_artifacts_repo.py, MlflowArtifactsRepository.resolve_uri): the server takes the URI's
// path (urlparse, leading "/" stripped) and joins it to its *current* MLFLOW_ARTIFACTS_DESTINATION; the netloc of
// mlflow-artifacts://host/path only tells the client which server to ask. So mlflow-artifacts:/<path> and
// mlflow-artifacts:///<path> are <destination>/<path> here, and mlflow-artifacts://<host>/<path> is another server's.
import { hasDotSegment, locationPath } from '../config/artifact-location.js';
import { s3UriPattern } from '../config/schema.js';
import { bucketProblem } from '../config/config.js';
import { shellQuote, splitS3Uri } from '../iam-policy.js';

/** Where a reference is read from: `<table>.<column>` (trace_tags.value only under the key mlflow.artifactLocation). */
export const REFERENCE_KINDS = [
  'experiments.artifact_location',
  'runs.artifact_uri',
  'model_versions.source',
  'model_versions.storage_location',
  'logged_models.artifact_location',
  'trace_tags.value',
] as const;
export type ReferenceKind = (typeof REFERENCE_KINDS)[number];

/** One artifact reference as the database holds it: its row's id and the URI, both tenant text. */
export interface Reference {
  readonly kind: ReferenceKind;
  readonly id: string;
  readonly uri: string;
}

/** What a reference means for the copy. */
export type Disposition =
  /** mlflow-artifacts:/<path>: the proxy resolves it against whatever destination is current, so <path> is copied */
  | { readonly kind: 'proxied'; readonly path: string }
  /** s3://<from>/<path>: a direct reference to the copy's source; its objects are copied under the same <path> */
  | { readonly kind: 'direct'; readonly path: string }
  /** s3://<to>/...: already at the copy's target */
  | { readonly kind: 'atTarget' }
  /** runs:/ and models:/ name another row (a run, a logged model), whose own reference is read */
  | { readonly kind: 'indirect' }
  | { readonly kind: 'unmapped'; readonly reason: string };

export const UNMAPPED_REASONS = {
  otherServer: 'names a tracking server by host (mlflow-artifacts://<host>/ or an http(s) URL): that server resolves it against its own destination',
  otherLocation: 'an s3:// location outside both destinations: not stored through the proxy, so it does not move with the destination',
  localPath: 'a local path (file: or /...) on some machine\'s disk, which no S3 copy reaches',
  otherScheme: 'a scheme other than mlflow-artifacts:, s3:, runs: and models:',
  controlCharacters: 'holds control or invisible characters, so the path is not copied blind',
  queryOrFragment: 'holds "?" or "#", which MLflow\'s URL parsing cuts off the path',
  percentEscape: 'holds "%", which the proxy\'s HTTP route decodes and its run listing does not, so the key is ambiguous',
  emptySegment: 'has an empty path segment ("//"), which MLflow\'s client collapses and its server does not',
  dotSegment: 'has a "." or ".." path segment',
} as const;

// Cc, Cf (bidi overrides, zero-width), Co, Cn, Zl, Zp, and lone surrogates: bytes a terminal or a reviewer cannot see
const INVISIBLE = /[\p{Cc}\p{Cf}\p{Co}\p{Cn}\p{Zl}\p{Zp}]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/u;

/** Why a path (after the destination, slashes at the ends removed) is not copied as it stands, or undefined. */
function pathProblem(path: string): string | undefined {
  if (INVISIBLE.test(path)) return UNMAPPED_REASONS.controlCharacters;
  if (/[?#]/.test(path)) return UNMAPPED_REASONS.queryOrFragment;
  if (path.includes('%')) return UNMAPPED_REASONS.percentEscape;
  if (path.startsWith('/') || path.includes('//')) return UNMAPPED_REASONS.emptySegment;
  if (hasDotSegment(path)) return UNMAPPED_REASONS.dotSegment;
  return undefined;
}

/** A path with its slashes at the end removed (a directory is named with or without them), then judged. */
function mapped(kind: 'proxied' | 'direct', rawPath: string): Disposition {
  const path = rawPath.replace(/\/+$/, '');
  const problem = pathProblem(path);
  return problem ? { kind: 'unmapped', reason: problem } : { kind, path };
}

/** True when `key` is `prefix` or lies under it, segment by segment ("" contains everything). */
const within = (key: string, prefix: string) => prefix === '' || key === prefix || key.startsWith(`${prefix}/`);

export interface Destination {
  /** s3://<bucket>[/prefix], without a trailing slash */
  readonly uri: string;
  readonly bucket: string;
  /** without slashes at either end; "" for the bucket root */
  readonly prefix: string;
}

export function destination(uri: string): Destination {
  const { bucket, prefix } = splitS3Uri(uri);
  return { uri: uri.replace(/\/+$/, ''), bucket, prefix };
}

const S3_URI = new RegExp(s3UriPattern);

/** Why a value from outside the config (--from, the annotation) is not a destination artifactsDestination could be, or undefined. */
export function destinationProblem(uri: string): string | undefined {
  if (!S3_URI.test(uri)) return 'not s3://<bucket>[/prefix] (a bucket of a-z 0-9 . -, prefix segments of A-Z a-z 0-9 . _ -)';
  return bucketProblem(uri) ?? (hasDotSegment(locationPath(uri)) ? 'no "." or ".." path segments' : undefined);
}

/** True when one destination is the other or lies inside it: a copy between them would copy into itself. */
export function overlaps(a: Destination, b: Destination): boolean {
  return a.bucket === b.bucket && (within(a.prefix, b.prefix) || within(b.prefix, a.prefix));
}

/** What one reference means for a copy from `from` to `to`. */
export function dispose(uri: string, from: Destination, to: Destination): Disposition {
  const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):/.exec(uri)?.[1].toLowerCase();
  const rest = scheme === undefined ? uri : uri.slice(scheme.length + 1);
  switch (scheme) {
    case 'mlflow-artifacts': {
      // the server's urlparse(...).path.lstrip("/"): every leading slash goes
      if (!rest.startsWith('//')) return mapped('proxied', rest.replace(/^\/+/, ''));
      const slash = rest.indexOf('/', 2);
      const netloc = rest.slice(2, slash < 0 ? undefined : slash);
      if (netloc !== '') return { kind: 'unmapped', reason: UNMAPPED_REASONS.otherServer };
      return mapped('proxied', slash < 0 ? '' : rest.slice(slash).replace(/^\/+/, ''));
    }
    case 's3': {
      if (!rest.startsWith('//')) return { kind: 'unmapped', reason: UNMAPPED_REASONS.otherLocation };
      const slash = rest.indexOf('/', 2);
      const bucket = rest.slice(2, slash < 0 ? undefined : slash);
      const key = slash < 0 ? '' : rest.slice(slash + 1);
      // the key as written, slashes at the end aside; only the one "/" after the prefix separates it from the path
      const bare = key.replace(/\/+$/, '');
      if (bucket === from.bucket && within(bare, from.prefix)) {
        return mapped('direct', bare === from.prefix ? '' : bare.slice(from.prefix === '' ? 0 : from.prefix.length + 1));
      }
      if (bucket === to.bucket && within(bare, to.prefix)) return { kind: 'atTarget' };
      return { kind: 'unmapped', reason: UNMAPPED_REASONS.otherLocation };
    }
    case 'runs':
    case 'models':
      return { kind: 'indirect' };
    case 'http':
    case 'https':
      return { kind: 'unmapped', reason: UNMAPPED_REASONS.otherServer };
    case 'file':
    case undefined:
      return { kind: 'unmapped', reason: uri.startsWith('/') || scheme === 'file' ? UNMAPPED_REASONS.localPath : UNMAPPED_REASONS.otherScheme };
    default:
      return { kind: 'unmapped', reason: UNMAPPED_REASONS.otherScheme };
  }
}

// ---- the fewest prefixes ------------------------------------------------------------------------------------------

interface Node {
  readonly children: Map<string, Node>;
  /** a referenced directory: everything under it is copied, and counted here */
  covered: boolean;
  references: number;
}

const node = (): Node => ({ children: new Map(), covered: false, references: 0 });

function coveredBelow(n: Node): number {
  let sum = 0;
  for (const c of n.children.values()) sum += c.covered ? c.references : coveredBelow(c);
  return sum;
}

/**
 * The referenced directories reduced to the topmost ones: a path under a referenced one adds nothing but a count, and a
 * referenced one absorbs those below it. Only referenced paths ever become prefixes, so nothing beside them is copied
 * (experiment 3's directory never brings experiment 30's, nor a run's directory its unreferenced siblings), and no
 * set of referenced paths covers the same with fewer. Memory holds the paths not yet under a referenced one.
 */
export class PrefixSet {
  private readonly root = node();

  add(path: string): void {
    let n = this.root;
    for (const segment of path === '' ? [] : path.split('/')) {
      if (n.covered) break;
      let child = n.children.get(segment);
      if (!child) {
        child = node();
        n.children.set(segment, child);
      }
      n = child;
    }
    if (n.covered) {
      n.references += 1;
      return;
    }
    n.covered = true;
    n.references = 1 + coveredBelow(n);
    n.children.clear();
  }

  /** The prefixes, in code-unit order of their paths, each with the references it covers. */
  prefixes(): Array<{ readonly path: string; readonly references: number }> {
    const out: Array<{ path: string; references: number }> = [];
    const walk = (n: Node, path: string) => {
      if (n.covered) out.push({ path, references: n.references });
      else for (const [segment, c] of n.children) walk(c, path === '' && n === this.root ? segment : `${path}/${segment}`);
    };
    walk(this.root, '');
    return out.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  }
}

// ---- the plan -----------------------------------------------------------------------------------------------------

/** How many unmapped references are shown (the rest are counted). */
export const UNMAPPED_SHOWN = 20;
const SHOWN_LENGTH = 160;

/**
 * Tenant text as it may reach a terminal: JSON escapes, and \uXXXX for everything outside printable ASCII (so no
 * control sequence, bidi override or invisible character passes), cut to `max` characters first.
 */
export function escaped(text: string, max = SHOWN_LENGTH): string {
  const cut = text.length > max ? `${text.slice(0, max - 3)}...` : text;
  return JSON.stringify(cut).slice(1, -1).replace(/[^\x20-\x7e]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

export interface KindCounts {
  total: number;
  proxied: number;
  direct: number;
  atTarget: number;
  indirect: number;
  unmapped: number;
}

export interface UnmappedReference {
  readonly reference: ReferenceKind;
  /** escaped (see `escaped`) */
  readonly id: string;
  /** escaped (see `escaped`) */
  readonly uri: string;
  readonly reason: string;
}

export interface Prefix {
  /** the path under both destinations, "" for the whole destination */
  readonly path: string;
  /** s3://<from>/<path>/ and s3://<to>/<path>/, as aws s3 sync takes directories */
  readonly source: string;
  readonly target: string;
  readonly references: number;
}

export interface MigrationPlan {
  readonly from: string;
  readonly to: string;
  readonly reverse: boolean;
  /** where `from` (forward) or `to` (reverse), the old destination, came from */
  readonly oldDestinationFrom: string;
  /** per kind read; kinds whose table or column this database lacks are in `absent` */
  readonly references: Readonly<Partial<Record<ReferenceKind, KindCounts>>>;
  readonly absent: readonly ReferenceKind[];
  readonly prefixes: readonly Prefix[];
  readonly unmapped: {
    readonly count: number;
    readonly reasons: Readonly<Record<string, number>>;
    readonly sample: readonly UnmappedReference[];
  };
}

/** Where a prefix's objects are in a destination: the directory form aws s3 sync copies (never a sibling sharing its name's start). */
export const directory = (d: Destination, path: string) => `s3://${d.bucket}/${[d.prefix, path].filter((p) => p !== '').join('/')}${d.prefix === '' && path === '' ? '' : '/'}`;

/** Collects the references row by row (the database is read in batches) and makes the plan. */
export class PlanBuilder {
  private readonly prefixSet = new PrefixSet();
  private readonly counts: Partial<Record<ReferenceKind, KindCounts>> = {};
  private readonly reasons: Record<string, number> = {};
  private readonly sample: UnmappedReference[] = [];
  private unmappedCount = 0;

  constructor(
    readonly from: Destination,
    readonly to: Destination,
    private readonly options: { readonly reverse: boolean; readonly oldDestinationFrom: string; readonly present: readonly ReferenceKind[] },
  ) {
    for (const kind of REFERENCE_KINDS) if (options.present.includes(kind)) this.counts[kind] = { total: 0, proxied: 0, direct: 0, atTarget: 0, indirect: 0, unmapped: 0 };
  }

  add(ref: Reference): void {
    const counts = this.counts[ref.kind] ??= { total: 0, proxied: 0, direct: 0, atTarget: 0, indirect: 0, unmapped: 0 };
    const d = dispose(ref.uri, this.from, this.to);
    counts.total += 1;
    counts[d.kind] += 1;
    if (d.kind === 'proxied' || d.kind === 'direct') this.prefixSet.add(d.path);
    if (d.kind !== 'unmapped') return;
    this.unmappedCount += 1;
    this.reasons[d.reason] = (this.reasons[d.reason] ?? 0) + 1;
    if (this.sample.length < UNMAPPED_SHOWN) this.sample.push({ reference: ref.kind, id: escaped(ref.id, 80), uri: escaped(ref.uri), reason: d.reason });
  }

  plan(): MigrationPlan {
    return {
      from: this.from.uri,
      to: this.to.uri,
      reverse: this.options.reverse,
      oldDestinationFrom: this.options.oldDestinationFrom,
      references: this.counts,
      absent: REFERENCE_KINDS.filter((k) => !this.options.present.includes(k)),
      prefixes: this.prefixSet.prefixes().map(({ path, references }) => ({ path, source: directory(this.from, path), target: directory(this.to, path), references })),
      unmapped: { count: this.unmappedCount, reasons: { ...this.reasons }, sample: [...this.sample] },
    };
  }
}

// ---- printing -----------------------------------------------------------------------------------------------------

export function renderJson(plan: MigrationPlan): string {
  return `${JSON.stringify(plan, null, 2)}\n`;
}

const COUNT_COLUMNS: ReadonlyArray<keyof KindCounts> = ['proxied', 'direct', 'atTarget', 'indirect', 'unmapped'];

/** The header's table of references: one line per kind, its counts by what they mean for the copy. */
function referenceLines(plan: MigrationPlan): string[] {
  const width = Math.max(...REFERENCE_KINDS.map((k) => k.length));
  const lines = Object.entries(plan.references).map(([kind, c]) =>
    `#   ${kind.padEnd(width)} ${String(c.total).padStart(7)}  (${COUNT_COLUMNS.map((k) => `${c[k]} ${k}`).join(', ')})`);
  for (const kind of plan.absent) lines.push(`#   ${kind.padEnd(width)}       -  (no such table or column in this database)`);
  return lines;
}

function unmappedLines(plan: MigrationPlan): string[] {
  const { count, reasons, sample } = plan.unmapped;
  if (count === 0) return ['# Not mapped: none; every reference is copied, already at the target, or names another row.'];
  return [
    `# Not mapped: ${count} reference(s) whose objects this script does NOT copy; decide for each (shown escaped, the first ${sample.length}):`,
    ...Object.entries(reasons).map(([reason, n]) => `#   ${n} ${reason}`),
    ...sample.map((u) => `#   ${u.reference} "${u.id}": "${u.uri}"`),
  ];
}

const syncLine = (p: Prefix, dryRun: boolean) => ['aws', 's3', 'sync', ...(dryRun ? ['--dryrun'] : []), p.source, p.target].map(shellQuote).join(' ');

/**
 * The script: a header with the counts, one `aws s3 sync` per prefix (S3 to S3 server-side copies; rerun it and it
 * copies only what is missing or newer; it never deletes), then a dry run per prefix that must have nothing left to copy.
 */
export function renderAwsCli(plan: MigrationPlan): string {
  const n = plan.prefixes.length;
  const covered = plan.prefixes.reduce((sum, p) => sum + p.references, 0);
  const when = plan.reverse
    ? ['# --reverse: for an uninstall. Run it before the rollout that gives mlflow its old destination back, and again after it',
      '# (to copy what was written in between): what was stored under the new destination returns to the old one.']
    : ['# Run it before the rollout that switches mlflow to the new destination, so no user meets a missing artifact, and again',
      '# after it (to copy what was written in between); then add the old destination to migration.completedFrom.'];
  const lines = [
    '#!/usr/bin/env bash',
    '# Copies the artifacts MLflow\'s tracking database references from one artifacts destination to the other, under the same',
    '# relative keys: mlflow-artifacts:/<path> is resolved against the server\'s current MLFLOW_ARTIFACTS_DESTINATION, so its',
    '# objects must be at <destination>/<path> in whichever one is current. Generated by mlflow-irsa-webhook migrate-artifacts;',
    '# review it, then run it with credentials that may read the one and write the other.',
    ...when,
    `#   from: ${plan.from}`,
    `#   to:   ${plan.to}`,
    `#   (the old destination: ${plan.oldDestinationFrom})`,
    '# References in the tracking database, and what each means for the copy (proxied: mlflow-artifacts:/ paths; direct: s3://',
    '# under "from", whose rows keep naming "from"; atTarget: already under "to"; indirect: runs:/ or models:/, which name a',
    '# run or logged model counted on its own line):',
    ...referenceLines(plan),
    `# Prefixes: ${n}, covering ${covered} reference(s).`,
    ...unmappedLines(plan),
    'set -euo pipefail',
    '',
    '# The copies: aws s3 sync copies S3 to S3 on the server side, only what is missing or newer, and deletes nothing.',
    ...plan.prefixes.map((p) => syncLine(p, false)),
    '',
    '# Verification: a dry run per prefix must find nothing left to copy.',
    'left=0',
    'verify() {',
    '  local out',
    '  out=$("$@")',
    '  if [ -n "$out" ]; then',
    '    printf \'%s\\n\' "$out" >&2',
    '    left=$((left + 1))',
    '  fi',
    '}',
    ...plan.prefixes.map((p) => `verify ${syncLine(p, true)}`),
    'if [ "$left" -ne 0 ]; then',
    `  echo "migrate-artifacts: $left of ${n} prefixes still have objects to copy (listed above): run this script again" >&2`,
    '  exit 1',
    'fi',
    `echo ${shellQuote(`migrate-artifacts: verified: nothing left to copy under ${n} prefix(es) from ${plan.from} to ${plan.to}`)}`,
  ];
  return `${lines.join('\n')}\n`;
}
