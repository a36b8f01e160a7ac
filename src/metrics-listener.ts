// The optional plain-HTTP listener for Prometheus (server.metricsPort): GET /metrics and nothing else, so a scraper
// needs neither TLS nor the webhook's private CA. The admission path stays on the HTTPS port alone.
import Fastify from 'fastify';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';

export interface MetricsListenerOptions {
  readonly host: string;
  readonly port: number;
  /** a request must arrive within this, as on the HTTPS port */
  readonly requestTimeoutSeconds: number;
  /** an idle kept-alive connection is closed after this, as on the HTTPS port: Prometheus's Go client, like the API server's, keeps idle connections longer than a scrape interval */
  readonly idleTimeoutSeconds: number;
}

export interface MetricsListener {
  /** the bound port (the configured one, or the one the OS chose for 0 in tests) */
  readonly port: number;
  close(): Promise<void>;
}

export async function listenMetrics(registry: Registry, options: MetricsListenerOptions): Promise<MetricsListener> {
  const timeoutMs = options.requestTimeoutSeconds * 1000;
  // no body parsers and one route: anything but GET/HEAD /metrics is a 404, and no request body is ever read
  const app = Fastify({ requestTimeout: timeoutMs, connectionTimeout: timeoutMs * 3, keepAliveTimeout: options.idleTimeoutSeconds * 1000, bodyLimit: 1024 });
  app.removeAllContentTypeParsers();
  app.get('/metrics', async (_req, reply) => {
    reply.type(registry.contentType);
    return registry.metrics();
  });
  await app.listen({ host: options.host, port: options.port });
  return {
    // a TCP listener's address is always an AddressInfo
    port: (app.server.address() as AddressInfo).port,
    close: () => app.close(),
  };
}
