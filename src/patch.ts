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

/**
 * Index pairs (i in a, j in b) of the longest common subsequence of entry keys. The common head and tail are paired
 * without a table (a mutation usually appends or edits a few entries), and the table for the middle is one flat array.
 */
function lcs(a: string[], b: string[]): Array<[number, number]> {
  let head = 0;
  while (head < a.length && head < b.length && a[head] === b[head]) head++;
  let endA = a.length;
  let endB = b.length;
  while (endA > head && endB > head && a[endA - 1] === b[endB - 1]) {
    endA--;
    endB--;
  }
  const n = endA - head;
  const m = endB - head;
  const w = m + 1;
  const len = new Uint32Array((n + 1) * w);
  for (let i = n - 1; i >= 0; i--) {
    for (let j = m - 1; j >= 0; j--) {
      len[i * w + j] = a[head + i] === b[head + j] ? len[(i + 1) * w + j + 1] + 1 : Math.max(len[(i + 1) * w + j], len[i * w + j + 1]);
    }
  }
  const pairs: Array<[number, number]> = [];
  for (let k = 0; k < head; k++) pairs.push([k, k]);
  for (let i = 0, j = 0; i < n && j < m;) {
    if (a[head + i] === b[head + j]) pairs.push([head + i++, head + j++]);
    else if (len[(i + 1) * w + j] >= len[i * w + j + 1]) i++;
    else j++;
  }
  for (let k = 0; k < a.length - endA; k++) pairs.push([endA + k, endB + k]);
  return pairs;
}

function diffArray(a: unknown[], b: unknown[], path: string, ops: Operation[]): void {
  const pairs = lcs(a.map(entryKey), b.map(entryKey));
  const keptA = new Uint8Array(a.length);
  const keptB = new Uint8Array(b.length);
  for (const [i, j] of pairs) keptA[i] = keptB[j] = 1;
  // Removes from the highest index down keep every lower index valid; then kept entries sit at their rank.
  for (let i = a.length - 1; i >= 0; i--) if (!keptA[i]) ops.push({ op: 'remove', path: `${path}/${i}` });
  pairs.forEach(([i, j], rank) => diffValue(a[i], b[j], `${path}/${rank}`, ops));
  // Adding in ascending order of the target index puts each new entry exactly where it ends up.
  for (let j = 0; j < b.length; j++) if (!keptB[j]) ops.push({ op: 'add', path: `${path}/${j}`, value: structuredClone(b[j]) });
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
