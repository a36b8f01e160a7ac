// The `serve` command: config → TLS → server → listen, then certificate watching and SIGTERM draining.
import type { Config } from './config.js';
import { intOption, stringOption, UsageError, type CommandArgs } from './command.js';
import { createLogger, type Logger } from './log.js';
import { buildServer, type WebhookServer } from './server.js';
import { createServingCert, readKeyPair, watchKeyPair, type KeyPair } from './tls.js';

export interface ServeOptions {
  port?: number;
  host?: string;
  tlsCert?: string;
  tlsKey?: string;
}

export interface Running {
  readonly server: WebhookServer;
  readonly port: number;
  stop(): Promise<void>;
}

export async function serve(config: Config, opts: ServeOptions, logger: Logger = createLogger(config.logLevel)): Promise<Running> {
  let pair: KeyPair;
  if (opts.tlsCert && opts.tlsKey) {
    pair = readKeyPair(opts.tlsCert, opts.tlsKey);
  } else {
    const svc = 'mlflow-irsa-webhook';
    pair = await createServingCert(['localhost', svc, `${svc}.${config.namespace}.svc`], 365);
    logger.warn('no --tls-cert/--tls-key given: serving an in-memory self-signed certificate, which no API server trusts; use it for local trials only');
  }
  const server = buildServer({ config, tls: pair, logger });
  const host = opts.host ?? config.server.host;
  await server.app.listen({ port: opts.port ?? config.server.port, host });
  const address = server.app.server.address();
  const port = typeof address === 'object' && address ? address.port : (opts.port ?? config.server.port);
  logger.info({ host, port, namespace: config.namespace, deployment: config.deployment, serviceAccount: config.serviceAccount }, 'listening (HTTPS)');

  let unwatch = () => {};
  if (opts.tlsCert && opts.tlsKey) {
    unwatch = watchKeyPair(opts.tlsCert, opts.tlsKey, config.server.certReloadSeconds * 1000, (next) => {
      server.setKeyPair(next);
      logger.info({ certFile: opts.tlsCert }, 'serving certificate reloaded');
    }, (err) => {
      server.metrics.certReloads.inc({ result: 'error' });
      logger.warn({ certFile: opts.tlsCert, reason: err.message }, 'certificate files changed but are not a valid pair yet; keeping the current one');
    }, pair);
  }
  return {
    server,
    port,
    async stop() {
      unwatch();
      await server.drain();
    },
  };
}

/** Runs until SIGTERM/SIGINT, then drains and exits 0. */
export async function serveUntilSignal(config: Config, opts: ServeOptions): Promise<void> {
  const logger = createLogger(config.logLevel);
  const running = await serve(config, opts, logger);
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down');
    running.stop().then(
      () => process.exit(0),
      (err: Error) => {
        logger.error({ reason: err.message }, 'error while draining');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
}

export const usage = '--config FILE [--port 8443] [--host 0.0.0.0] [--tls-cert FILE --tls-key FILE]';
export const options = {
  port: { type: 'string' as const },
  host: { type: 'string' as const },
  'tls-cert': { type: 'string' as const },
  'tls-key': { type: 'string' as const },
};

export async function run({ values, config }: CommandArgs): Promise<undefined> {
  const tlsCert = stringOption(values, 'tls-cert');
  const tlsKey = stringOption(values, 'tls-key');
  if (Boolean(tlsCert) !== Boolean(tlsKey)) throw new UsageError('--tls-cert and --tls-key go together');
  await serveUntilSignal(config, { port: intOption(values, 'port', 1, 65535), host: stringOption(values, 'host'), tlsCert, tlsKey });
  return undefined;
}
