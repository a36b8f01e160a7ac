// Random copy-on-write edits of JSON values, for proving the patch diff (test/webhook.test.ts) and that two builds
// answer alike (bench/same-answers.js). Plain JavaScript, so that the benchmark can load it without a TypeScript step.

/** Keys and strings that need escaping in a JSON Pointer or in JSON text, lone surrogates included. */
export const ODD = ['a/b', 'c~d', 'q"u', 'b\\s', '\u0000', '\u001f', '\ud800', '\udc00x', '\u{1F600}', 'é', '\u2028'];

/**
 * A value `shared` stands for the plan's constants (the same object in original and copy); `tree` JSON values with
 * named lists (duplicates of a name included); `edits` lists of edits for `edit`. fc is fast-check.
 */
export function cowArbitraries(fc, shared) {
  const key = fc.oneof(fc.constantFrom('name', 'env', 'value', ...ODD), fc.string({ maxLength: 3 })).filter((k) => k !== '__proto__');
  const leaf = fc.oneof(fc.constantFrom(...ODD), fc.string({ maxLength: 6, unit: 'binary' }), fc.integer(), fc.boolean(), fc.constant(null));
  const { value: tree } = fc.letrec((tie) => ({
    value: fc.oneof({ depthSize: 'small' }, leaf, tie('object'), tie('array'), tie('named'), fc.constant(shared)),
    object: fc.dictionary(key, tie('value'), { maxKeys: 5 }),
    array: fc.array(tie('value'), { maxLength: 6 }),
    named: fc.array(fc.record({ name: fc.constantFrom('A', 'B', 'C', 'D'), value: tie('value') }), { maxLength: 7 }),
  }));
  const edits = fc.array(fc.record({
    path: fc.array(fc.nat(), { maxLength: 5 }),
    action: fc.constantFrom('set', 'delete', 'push', 'pop', 'truncate', 'extend', 'insert', 'move', 'duplicate', 'rebuild', 'rename'),
    at: fc.nat(),
    value: fc.oneof(tree, fc.constant(shared)),
  }), { minLength: 1, maxLength: 5 });
  return { key, tree, edits, root: fc.dictionary(key, tree, { maxKeys: 6 }) };
}

const isNamed = (x) => x !== null && typeof x === 'object' && typeof x.name === 'string';

/** One edit, copying only along its path (as a copy-on-write mutator does), then changing what is there. */
export function edit(v, e, depth = 0) {
  if (depth < e.path.length && v !== null && typeof v === 'object') {
    if (Array.isArray(v) && v.length > 0) {
      const copy = [...v];
      const i = e.path[depth] % v.length;
      copy[i] = edit(v[i], e, depth + 1);
      return copy;
    }
    const keys = Object.keys(v);
    if (!Array.isArray(v) && keys.length > 0) {
      const k = keys[e.path[depth] % keys.length];
      return { ...v, [k]: edit(v[k], e, depth + 1) };
    }
  }
  if (Array.isArray(v)) {
    const i = v.length === 0 ? 0 : e.at % v.length;
    if (e.action === 'push') return [...v, e.value];
    if (e.action === 'pop') return v.slice(0, -1);
    // several at the tail at once: the diff's shortcut for a list whose head is kept
    if (e.action === 'truncate') return v.slice(0, i);
    if (e.action === 'extend') return [...v, e.value, structuredClone(e.value)];
    if (e.action === 'insert') return [...v.slice(0, i), e.value, ...v.slice(i)];
    if (e.action === 'delete') return [...v.slice(0, i), ...v.slice(i + 1)];
    if (e.action === 'move' && v.length > 1) return [...v.slice(1), v[0]];
    if (e.action === 'duplicate' && v.length > 0) return [...v.slice(0, i), v[i], ...v.slice(i)];
    if (e.action === 'rebuild' && v.length > 0) return v.map((x, j) => (j === i ? structuredClone(x) : x));
    if (e.action === 'rename' && isNamed(v[i])) return v.map((x, j) => (j === i ? { ...x, name: `${x.name}2` } : x));
  } else if (v !== null && typeof v === 'object') {
    const keys = Object.keys(v);
    if (e.action === 'delete' && keys.length > 0) {
      const { [keys[e.at % keys.length]]: _gone, ...rest } = v;
      return rest;
    }
    if (e.action === 'push') return { ...v, [`k${e.at}`]: e.value };
  }
  return e.value;
}
