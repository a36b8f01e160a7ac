// `restart-target`: restarts the mlflow Deployment, as `kubectl rollout restart` does, only when it still lacks the mutation
// (with credentials pod-identity, after taking IRSA's role annotation off the ServiceAccount).
import { readFileSync } from 'node:fs';
import { request } from 'node:https';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Config } from '../config.js';
import { intOption, stringOption, usageText, UsageError, type CommandArgs } from '../command.js';
import { createLogger, type Logger } from '../log.js';
import { buildMutators, cannotMutate, planPatch, type JsonObject, type Mutate } from '../mutators/index.js';
import { serviceAccountPlan, serviceAccountRepair } from '../mutators/service-account.js';
import { lacksMutation } from '../reconcile/decide.js';
import { clientFromArgs, kubeconfigHelp, kubeconfigOption, requiredOption } from './args.js';
import { isNotFound, type KubeClient } from './client.js';

export const RESTARTED_AT = 'kubectl.kubernetes.io/restartedAt';

export interface RestartOptions {
  /** the webhook's readiness URL, reached through its Service as the API server reaches it */
  readonly readyUrl: string;
  /** PEM CA the webhook's serving certificate chains to */
  readonly ca: string;
  readonly waitSeconds: number;
  /** the annotation value; kubectl writes the current time in RFC 3339 */
  readonly now?: () => Date;
}

export type RestartOutcome = 'absent' | 'already-mutated' | 'restarted';

