// Derives the JSON patch (RFC 6902) that turns the original object into the mutated one: the one patch mechanism.
//
// Written here rather than taken from fast-json-patch's `compare`, which diffs arrays index by index: removing one
// env entry from the middle of a list makes it rewrite every later entry in place (names, values, secretKeyRefs) and
// so re-sends content that is not ours and clobbers what another webhook changed meanwhile. This diff matches list
// entries by their `name` (containers, env, volumes, volumeMounts), else by reference, else by value, and emits only
// removes of entries gone, edits inside entries kept, and adds of entries new.
//
// Cost follows the change, since a caller controls the size of the lists: subtrees the two objects share by reference
// are skipped at once (`a === b`), so a mutator that copies only along the paths it writes pays for those paths; list
// entries are paired through a Map in O(n + m), never through a table of n × m cells.
import fastJsonPatch from 'fast-json-patch';

export type Operation = fastJsonPatch.Operation;
const esc = fastJsonPatch.escapePathComponent;

/** Thrown when the patch would need more operations than the caller allowed; the diff stops there. */
export class PatchLimitError extends Error {
  constructor(readonly maxOps: number) {
    super(`the patch would need more than ${maxOps} operations`);
    this.name = 'PatchLimitError';
  }
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

const isNamed = (v: unknown): v is { name: string } => isPlainObject(v) && typeof (v as { name?: unknown }).name === 'string';
const unnamedContainer = (v: unknown) => v !== null && typeof v === 'object' && !isNamed(v);

/**
 * Pairs entries of `a` with unpaired entries of `b` of the same key, first with first, so that duplicates of a name pair
 * in order. The key is an entry's name when it has one; else, in the first pass, a primitive's value or a container's
 * reference (a copy-on-write mutator leaves the entries it does not touch as the same objects); in the `byValue` pass,
 * which sees only unnamed containers, their JSON text. One pass over each list: a linked list through `next` holds b's
 * indices per key, and names and other keys live in separate maps so that a name never meets an equal string value.
 */
function pairBy(a: unknown[], b: unknown[], match: Int32Array, taken: Uint8Array, byValue: boolean): void {
  const names = new Map<string, number>();
  const others = new Map<unknown, number>();
  const next = new Int32Array(b.length);
  // the key of v, and which map it lives in (through `inNames`); undefined when v takes no part in this pass
  let inNames = false;
  const keyOf = (v: unknown): unknown => {
    if (byValue) {
      inNames = false;
      return unnamedContainer(v) ? JSON.stringify(v) : undefined;
    }
    inNames = isNamed(v);
    return inNames ? (v as { name: string }).name : v;
  };
  for (let j = b.length - 1; j >= 0; j--) {
    if (taken[j]) continue;
    const k = keyOf(b[j]);
    if (k === undefined && byValue) continue;
    const map: Map<unknown, number> = inNames ? names : others;
    next[j] = map.get(k) ?? -1;
    map.set(k, j);
  }
  for (let i = 0; i < a.length; i++) {
    if (match[i] >= 0) continue;
    const k = keyOf(a[i]);
    if (k === undefined && byValue) continue;
    const map: Map<unknown, number> = inNames ? names : others;
    const j = map.get(k);
    if (j === undefined || j < 0) continue;
    match[i] = j;
    taken[j] = 1;
    map.set(k, next[j]);
  }
}

/**
 * Indices into `js` of a longest strictly increasing subsequence (patience sorting, O(k log k)). Used only when the
 * pairs cross (an entry moved), which no mutator here does: a list that kept its order costs one linear check.
 */
function increasing(js: Int32Array): Uint8Array {
  const keep = new Uint8Array(js.length);
  const tails: number[] = [];
  const prev = new Int32Array(js.length).fill(-1);
  for (let k = 0; k < js.length; k++) {
    let lo = 0;
    let hi = tails.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (js[tails[mid]] < js[k]) lo = mid + 1;
      else hi = mid;
    }
    if (lo > 0) prev[k] = tails[lo - 1];
    tails[lo] = k;
  }
  for (let k = tails.length ? tails[tails.length - 1] : -1; k >= 0; k = prev[k]) keep[k] = 1;
  return keep;
}

