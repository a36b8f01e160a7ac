// The fastify HTTPS server: /mutate, probes, metrics, certificate swap and draining. It knows HTTP, not IRSA.
import Fastify, { LogController, type FastifyError, type FastifyInstance } from 'fastify';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Server as HttpsServer } from 'node:https';
import { Server as TlsServer, type TLSSocket } from 'node:tls';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { lazyChildLogger } from '../log.js';
import { listenerOptions } from './fastify-options.js';
import type { Config } from '../config/config.js';
import { encodeReview, review } from './admission.js';
import { decisionLogger, recordDecision } from './decision.js';
import { buildMutators, type Mutators } from '../mutators/index.js';
import { createMetrics, type Metrics } from './metrics.js';
import { certValidity, pemBlocks, secureContextOptions, type KeyPair } from './tls.js';
import { shown } from '../mutators/json.js';
import { parseJsonBody } from './json-body.js';
import { limitConnections } from './connections.js';
import { addProbeRoutes } from './metrics-listener.js';

export interface ServerOptions {
  readonly config: Config;
  readonly tls: KeyPair;
  readonly logger: Logger;
  readonly metrics?: Metrics;
  readonly mutators?: Mutators;
}

export interface WebhookServer {
  readonly app: FastifyInstance<HttpsServer>;
  readonly metrics: Metrics;
  /** true once draining began: /readyz answers 503 */
  readonly draining: boolean;
  /** Swaps the serving certificate for new handshakes; open connections keep theirs. */
  setKeyPair(pair: KeyPair): void;
  /**
   * readyz → 503 and every response closes its connection; after drainSeconds stop accepting, let in-flight requests
   * finish, close what is left without a reset where a client could be writing, and close the app.
   */
  drain(drainSeconds?: number): Promise<void>;
}

const JSON_TYPE = 'application/json; charset=utf-8';

const REASONS: Record<number, string> = { 400: 'Bad Request', 408: 'Request Timeout', 413: 'Payload Too Large', 415: 'Unsupported Media Type' };

/** Per connection, for the drain: how many requests it has carried, and the response to its latest one. */
interface ConnectionState {
  requests: number;
  response?: ServerResponse;
}

/** Whether a request is in progress on the connection: its latest response neither written out nor cut off. */
const busy = (c: ConnectionState) => c.response !== undefined && !c.response.writableFinished && !c.response.destroyed;
const kConnection = Symbol('mlflow-irsa-webhook.connection');
type TrackedSocket = TLSSocket & { [kConnection]?: ConnectionState };

/** A connection accepted just before the listener closed gets this long to send its first request. */
const FRESH_GRACE_MS = 2000;
/**
 * kube-apiserver's webhook client keeps an idle connection this long (Go's http.Transport default, which
 * k8s.io/apimachinery's transport defaults keep). A server that closes an idle connection first races the client's
 * next request on it, and Go does not retry a POST it has begun to write: that request fails admission.
 */
export const API_SERVER_IDLE_SECONDS = 90;

function badRequest(message: string): FastifyError {
  return Object.assign(new Error(message), { statusCode: 400, code: 'BAD_REQUEST', name: 'BadRequest' }) as FastifyError;
}