/** One GET of the readiness URL: the status code, or the connection error's message. */
function probe(url: string, ca: string, timeoutMs: number): Promise<number | string> {
  return new Promise((resolve) => {
    // agent: false, a fresh connection per probe: a pooled one could outlive a webhook pod that is being replaced
    const req = request(url, { method: 'GET', ca, timeout: timeoutMs, agent: false }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', (err) => resolve(err.message));
    req.end();
  });
}

/**
 * Polls the readiness URL until it answers 200 or `waitSeconds` pass. With failurePolicy Ignore, a restart sent before
 * the webhook answers would roll out an unmutated mlflow, so running out of time is an error, not a reason to go on.
 */
export async function waitForWebhook(url: string, ca: string, waitSeconds: number, log: Logger): Promise<void> {
  const deadline = Date.now() + waitSeconds * 1000;
  for (let attempt = 1; ; attempt++) {
    const result = await probe(url, ca, 3000);
    if (result === 200) {
      log.info({ url, attempt }, 'webhook is ready');
      return;
    }
    const reason = typeof result === 'number' ? `HTTP ${result}` : result;
    if (Date.now() >= deadline) {
      throw new Error(`webhook not ready at ${url} after ${waitSeconds} s (last answer: ${reason}); not restarting, since the restart would roll out without the mutation`);
    }
    log.info({ url, attempt, reason }, 'webhook not ready yet; waiting');
    await sleep(Math.min(1000, Math.max(0, deadline - Date.now())));
  }
}

/** RFC 3339 in UTC without fractions, the shape `kubectl rollout restart` writes. */
const rfc3339 = (d: Date) => d.toISOString().replace(/\.\d{3}Z$/, 'Z');

/** The strategic-merge patch `kubectl rollout restart` sends: a new template annotation, so a new ReplicaSet rolls out. */
export function restartPatch(at: Date): { patch: JsonObject; restartedAt: string } {
  const restartedAt = rfc3339(at);
  return { patch: { spec: { template: { metadata: { annotations: { [RESTARTED_AT]: restartedAt } } } } }, restartedAt };
}

/** The object, or undefined (after `absent` said so) when it does not exist. */
async function present(read: () => Promise<JsonObject>, absent: () => void): Promise<JsonObject | undefined> {
  try {
    return await read();
  } catch (err) {
    if (!isNotFound(err)) throw err;
    absent();
    return undefined;
  }
}

/**
 * pod-identity: the ServiceAccount without IRSA's annotations before any restart. While it names a role, EKS's webhook
 * gives every new pod web identity, which botocore uses before Pod Identity, so a restart first would start mlflow on
 * IRSA again. The reconcile loop repairs it too, but the restart must not race it.
 */
async function clearRoleAnnotation(client: KubeClient, config: Config, mutate: Mutate, log: Logger): Promise<void> {
  const where = { namespace: config.namespace, serviceAccount: config.serviceAccount };
  const sa = await present(() => client.readServiceAccount(config.namespace, config.serviceAccount), () => log.info(where, 'ServiceAccount not found; nothing to take off it'));
  if (!sa || !lacksMutation(mutate, sa)) return;
  await client.patchServiceAccount(config.namespace, config.serviceAccount, serviceAccountRepair(serviceAccountPlan(config)));
  log.info(where, 'took IRSA\'s role annotation off the ServiceAccount before the restart (credentials pod-identity)');
}

export async function restartTarget(client: KubeClient, config: Config, o: RestartOptions, log: Logger): Promise<RestartOutcome> {
  const where = { namespace: config.namespace, deployment: config.deployment };
  const deployment = await present(() => client.readDeployment(config.namespace, config.deployment),
    () => log.warn(where, 'Deployment not found; nothing to restart (the webhook mutates it when it is created)'));
  if (!deployment) return 'absent';
  const mutators = buildMutators(config);
  const mutate = mutators.deployment;
  const plan = planPatch(mutate, deployment);
  // The mutator hands back the original with a warning when it cannot apply (no such container): a restart would not help.
  if (cannotMutate(plan)) throw new Error(`Deployment cannot be mutated: ${plan.warnings.join('; ')}`);
  if (plan.patch.length === 0) {
    log.info(where, 'Deployment already carries the mutation; not restarted');
    return 'already-mutated';
  }
  log.info({ ...where, missing: plan.patch.map((op) => `${op.op} ${op.path}`) }, 'Deployment lacks the mutation; restarting once the webhook answers');
  await waitForWebhook(o.readyUrl, o.ca, o.waitSeconds, log);
  if (config.credentials === 'pod-identity') await clearRoleAnnotation(client, config, mutators.serviceAccount, log);
  const { patch, restartedAt } = restartPatch((o.now ?? (() => new Date()))());
  const admitted = await client.patchDeployment(config.namespace, config.deployment, patch);
  // The PATCH answer is the object as admitted, after the webhook ran: proof that the mutation went in.
  const after = planPatch(mutate, admitted);
  if (after.patch.length > 0) {
    throw new Error(`Deployment ${config.namespace}/${config.deployment} was restarted but admitted without the mutation `
      + `(${after.patch.length} changes still missing): the API server did not reach the webhook; check the webhook's logs, its Service and the caBundle`);
  }
  log.info({ ...where, restartedAt }, 'Deployment restarted; the new pod template carries the mutation');
  return 'restarted';
}

export const usage = usageText('--config FILE --ca-file FILE (--service NAME --service-namespace NS | --ready-url URL) [--wait 180] [--kubeconfig FILE]', [
  ['--ca-file', 'PEM CA of the webhook\'s serving certificate (ca.crt of its TLS Secret)'],
  ['--service', 'the webhook Service; its /readyz is polled before the restart'],
  ['--service-namespace', 'namespace of that Service'],
  ['--ready-url', 'an https:// readiness URL to poll instead of the Service\'s'],
  ['--wait', 'seconds to wait for the webhook to answer; no restart is sent without it (default 180)'],
  kubeconfigHelp,
]);
export const options = {
  'ca-file': { type: 'string' as const },
  service: { type: 'string' as const },
  'service-namespace': { type: 'string' as const },
  'ready-url': { type: 'string' as const },
  wait: { type: 'string' as const },
  ...kubeconfigOption,
};

function readyUrlOf(values: CommandArgs['values']): string {
  const url = stringOption(values, 'ready-url');
  if (url !== undefined) {
    if (!/^https:\/\/[^/]+\//.test(url)) throw new UsageError(`--ready-url: ${JSON.stringify(url)} must be an https:// URL with a path`);
    return url;
  }
  const service = requiredOption(values, 'service', 'the webhook Service, whose /readyz is polled; or give --ready-url');
  const namespace = requiredOption(values, 'service-namespace', 'namespace of the webhook Service');
  return `https://${service}.${namespace}.svc/readyz`;
}

export async function run({ values, config }: CommandArgs): Promise<number> {
  const readyUrl = readyUrlOf(values);
  const caFile = requiredOption(values, 'ca-file', 'PEM CA of the webhook\'s serving certificate, e.g. ca.crt of its TLS Secret');
  const waitSeconds = intOption(values, 'wait', 0, 3600) ?? 180;
  let ca: string;
  try {
    ca = readFileSync(caFile, 'utf8');
  } catch (err) {
    throw new UsageError(`--ca-file: cannot read ${caFile}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  const log = createLogger(config.logLevel);
  await restartTarget(await clientFromArgs(values), config, { readyUrl, ca, waitSeconds }, log);
  return 0;
}