class Diff {
  readonly ops: Operation[] = [];
  constructor(private readonly maxOps: number) {}

  private push(op: Operation): void {
    if (this.ops.length >= this.maxOps) throw new PatchLimitError(this.maxOps);
    this.ops.push(op);
  }

  value(a: unknown, b: unknown, path: string): void {
    if (a === b) return;
    if (Array.isArray(a) && Array.isArray(b)) return this.array(a, b, path);
    if (isPlainObject(a) && isPlainObject(b)) return this.object(a, b, path);
    // two different primitives, or values of different kinds: neither needs a walk to know they differ
    this.push({ op: 'replace', path, value: b });
  }

  private object(a: Record<string, unknown>, b: Record<string, unknown>, path: string): void {
    for (const key of Object.keys(a)) {
      if (a[key] !== undefined && b[key] === undefined) this.push({ op: 'remove', path: `${path}/${esc(key)}` });
    }
    for (const key of Object.keys(b)) {
      if (b[key] === undefined) continue;
      if (a[key] === undefined) this.push({ op: 'add', path: `${path}/${esc(key)}`, value: b[key] });
      else this.value(a[key], b[key], `${path}/${esc(key)}`);
    }
  }

  private array(a: unknown[], b: unknown[], path: string): void {
    const match = new Int32Array(a.length).fill(-1);
    const taken = new Uint8Array(b.length);
    pairBy(a, b, match, taken, false);
    // an unnamed entry rebuilt rather than shared finds no partner by reference: pair what is left by value (its JSON
    // text, linear in the size of those entries). Such pairs are equal, so they need no walk below.
    const byValue = new Uint8Array(a.length);
    if (a.some((v, i) => match[i] < 0 && unnamedContainer(v)) && b.some((v, j) => !taken[j] && unnamedContainer(v))) {
      const before = Int32Array.from(match);
      pairBy(a, b, match, taken, true);
      for (let i = 0; i < a.length; i++) if (before[i] !== match[i]) byValue[i] = 1;
    }

    // The pairs in a's order; kept are those whose b indices rise (all of them unless an entry moved).
    let count = 0;
    for (let i = 0; i < a.length; i++) if (match[i] >= 0) count++;
    const is = new Int32Array(count);
    const js = new Int32Array(count);
    let rising = true;
    for (let i = 0, k = 0; i < a.length; i++) {
      if (match[i] < 0) continue;
      is[k] = i;
      js[k] = match[i];
      if (k > 0 && js[k] < js[k - 1]) rising = false;
      k++;
    }
    const keep = rising ? undefined : increasing(js);
    const keptA = new Uint8Array(a.length);
    const keptB = new Uint8Array(b.length);
    for (let k = 0; k < count; k++) if (!keep || keep[k]) keptA[is[k]] = keptB[js[k]] = 1;

    // Removes from the highest index down keep every lower index valid; then kept entries sit at their rank.
    for (let i = a.length - 1; i >= 0; i--) if (!keptA[i]) this.push({ op: 'remove', path: `${path}/${i}` });
    for (let k = 0, rank = 0; k < count; k++) {
      if (!keptA[is[k]]) continue;
      if (!byValue[is[k]]) this.value(a[is[k]], b[js[k]], `${path}/${rank}`);
      rank++;
    }
    // Adding in ascending order of the target index puts each new entry exactly where it ends up.
    for (let j = 0; j < b.length; j++) if (!keptB[j]) this.push({ op: 'add', path: `${path}/${j}`, value: b[j] });
  }
}

/**
 * The patch from `original` to `mutated`. Values in the operations are shared with `mutated`, not copied: serialise the
 * patch, or copy it, before anything writes to either. Throws PatchLimitError past `maxOps` operations.
 */
export function diff(original: unknown, mutated: unknown, maxOps = Infinity): Operation[] {
  const d = new Diff(maxOps);
  d.value(original, mutated, '');
  return d.ops;
}
