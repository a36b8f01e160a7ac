// Small helpers the mutators share for reading untrusted JSON shapes without throwing.
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type JsonObject = { [key: string]: Json };

export function isObject(value: unknown): value is JsonObject {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/** Structural equality for JSON values (key order ignored). */
export function jsonEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Array.isArray(a)) {
    return Array.isArray(b) && a.length === b.length && a.every((v, i) => jsonEqual(v, b[i]));
  }
  if (isObject(a) && isObject(b)) {
    const ka = Object.keys(a);
    if (ka.length !== Object.keys(b).length) return false;
    return ka.every((k) => Object.prototype.hasOwnProperty.call(b, k) && jsonEqual(a[k], b[k]));
  }
  return false;
}

/**
 * Puts a shallow copy of obj[key] (or a new list when absent) in its place and returns it, so that a mutator may
 * push, splice and replace entries of a copied object without touching the original's list. Undefined when
 * something else stands there.
 */
export function childArray(obj: JsonObject, key: string): Json[] | undefined {
  const cur = obj[key];
  if (cur !== undefined && cur !== null && !Array.isArray(cur)) return undefined;
  const copy: Json[] = cur ? [...cur] : [];
  obj[key] = copy;
  return copy;
}
