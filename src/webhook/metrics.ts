// Prometheus metrics of the admission path, on a registry of their own so that each server (and test) starts at zero.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { version } from '../version.js';

export interface Metrics {
  readonly registry: Registry;
  readonly requests: Counter<'kind' | 'operation' | 'outcome'>;
  readonly patches: Counter<'kind'>;
  readonly duration: Histogram<'outcome'>;
  readonly certReloads: Counter<'result'>;
  readonly certNotAfter: Gauge;
  readonly connectionsDropped: Counter<'listener' | 'reason'>;
  readonly repairs: Counter<'object'>;
  readonly lastCheck: Gauge;
  readonly leader: Gauge;
}

export function createMetrics(defaults = true): Metrics {
  const registry = new Registry();
  if (defaults) collectDefaultMetrics({ register: registry, prefix: 'mlflow_irsa_webhook_' });
  // the usual build_info idiom: a constant 1 whose labels say which release and Node runs
  new Gauge({
    name: 'mlflow_irsa_webhook_build_info',
    help: 'Always 1; the labels carry the program version and the Node.js version it runs on',
    labelNames: ['version', 'node'],
    registers: [registry],
  }).set({ version, node: process.version }, 1);
  return {
    registry,
    requests: new Counter({
      name: 'mlflow_irsa_webhook_admission_requests_total',
      help: 'AdmissionReview requests by object kind, operation and outcome (patched, unchanged, ignored, failed-open, too-large, invalid)',
      labelNames: ['kind', 'operation', 'outcome'],
      registers: [registry],
    }),
    patches: new Counter({
      name: 'mlflow_irsa_webhook_patches_total',
      help: 'JSON patches returned, by object kind',
      labelNames: ['kind'],
      registers: [registry],
    }),
    duration: new Histogram({
      name: 'mlflow_irsa_webhook_admission_duration_seconds',
      help: 'Time to answer an AdmissionReview, from request start to reply',
      labelNames: ['outcome'],
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers: [registry],
    }),
    certReloads: new Counter({
      name: 'mlflow_irsa_webhook_cert_reloads_total',
      help: 'Serving certificate reloads from disk, by result (ok, error)',
      labelNames: ['result'],
      registers: [registry],
    }),
    certNotAfter: new Gauge({
      name: 'mlflow_irsa_webhook_serving_cert_not_after_timestamp_seconds',
      help: 'When the certificate now served expires (Unix time); alert well before time() reaches it',
      registers: [registry],
    }),
    connectionsDropped: new Counter({
      name: 'mlflow_irsa_webhook_connections_dropped_total',
      help: 'Connections the server closed, by listener (webhook, metrics) and reason: total (the listener\'s connection cap was reached), per-source (the client address held its cap), no-request (no request within server.requestTimeoutSeconds)',
      labelNames: ['listener', 'reason'],
      registers: [registry],
    }),
    repairs: new Counter({
      name: 'mlflow_irsa_webhook_reconcile_repairs_total',
      help: 'Repairs the reconcile loop sent: a restart of the Deployment, or the role annotation on the ServiceAccount',
      labelNames: ['object'],
      registers: [registry],
    }),
    lastCheck: new Gauge({
      name: 'mlflow_irsa_webhook_reconcile_last_success_timestamp_seconds',
      help: 'When the reconcile loop last read the target objects and decided without error (Unix time)',
      registers: [registry],
    }),
    leader: new Gauge({
      name: 'mlflow_irsa_webhook_reconcile_leader',
      help: '1 while this replica holds the reconcile Lease and acts, else 0',
      registers: [registry],
    }),
  };
}
