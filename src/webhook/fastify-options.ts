// The fastify options both listeners share (the HTTPS webhook and the plain metrics port): how long a request may take
// to arrive, how long a socket may sit silent, how long an idle kept-alive connection is kept, and schema compilers
// loaded only if a route with a schema is ever added.
import { createRequire } from 'node:module';

/**
 * fastify loads ajv (to validate request bodies) and fast-json-stringify (for reply schemas) when it is created, about
 * 80 ms of every start; no route here has a schema (the AdmissionReview reply is built by encodeReview), so they are
 * loaded only if a route with one is ever added. Resolved from fastify's own directory, as fastify would.
 */
const fromFastify = createRequire(createRequire(import.meta.url).resolve('fastify'));
type Factory = (...args: unknown[]) => unknown;
let validators: Factory | undefined;
let serializers: Factory | undefined;
const lazyCompilers = {
  buildValidator: (...args: unknown[]) => (validators ??= (fromFastify('@fastify/ajv-compiler') as () => Factory)())(...args),
  buildSerializer: (...args: unknown[]) => (serializers ??= (fromFastify('@fastify/fast-json-stringify-compiler') as () => Factory)())(...args),
};

export interface ListenerTimes {
  /** a request (headers and body) must arrive within this */
  readonly requestTimeoutSeconds: number;
  /** an idle kept-alive connection is closed after this (server.idleTimeoutSeconds) */
  readonly idleTimeoutSeconds: number;
}

export function listenerOptions(times: ListenerTimes) {
  const timeoutMs = times.requestTimeoutSeconds * 1000;
  return {
    requestTimeout: timeoutMs,
    connectionTimeout: timeoutMs * 3,
    keepAliveTimeout: times.idleTimeoutSeconds * 1000,
    schemaController: { compilersFactory: lazyCompilers as never },
  };
}