export function buildServer(options: ServerOptions): WebhookServer {
  const { config, logger } = options;
  const metrics = options.metrics ?? createMetrics();
  const mutators = options.mutators ?? buildMutators(config);
  const s = config.server;
  const timeoutMs = s.requestTimeoutSeconds * 1000;
  const app = Fastify({
    https: {
      ...secureContextOptions(options.tls, s.tlsMinVersion),
      // how often Node checks headersTimeout/requestTimeout; its 30 s default lets a slow client linger that long
      connectionsCheckingInterval: Math.min(1000, timeoutMs),
      // a client that opens TCP and never completes the TLS handshake would otherwise hold its socket for Node's 120 s
      handshakeTimeout: timeoutMs,
    } as never,
    loggerInstance: logger,
    // one decision line per review instead of fastify's two lines per request
    logController: new LogController({ disableRequestLogging: true }),
    childLoggerFactory: lazyChildLogger as never,
    bodyLimit: s.bodyLimitBytes,
    ...listenerOptions(s),
    // the drain closes connections itself, so by the time fastify closes there is nothing left to answer 503 to
    return503OnClosing: false,
  }) as unknown as FastifyInstance<HttpsServer>;
  app.server.headersTimeout = timeoutMs;
  if (s.idleTimeoutSeconds <= API_SERVER_IDLE_SECONDS) {
    logger.warn({ idleTimeoutSeconds: s.idleTimeoutSeconds, apiServerIdleSeconds: API_SERVER_IDLE_SECONDS },
      "server.idleTimeoutSeconds is not above the API server's idle timeout: a request the API server sends on a connection this server is closing fails admission (kube-apiserver does not retry it)");
  }
  metrics.certNotAfter.set(certValidity(options.tls.cert).notAfter.getTime() / 1000);

  // Node closes connections past the total cap at once, before the TLS handshake (each open one holds ~30 KiB); one
  // address may hold maxConnectionsPerSource of them, and a connection must bring its first request within the request
  // timeout of its handshake, so that one client cannot keep the API server out with connections it never uses.
  limitConnections(app.server, {
    listener: 'webhook', maxConnections: s.maxConnections, maxPerSource: s.maxConnectionsPerSource, firstRequestMs: timeoutMs, sessionEvent: 'secureConnection',
  }, metrics, logger);
  const connections = new Set<TrackedSocket>();
  app.server.on('secureConnection', (socket: TrackedSocket) => {
    socket[kConnection] = { requests: 0 };
    connections.add(socket);
    socket.once('close', () => connections.delete(socket));
  });
  // AdmissionReviews are JSON and nothing else: fastify's text/plain parser would let other bodies reach the handler,
  // and its JSON parser answers every syntax error with one generic message. Ours says what is wrong and where.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (_req, body, done) => {
    let value: unknown;
    try {
      value = parseJsonBody(body as string);
    } catch (err) {
      return done(badRequest((err as Error).message), undefined);
    }
    done(null, value);
  });

  let draining = false;
  // Before fastify's own listener, on Node's 'request' event rather than through a fastify hook and a 'close' listener
  // per response (~2 µs a request): whether a request is still in progress is read from its response when the drain asks.
  app.server.prependListener('request', (req: IncomingMessage, res: ServerResponse) => {
    const conn = (req.socket as TrackedSocket)[kConnection];
    if (conn) {
      conn.requests++;
      conn.response = res;
    }
    // Go's http.Server.Shutdown does the same: a client told to close after this response never finds the
    // connection gone under a request it is writing (the API server retries a POST only when nothing was written)
    if (draining) res.setHeader('connection', 'close');
  });
  // Decision lines carry only Decision's fixed fields (never object content, never a key the redaction list names),
  // so they skip the wildcard redaction every other line keeps, and pino's generic path (see decisionLogger).
  const logDecision = decisionLogger(logger);

  app.setErrorHandler((error: FastifyError, request, reply) => {
    const status = error.statusCode && error.statusCode >= 400 && error.statusCode < 500 ? error.statusCode : 500;
    if (status === 500) request.log.error({ err: { message: error.message, code: error.code } }, 'unexpected error');
    else request.log.warn({ status, code: error.code, url: request.url.slice(0, 256), reason: error.message }, 'rejected request');
    metrics.requests.inc({ kind: 'unknown', operation: 'unknown', outcome: 'invalid' });
    return reply.code(status).send({ statusCode: status, error: REASONS[status] ?? 'Internal Server Error', message: error.message });
  });

  app.post('/mutate', async (request, reply) => {
    let result: ReturnType<typeof review>;
    try {
      result = review(request.body, mutators);
    } catch (err) {
      // review() checks types and depth itself; this is the last guard, so that no input can make a 5xx
      const e = err instanceof Error ? err : new Error('non-Error thrown');
      throw badRequest(`could not process the AdmissionReview (${e.name}: ${shown(e.message, 120)})`);
    }
    // one path for every rejection (parser, limits, envelope): the error handler logs, counts and answers it
    if (!result.ok) throw badRequest(`invalid AdmissionReview: ${result.error}`);
    const seconds = reply.elapsedTime / 1000;
    recordDecision(metrics, result.decision, seconds);
    logDecision(result.decision, request.id, seconds);
    reply.type(JSON_TYPE);
    return encodeReview(result.review);
  });

  // also on the HTTPS port: the API server's service proxy (`kubectl get --raw .../proxy/readyz`) reaches them here
  addProbeRoutes(app, metrics, () => !draining);
  // The certificate chain this port serves (public: every TLS client is shown it), for doctor, which reads it through
  // the API server's service proxy and so needs no network path of its own to these pods.
  let served = pemBlocks(options.tls.cert).join('\n');
  app.get('/certificate', async (_req, reply) => {
    reply.type('text/plain; charset=utf-8');
    return `${served}\n`;
  });

  /**
   * Stops accepting, then lets each connection end without a reset where its client could be writing: in-flight
   * requests finish (their responses close the connection), a connection accepted just before gets FRESH_GRACE_MS to
   * send its request, and kept-alive connections idle through the whole drain are ended (close_notify and FIN, after
   * which the client's pool drops them). Node's own close() would destroy every connection without a request in
   * progress at once, the just-accepted ones with their first request on the way included. Whatever is left once a
   * request could have arrived whole (the request timeout) and the grace has passed is destroyed.
   */
  async function closeConnections(): Promise<{ idle: number; fresh: number; forced: number }> {
    // its callback runs once every connection is gone, those still in their TLS handshake included
    let allClosed = false;
    TlsServer.prototype.close.call(app.server, () => { allClosed = true; });
    const counts = { idle: 0, fresh: 0, forced: 0 };
    const start = Date.now();
    const deadline = Math.max(timeoutMs, FRESH_GRACE_MS) + 1000;
    for (;;) {
      const waited = Date.now() - start;
      for (const socket of connections) {
        const conn = socket[kConnection]!;
        if (busy(conn) || socket.writableEnded) continue;
        if (conn.requests > 0) counts.idle++;
        else if (waited >= FRESH_GRACE_MS) counts.fresh++;
        else continue;
        socket.end();
      }
      if (allClosed) return counts;
      if (waited >= deadline) {
        for (const socket of connections) {
          counts.forced++;
          socket.destroy();
        }
        return counts;
      }
      await sleep(20);
    }
  }

  return {
    app,
    metrics,
    get draining() {
      return draining;
    },
    setKeyPair(pair) {
      app.server.setSecureContext(secureContextOptions(pair, s.tlsMinVersion));
      served = pemBlocks(pair.cert).join('\n');
      metrics.certNotAfter.set(certValidity(pair.cert).notAfter.getTime() / 1000);
      metrics.certReloads.inc({ result: 'ok' });
    },
    async drain(drainSeconds = s.drainSeconds) {
      if (draining) return;
      draining = true;
      logger.info({ drainSeconds }, 'draining: /readyz now answers 503, every response closes its connection');
      await sleep(drainSeconds * 1000);
      const closed = app.server.listening ? await closeConnections() : undefined;
      logger.info({ closedIdle: closed?.idle, closedWithoutRequest: closed?.fresh, destroyed: closed?.forced }, 'listener closed; connections ended');
      await app.close();
      logger.info('closed: in-flight requests finished');
    },
  };
}
