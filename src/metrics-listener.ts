// The optional plain-HTTP listener for Prometheus (server.metricsPort): GET /metrics and nothing else, so a scraper
// needs neither TLS nor the webhook's private CA. The admission path stays on the HTTPS port alone.
import Fastify from 'fastify';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import { listenerOptions, type ListenerTimes } from './fastify-options.js';

export interface MetricsListenerOptions extends ListenerTimes {
  readonly host: string;
  readonly port: number;
}

export interface MetricsListener {
  /** the bound port (the configured one, or the one the OS chose for 0 in tests) */
  readonly port: number;
  close(): Promise<void>;
}

export async function listenMetrics(registry: Registry, options: MetricsListenerOptions): Promise<MetricsListener> {
  // no body parsers and one route: anything but GET/HEAD /metrics is a 404, and no request body is ever read
  const app = Fastify({ ...listenerOptions(options), bodyLimit: 1024 });
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
