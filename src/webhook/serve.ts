// The `serve` command: config → TLS → server → listen, then certificate watching and SIGTERM draining.
import type { Config } from '../config/config.js';
import { intOption, stringOption, usageText, UsageError, type CommandArgs } from '../command.js';
import { createLogger, TurnBufferedDestination, type Logger } from '../log.js';
import { buildServer, type WebhookServer } from './server.js';
import { listenMetrics, type MetricsListener } from './metrics-listener.js';
import { version } from '../version.js';
import { certValidity, createServingCert, readKeyPair, watchKeyPair, type KeyPair } from './tls.js';
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import type { Reconciler } from '../reconcile/loop.js';
import type { LeaseMetadata } from '../k8s/client.js';
import { findCredentials, kubeconfigOption, noCredentials, type ClusterCredentials } from '../k8s/args.js';
import { LEASE_METADATA_ENV, parseLeaseMetadata } from '../reconcile/lease.js';

export interface ServeOptions {
  port?: number;
  host?: string;
  tlsCert?: string;
  tlsKey?: string;
  /**
   * the reconcile loop's cluster credentials (findCredentials without ~/.kube/config: a local `npm start` must not
   * restart the mlflow of whatever cluster the developer's current context names); undefined: no loop
   */
  credentials?: ClusterCredentials;
}

const SA_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

/** The webhook's own namespace, where its Lease lives: the downward API's POD_NAMESPACE, else the mounted one. */
function ownNamespace(config: Config): string {
  if (process.env.POD_NAMESPACE) return process.env.POD_NAMESPACE;
  try {
    return readFileSync(join(SA_DIR, 'namespace'), 'utf8').trim();
  } catch {
    return config.namespace; // outside a pod (a kubeconfig): the target namespace is as good a home as any
  }
}

async function startReconciler(config: Config, opts: ServeOptions, server: WebhookServer, logger: Logger, leaseMetadata: LeaseMetadata): Promise<Reconciler | undefined> {
  if (!config.reconcile.enabled) {
    logger.info('reconcile loop disabled (reconcile.enabled: false)');
    return undefined;
  }
  const { credentials } = opts;
  if (!credentials) {
    logger.warn(`reconcile loop not started: ${noCredentials({ userFile: false })}; an mlflow that rolls out while the webhook is down will not be repaired`);
    return undefined;
  }
  logger.info({ credentials: credentials.from }, 'reconcile loop: cluster credentials');
  const [{ kubeClient }, { Reconciler }, { buildMutators }] = await Promise.all([
    import('../k8s/client.js'), import('../reconcile/loop.js'), import('../mutators/index.js'),
  ]);
  const reconciler = new Reconciler({
    config,
    mutators: buildMutators(config),
    api: await kubeClient(credentials.file),
    logger,
    metrics: server.metrics,
    identity: process.env.POD_NAME || hostname(),
    leaseNamespace: ownNamespace(config),
    leaseMetadata,
  });
  reconciler.start();
  return reconciler;
}

/** Logs the certificate's validity: error when expired or not yet valid, warn within 30 days of expiry, else info. */
function logValidity(pair: KeyPair, logger: Logger, what: string, certFile?: string): void {
  const v = certValidity(pair.cert);
  const fields = { certFile, notBefore: v.notBefore.toISOString(), notAfter: v.notAfter.toISOString() };
  if (v.problem) logger[v.problem.level](fields, `${what}: ${v.problem.message}`);
  else logger.info(fields, what);
}

/** Codes with which listening on "::" fails on a kernel without IPv6 (booted with ipv6.disable=1, or built without it). */
const NO_IPV6 = new Set(['EAFNOSUPPORT', 'EADDRNOTAVAIL', 'EPROTONOSUPPORT']);
const LISTEN_HINTS: Record<string, string> = {
  EADDRINUSE: 'another process listens on this port',
  EACCES: 'not allowed to bind this port (below 1024 it needs privileges)',
  EADDRNOTAVAIL: 'this host has no such address',
  EAFNOSUPPORT: 'this host does not support the address family',
};

/** A failed listen, worded the same for every port: the address, the code, and what the code means here. */
function cannotListen(host: string, port: number, err: NodeJS.ErrnoException): Error {
  return new Error(`cannot listen on ${host.includes(':') ? `[${host}]` : host}:${port}: ${err.code ?? err.message}${err.code && LISTEN_HINTS[err.code] ? ` (${LISTEN_HINTS[err.code]})` : ''}`);
}

/**
 * Listens on host:port. "::" (the default) is dual stack, since Node binds it with IPV6_V6ONLY off; where the kernel
 * has no IPv6 at all it falls back to 0.0.0.0 with a warning, as "all addresses" there means all IPv4 ones. Any other
 * failure becomes an error naming the address, the code and its likely cause.
 */
export async function listenDualStack(listen: (host: string) => Promise<void>, host: string, port: number, logger: Logger): Promise<string> {
  try {
    await listen(host);
    return host;
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (host !== '::' || !e.code || !NO_IPV6.has(e.code)) throw cannotListen(host, port, e);
    logger.warn({ host, code: e.code }, 'IPv6 is not available on this host: listening on 0.0.0.0 (IPv4 only); set server.host to silence this');
  }
  try {
    await listen('0.0.0.0');
  } catch (err) {
    throw cannotListen('0.0.0.0', port, err as NodeJS.ErrnoException);
  }
  return '0.0.0.0';
}

