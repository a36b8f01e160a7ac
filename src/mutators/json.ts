// Small helpers the mutators share for reading untrusted JSON shapes without throwing.
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type JsonObject = { [key: string]: Json };

export function isObject(value: unknown): value is JsonObject {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

const hasOwn = Object.prototype.hasOwnProperty;

/**
 * Structural equality for JSON values (key order ignored). It allocates nothing (no key arrays, no closures): it is
 * the already-mutated check, run on every entry of ours that a request carries.
 */
export function jsonEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (a === null || b === null || typeof a !== 'object' || typeof b !== 'object') return false;
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!jsonEqual(a[i], b[i])) return false;
    return true;
  }
  if (Array.isArray(b)) return false;
  const x = a as Record<string, unknown>;
  const y = b as Record<string, unknown>;
  let keys = 0;
  for (const k in x) {
    if (!hasOwn.call(x, k)) continue;
    if (!hasOwn.call(y, k) || !jsonEqual(x[k], y[k])) return false;
    keys++;
  }
  for (const k in y) if (hasOwn.call(y, k)) keys--;
  return keys === 0;
}

/** Freezes a value and everything in it, so that a value shared between holders cannot be changed by one of them. */
export function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object') {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

/** Characters JSON.stringify escapes in a string (surrogates: it escapes lone ones; pairs are sent to it too). */
export const NEEDS_ESCAPE = /["\\\u0000-\u001f\ud800-\udfff]/;

/** JSON.stringify(s), without its per-call cost for the strings that need no escaping (most of them). */
export function jsonString(s: string): string {
  return NEEDS_ESCAPE.test(s) ? JSON.stringify(s) : `"${s}"`;
}

/** A string cut to at most `max` characters, ending in "..." when it was longer. */
export function cut(value: string, max: number): string {
  return value.length > max ? `${value.slice(0, max - 3)}...` : value;
}

/**
 * A value quoted into a message (a warning, a log line, an error reply): a string in JSON quotes, cut to `max`
 * characters; anything else only by its type. Never throws and never walks the value, since it may be a request's
 * object with a `toString` key or nested far deeper than the stack.
 */
export function shown(value: unknown, max = 64): string {
  if (typeof value === 'string') return JSON.stringify(cut(value, max));
  if (value === null || typeof value === 'number' || typeof value === 'boolean') return String(value);
  if (value === undefined) return 'nothing';
  return Array.isArray(value) ? 'an array' : 'an object';
}

/** A string field of untrusted JSON, or undefined when it is absent, empty or not a string. */
export function text(value: unknown): string | undefined {
  return typeof value === 'string' && value.length > 0 ? value : undefined;
}
