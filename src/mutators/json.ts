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
