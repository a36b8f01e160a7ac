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
import type { Operation } from 'fast-json-patch';
import { deepFreeze, jsonString, NEEDS_ESCAPE } from '../mutators/json.js';

export type { Operation };

/** A key as a JSON Pointer token (RFC 6901): "~" as "~0", "/" as "~1". (fast-json-patch's own is this; its module is not loaded for it.) */
const esc = (key: string) => (key.includes('~') || key.includes('/') ? key.replace(/~/g, '~0').replace(/\//g, '~1') : key);

/** The JSON text of each value registered by constant(); such a value is frozen, so its text cannot go stale. */
const constantText = new WeakMap<object, string>();

/**
 * Deep-freezes a value that a mutator writes into every object it mutates (an env entry, the token volume, its
 * mount), and remembers its JSON text. Mutated copies then share the one value instead of cloning it per request, and
 * encodePatch writes the remembered text instead of serialising the value again. Frozen, so that no holder of a
 * mutated copy can change it under the others (a write throws).
 */
export function constant<T extends object>(value: T): T {
  deepFreeze(value);
  constantText.set(value, JSON.stringify(value));
  return value;
}

/** The JSON text of a value in an operation: a constant's remembered text, else JSON.stringify's. */
function valueText(v: unknown): string {
  if (typeof v === 'string') return jsonString(v);
  return (v !== null && typeof v === 'object' && constantText.get(v)) || JSON.stringify(v);
}

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
function sameList(x: readonly string[], y: readonly string[]): boolean {
  if (x.length !== y.length) return false;
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}

/** Whether pairBy's first pass gives x and y the same key: the same name, or (neither named) the same value or reference. */
const sameKey = (x: unknown, y: unknown) => (isNamed(x) ? isNamed(y) && x.name === y.name : x === y);

/**
 * Pairs entries of `a` with unpaired entries of `b` of the same key, first with first, so that duplicates of a name pair
 * in order. The key is an entry's name when it has one; else, in the first pass, a primitive's value or a container's
 * reference (a copy-on-write mutator leaves the entries it does not touch as the same objects); in the `byValue` pass,
 * which sees only unnamed containers, their JSON text. One pass over each list: a linked list through `next` holds b's
 * indices per key, and names and other keys live in separate maps so that a name never meets an equal string value.
 */
function pairBy(a: unknown[], b: unknown[], match: Int32Array, taken: Uint8Array, byValue: boolean): void {
  // made when a first key goes in (a list of named entries never needs `others`)
  let names: Map<unknown, number> | undefined;
  let others: Map<unknown, number> | undefined;
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
    const map = inNames ? (names ??= new Map()) : (others ??= new Map());
    next[j] = map.get(k) ?? -1;
    map.set(k, j);
  }
  for (let i = 0; i < a.length; i++) {
    if (match[i] >= 0) continue;
    const k = keyOf(a[i]);
    if (k === undefined && byValue) continue;
    const map = inNames ? names : others;
    const j = map?.get(k);
    if (j === undefined || j < 0) continue;
    match[i] = j;
    taken[j] = 1;
    map!.set(k, next[j]);
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

/**
 * A path's segments are the escaped keys and the indices on the way down. `plain` says that no key on the way needs
 * escaping in JSON (indices never do), so the path's JSON text is itself in quotes: known as the path is built, one
 * short key at a time, rather than by scanning every finished path again when the patch is encoded.
 */
const plainKey = (key: string) => !NEEDS_ESCAPE.test(key);

class Diff {
  readonly ops: Operation[] = [];
  /** per operation, whether its path is plain */
  private readonly plain: boolean[] = [];
  /** `shortcuts` false takes the general way everywhere (key look-ups, full pairing): the tests' reference */
  constructor(private readonly maxOps: number, private readonly shortcuts = true) {}

  private push(op: Operation, plain: boolean): void {
    if (this.ops.length >= this.maxOps) throw new PatchLimitError(this.maxOps);
    this.ops.push(op);
    this.plain.push(plain);
  }

  /** The operations' JSON text: JSON.stringify(this.ops), with the text of constant() values reused. */
  text(): string {
    let out = '[';
    for (let i = 0; i < this.ops.length; i++) {
      const o = this.ops[i] as { op: string; path: string; value?: unknown };
      out += `${i === 0 ? '' : ','}{"op":"${o.op}","path":${this.plain[i] ? `"${o.path}"` : JSON.stringify(o.path)}`;
      if (o.value !== undefined) out += `,"value":${valueText(o.value)}`;
      out += '}';
    }
    return `${out}]`;
  }

  value(a: unknown, b: unknown, path: string, plain: boolean): void {
    if (a === b) return;
    if (Array.isArray(a) && Array.isArray(b)) return this.array(a, b, path, plain);
    if (isPlainObject(a) && isPlainObject(b)) return this.object(a, b, path, plain);
    // two different primitives, or values of different kinds: neither needs a walk to know they differ
    this.push({ op: 'replace', path, value: b }, plain);
  }

  private object(a: Record<string, unknown>, b: Record<string, unknown>, path: string, plain: boolean): void {
    const ka = Object.keys(a);
    const kb = Object.keys(b);
    // The same keys in the same order, as in a copy that only replaced values (what a copy-on-write mutator makes):
    // the values are read side by side, without a look-up per key; the same operations in the same order either way.
    const sideBySide = this.shortcuts && sameList(ka, kb);
    const va = sideBySide ? Object.values(a) : undefined;
    const vb = sideBySide ? Object.values(b) : undefined;
    for (let i = 0; i < ka.length; i++) {
      const key = ka[i];
      if ((va ? va[i] : a[key]) !== undefined && (vb ? vb[i] : b[key]) === undefined) this.push({ op: 'remove', path: `${path}/${esc(key)}` }, plain && plainKey(key));
    }
    for (let i = 0; i < kb.length; i++) {
      const key = kb[i];
      const bv = vb ? vb[i] : b[key];
      const av = va ? va[i] : a[key];
      // a shared value is the common case (copy on write): skipped before its path is even built
      if (bv === undefined || av === bv) continue;
      if (av === undefined) this.push({ op: 'add', path: `${path}/${esc(key)}`, value: bv }, plain && plainKey(key));
      else this.value(av, bv, `${path}/${esc(key)}`, plain && plainKey(key));
    }
  }

  private array(a: unknown[], b: unknown[], path: string, plain: boolean): void {
    // The head of entries that pair index by index (the same name, or the same unnamed value or reference): pairBy
    // would pair them the same way, first with first, and every longest rising run of pairs keeps them. When that
    // head is all of one list, which is what a copy-on-write mutator makes of the lists it does not reorder, the
    // answer needs no pairing at all: walks of the pairs, then removes from the end or adds at the end.
    let head = 0;
    while (this.shortcuts && head < a.length && head < b.length && sameKey(a[head], b[head])) head++;
    if (this.shortcuts && (head === a.length || head === b.length)) {
      for (let i = a.length - 1; i >= head; i--) this.push({ op: 'remove', path: `${path}/${i}` }, plain);
      for (let i = 0; i < head; i++) if (a[i] !== b[i]) this.value(a[i], b[i], `${path}/${i}`, plain);
      for (let j = head; j < b.length; j++) this.push({ op: 'add', path: `${path}/${j}`, value: b[j] }, plain);
      return;
    }
    const match = new Int32Array(a.length).fill(-1);
    const taken = new Uint8Array(b.length);
    pairBy(a, b, match, taken, false);
    // an unnamed entry rebuilt rather than shared finds no partner by reference: pair what is left by value (its JSON
    // text, linear in the size of those entries). Such pairs are equal, so they need no walk below.
    let byValue: Uint8Array | undefined;
    if (someLoose(a, (i) => match[i] < 0) && someLoose(b, (j) => !taken[j])) {
      const before = Int32Array.from(match);
      pairBy(a, b, match, taken, true);
      byValue = new Uint8Array(a.length);
      for (let i = 0; i < a.length; i++) if (before[i] !== match[i]) byValue[i] = 1;
    }

    // Kept are the pairs whose b indices rise in a's order: all of them unless an entry moved. The others are undone
    // (match and taken cleared), so that from here on match[i] >= 0 means kept.
    let rising = true;
    for (let i = 0, last = -1; i < a.length && rising; i++) {
      if (match[i] < 0) continue;
      rising = match[i] > last;
      last = match[i];
    }
    if (!rising) {
      const is: number[] = [];
      for (let i = 0; i < a.length; i++) if (match[i] >= 0) is.push(i);
      const keep = increasing(Int32Array.from(is, (i) => match[i]));
      for (let k = 0; k < is.length; k++) {
        if (keep[k]) continue;
        taken[match[is[k]]] = 0;
        match[is[k]] = -1;
      }
    }

    // Removes from the highest index down keep every lower index valid; then kept entries sit at their rank.
    for (let i = a.length - 1; i >= 0; i--) if (match[i] < 0) this.push({ op: 'remove', path: `${path}/${i}` }, plain);
    for (let i = 0, rank = 0; i < a.length; i++) {
      if (match[i] < 0) continue;
      if (!byValue?.[i]) this.value(a[i], b[match[i]], `${path}/${rank}`, plain);
      rank++;
    }
    // Adding in ascending order of the target index puts each new entry exactly where it ends up.
    for (let j = 0; j < b.length; j++) if (!taken[j]) this.push({ op: 'add', path: `${path}/${j}`, value: b[j] }, plain);
  }
}

/** Whether some entry of `list` that `loose(index)` says is unpaired is an unnamed container. */
function someLoose(list: readonly unknown[], loose: (index: number) => boolean): boolean {
  for (let i = 0; i < list.length; i++) if (loose(i) && unnamedContainer(list[i])) return true;
  return false;
}

/**
 * The patch from `original` to `mutated`. Values in the operations are shared with `mutated`, not copied: serialise the
 * patch, or copy it, before anything writes to either. Throws PatchLimitError past `maxOps` operations. `shortcuts`
 * false skips the copy-on-write shortcuts (side-by-side values, the paired head of a list): the same operations, the
 * long way, which the tests compare against.
 */
export function diff(original: unknown, mutated: unknown, maxOps = Infinity, shortcuts = true): Operation[] {
  return walk(original, mutated, maxOps, shortcuts).ops;
}

/** The patch as diff() makes it, and its JSON text: JSON.stringify(ops), for less than JSON.stringify costs. */
export function encodedDiff(original: unknown, mutated: unknown, maxOps = Infinity): { ops: Operation[]; text: string } {
  const d = walk(original, mutated, maxOps, true);
  return { ops: d.ops, text: d.text() };
}

function walk(original: unknown, mutated: unknown, maxOps: number, shortcuts: boolean): Diff {
  const d = new Diff(maxOps, shortcuts);
  d.value(original, mutated, '', true);
  return d;
}
