// The plain-HTTP listener (server.metricsPort): GET /metrics for Prometheus, and /healthz and /readyz for the kubelet's
// probes, so that neither needs TLS or the webhook's private CA, and a client that fills the HTTPS port's connections
// cannot starve the probes (the pod would otherwise be restarted or taken out of its Service). The admission path
// stays on the HTTPS port alone. It has its own connection caps and a short idle timeout.
import Fastify, { type FastifyInstance } from 'fastify';
import type { IncomingMessage, Server as HttpServer, ServerResponse } from 'node:http';
import type { Server as HttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import { listenerOptions, type ListenerTimes } from './fastify-options.js';
import { limitConnections } from './connections.js';
import type { Metrics } from './metrics.js';

export interface MetricsListenerOptions extends ListenerTimes {
  readonly host: string;
  readonly port: number;
  readonly maxConnections: number;
  readonly maxConnectionsPerSource: number;
  /** false once the webhook drains: /readyz answers 503 */
  readonly ready: () => boolean;
  readonly logger: Logger;
}

export interface MetricsListener {
  /** the bound port (the configured one, or the one the OS chose for 0 in tests) */
  readonly port: number;
  close(): Promise<void>;
}

/** /healthz, /readyz and /metrics, the same on both listeners: one definition of ready. */
export function addProbeRoutes(app: FastifyInstance<HttpServer | HttpsServer, IncomingMessage, ServerResponse>, metrics: Metrics, ready: () => boolean): void {
  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async (_req, reply) => (ready() ? { status: 'ready' } : reply.code(503).send({ status: 'draining' })));
  app.get('/metrics', async (_req, reply) => {
    reply.type(metrics.registry.contentType);
    return metrics.registry.metrics();
  });
}

export async function listenMetrics(metrics: Metrics, options: MetricsListenerOptions): Promise<MetricsListener> {
  // no body parsers and three GET routes: anything else is a 404, and no request body is ever read
  const app = Fastify({ ...listenerOptions(options), bodyLimit: 1024 });
  app.removeAllContentTypeParsers();
  addProbeRoutes(app, metrics, options.ready);
  limitConnections(app.server, {
    listener: 'metrics',
    maxConnections: options.maxConnections,
    maxPerSource: options.maxConnectionsPerSource,
    firstRequestMs: options.requestTimeoutSeconds * 1000,
    sessionEvent: 'connection',
  }, metrics, options.logger);
  await app.listen({ host: options.host, port: options.port });
  return {
    // a TCP listener's address is always an AddressInfo
    port: (app.server.address() as AddressInfo).port,
    close: () => app.close(),
  };
}