export interface Running {
  readonly server: WebhookServer;
  readonly port: number;
  readonly reconciler?: Reconciler;
  /** the plain-HTTP listener (/metrics and the probes), when server.metricsPort is set */
  readonly metrics?: MetricsListener;
  stop(): Promise<void>;
}

export async function serve(config: Config, opts: ServeOptions, logger: Logger = createLogger(config.logLevel)): Promise<Running> {
  logger.info({ version, node: process.version }, 'mlflow-irsa-webhook starting');
  // read before listening, so a malformed value stops the start with its message instead of after the port is open
  const leaseMetadata = parseLeaseMetadata(process.env[LEASE_METADATA_ENV]);
  let pair: KeyPair;
  if (opts.tlsCert && opts.tlsKey) {
    pair = readKeyPair(opts.tlsCert, opts.tlsKey);
  } else {
    const svc = 'mlflow-irsa-webhook';
    pair = await createServingCert(['localhost', svc, `${svc}.${config.namespace}.svc`], 365);
    logger.warn('no --tls-cert/--tls-key given: serving an in-memory self-signed certificate, which no API server trusts; use it for local trials only');
  }
  logValidity(pair, logger, 'serving certificate', opts.tlsCert);
  const server = buildServer({ config, tls: pair, logger });
  const wanted = opts.port ?? config.server.port;
  const host = await listenDualStack((h) => server.app.listen({ port: wanted, host: h }).then(() => undefined), opts.host ?? config.server.host, wanted, logger);
  const address = server.app.server.address();
  const port = typeof address === 'object' && address ? address.port : wanted;
  logger.info({ host, port, namespace: config.namespace, deployment: config.deployment, serviceAccount: config.serviceAccount }, 'listening (HTTPS)');
  let metrics: MetricsListener | undefined;
  if (config.server.metricsPort > 0) {
    try {
      const s = config.server;
      metrics = await listenMetrics(server.metrics, {
        host, port: s.metricsPort, requestTimeoutSeconds: s.requestTimeoutSeconds, idleTimeoutSeconds: s.metricsIdleTimeoutSeconds,
        maxConnections: s.metricsMaxConnections, maxConnectionsPerSource: s.metricsMaxConnectionsPerSource, ready: () => !server.draining, logger,
      });
    } catch (err) {
      // the HTTPS listener would otherwise keep a process that failed to start alive
      await server.app.close();
      throw new Error(`server.metricsPort: ${cannotListen(host, config.server.metricsPort, err as NodeJS.ErrnoException).message}`);
    }
    logger.info({ host, port: metrics.port }, 'listening (plain HTTP: /metrics, /healthz, /readyz)');
  }

  let unwatch = () => {};
  if (opts.tlsCert && opts.tlsKey) {
    unwatch = watchKeyPair(opts.tlsCert, opts.tlsKey, config.server.certReloadSeconds * 1000, (next) => {
      server.setKeyPair(next);
      logValidity(next, logger, 'serving certificate reloaded', opts.tlsCert);
    }, (err) => {
      server.metrics.certReloads.inc({ result: 'error' });
      logger.warn({ certFile: opts.tlsCert, reason: err.message }, 'certificate files changed but are not a valid pair yet; keeping the current one');
    }, pair);
  }
  const reconciler = await startReconciler(config, opts, server, logger, leaseMetadata);
  return {
    server,
    port,
    reconciler,
    metrics,
    async stop() {
      unwatch();
      // metrics stay scrapeable through the drain
      await Promise.all([reconciler?.stop(), server.drain().then(() => metrics?.close())]);
    },
  };
}

/** Runs until SIGTERM/SIGINT, then drains and exits 0. */
export async function serveUntilSignal(config: Config, opts: ServeOptions): Promise<void> {
  const logger = createLogger(config.logLevel, new TurnBufferedDestination(1));
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

export const usage = usageText('--config FILE [--port 8443] [--host ::] [--tls-cert FILE --tls-key FILE] [--kubeconfig FILE]', [
  ['--port', 'HTTPS port (default: server.port of the config, 8443)'],
  ['--host', 'listen address of the HTTPS port and of server.metricsPort (default: server.host, :: — IPv6 and IPv4)'],
  ['--tls-cert', 'PEM serving certificate, re-read when it changes on disk; goes with --tls-key'],
  ['--tls-key', 'its PEM private key; without the pair, an in-memory self-signed certificate for local trials'],
  ['--kubeconfig', 'credentials for the reconcile loop (default: $KUBECONFIG, or in a pod its service account; never ~/.kube/config)'],
]);
export const options = {
  ...kubeconfigOption,
  port: { type: 'string' as const },
  host: { type: 'string' as const },
  'tls-cert': { type: 'string' as const },
  'tls-key': { type: 'string' as const },
};

export async function run({ values, config }: CommandArgs): Promise<undefined> {
  const tlsCert = stringOption(values, 'tls-cert');
  const tlsKey = stringOption(values, 'tls-key');
  if (Boolean(tlsCert) !== Boolean(tlsKey)) throw new UsageError('--tls-cert and --tls-key go together');
  // before anything listens: a kubeconfig named but unreadable is a usage error (exit 2), not a webhook without its loop
  const credentials = config.reconcile.enabled ? findCredentials(values, { userFile: false }) : undefined;
  await serveUntilSignal(config, { port: intOption(values, 'port', 1, 65535), host: stringOption(values, 'host'), tlsCert, tlsKey, credentials });
  return undefined;
}
