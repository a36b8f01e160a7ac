// Derives the JSON patch (RFC 6902) that turns the original object into the mutated one: the one patch mechanism.
//
// Written here rather than taken from fast-json-patch's `compare`, which diffs arrays index by index: removing one
// env entry from the middle of a list makes it rewrite every later entry in place (names, values, secretKeyRefs) and
// so re-sends content that is not ours and clobbers what another webhook changed meanwhile. This diff matches list
// entries by their `name` (containers, env, volumes, volumeMounts) or, for other lists, by value, along the longest
// common subsequence, and emits only removes of entries gone, edits inside entries kept, and adds of entries new.
import fastJsonPatch from 'fast-json-patch';

export type Operation = fastJsonPatch.Operation;
const esc = fastJsonPatch.escapePathComponent;

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function entryKey(v: unknown): string {
  if (isPlainObject(v) && typeof v.name === 'string') return `name:${v.name}`;
  return `value:${JSON.stringify(v)}`;
}

/** Index pairs (i in a, j in b) of the longest common subsequence of entry keys. */
function lcs(a: string[], b: string[]): Array<[number, number]> {
  const n = a.length;
  const m = b.length;
  const len: Uint32Array[] = Array.from({ length: n + 1 }, () => new Uint32Array(m + 1));
  for (let i = n - 1; i >= 0; i--) {
    for (let j = m - 1; j >= 0; j--) {
      len[i][j] = a[i] === b[j] ? len[i + 1][j + 1] + 1 : Math.max(len[i + 1][j], len[i][j + 1]);
    }
  }
  const pairs: Array<[number, number]> = [];
  for (let i = 0, j = 0; i < n && j < m;) {
    if (a[i] === b[j]) pairs.push([i++, j++]);
    else if (len[i + 1][j] >= len[i][j + 1]) i++;
    else j++;
  }
  return pairs;
}

function diffArray(a: unknown[], b: unknown[], path: string, ops: Operation[]): void {
  const pairs = lcs(a.map(entryKey), b.map(entryKey));
  const keptA = new Set(pairs.map(([i]) => i));
  const keptB = new Set(pairs.map(([, j]) => j));
  // Removes from the highest index down keep every lower index valid; then kept entries sit at their rank.
  for (let i = a.length - 1; i >= 0; i--) if (!keptA.has(i)) ops.push({ op: 'remove', path: `${path}/${i}` });
  pairs.forEach(([i, j], rank) => diffValue(a[i], b[j], `${path}/${rank}`, ops));
  // Adding in ascending order of the target index puts each new entry exactly where it ends up.
  for (let j = 0; j < b.length; j++) if (!keptB.has(j)) ops.push({ op: 'add', path: `${path}/${j}`, value: structuredClone(b[j]) });
}

function diffValue(a: unknown, b: unknown, path: string, ops: Operation[]): void {
  if (a === b) return;
  if (Array.isArray(a) && Array.isArray(b)) return diffArray(a, b, path, ops);
  if (isPlainObject(a) && isPlainObject(b)) {
    for (const key of Object.keys(a)) {
      if (a[key] !== undefined && b[key] === undefined) ops.push({ op: 'remove', path: `${path}/${esc(key)}` });
    }
    for (const key of Object.keys(b)) {
      if (b[key] === undefined) continue;
      if (a[key] === undefined) ops.push({ op: 'add', path: `${path}/${esc(key)}`, value: structuredClone(b[key]) });
      else diffValue(a[key], b[key], `${path}/${esc(key)}`, ops);
    }
    return;
  }
  if (JSON.stringify(a) !== JSON.stringify(b)) ops.push({ op: 'replace', path, value: structuredClone(b) });
}

/** The patch from `original` to `mutated`; subtrees the two share by reference are skipped without a walk. */
export function diff(original: unknown, mutated: unknown): Operation[] {
  const ops: Operation[] = [];
  diffValue(original, mutated, '', ops);
  return ops;
}
