// `restart-target`: restarts the mlflow Deployment, as `kubectl rollout restart` does, only when it still lacks the mutation
// (with credentials pod-identity, after taking IRSA's role annotation off the ServiceAccount).
import { setTimeout as sleep } from 'node:timers/promises';
import type { Config } from '../config/config.js';
import { intOption, usageText, type CommandArgs } from '../command.js';
import { createLogger, type Logger } from '../log.js';
import { buildMutators, cannotMutate, planPatch, type JsonObject, type Mutate } from '../mutators/index.js';
import { serviceAccountPlan, serviceAccountRepair } from '../mutators/service-account.js';
import { lacksMutation } from '../reconcile/decide.js';
import { clientFromArgs, kubeconfigHelp, kubeconfigOption } from './args.js';
import { isNotFound, type KubeClient } from './client.js';

export const RESTARTED_AT = 'kubectl.kubernetes.io/restartedAt';

export interface RestartOptions {
  readonly waitSeconds: number;
  /** the annotation value; kubectl writes the current time in RFC 3339 */
  readonly now?: () => Date;
  /** the pause between two dry runs while the webhook is not answering yet */
  readonly retryMs?: number;
}

export type RestartOutcome = 'absent' | 'already-mutated' | 'restarted';

/**
 * Sends the restart as a server-side dry run (stored nowhere) until the API server admits it with the mutation, or
 * `waitSeconds` pass. That is the path the real restart takes: the API server calls the webhook and trusts its
 * certificate. Asked through the API server, the Job needs no network path to the webhook pods (a NetworkPolicy can
 * admit the API server alone) and no CA file. With failurePolicy Ignore, a restart sent before the webhook answers
 * would roll out an unmutated mlflow, so running out of time is an error, not a reason to go on.
 */
export async function waitForWebhook(client: KubeClient, config: Config, patch: JsonObject, mutate: Mutate, o: RestartOptions, log: Logger): Promise<void> {
  const deadline = Date.now() + o.waitSeconds * 1000;
  for (let attempt = 1; ; attempt++) {
    let reason: string;
    try {
      const admitted = await client.patchDeployment(config.namespace, config.deployment, patch, { dryRun: true });
      const missing = planPatch(mutate, admitted).patch.length;
      if (missing === 0) {
        log.info({ attempt }, 'webhook is ready: a dry run of the restart was admitted with the mutation');
        return;
      }
      reason = `the dry run was admitted without the mutation (${missing} changes missing): the API server does not reach the webhook yet`;
    } catch (err) {
      reason = (err as Error).message;
    }
    if (Date.now() >= deadline) {
      throw new Error(`webhook not ready after ${o.waitSeconds} s (last dry run of the restart of Deployment ${config.namespace}/${config.deployment}: ${reason}); not restarting, since the restart would roll out without the mutation`);
    }
    log.info({ attempt, reason }, 'webhook not ready yet; waiting');
    await sleep(Math.min(o.retryMs ?? 1000, Math.max(0, deadline - Date.now())));
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
  const { patch, restartedAt } = restartPatch((o.now ?? (() => new Date()))());
  await waitForWebhook(client, config, patch, mutate, o, log);
  if (config.credentials === 'pod-identity') await clearRoleAnnotation(client, config, mutators.serviceAccount, log);
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

export const usage = usageText('--config FILE [--wait 180] [--kubeconfig FILE]', [
  ['--wait', 'seconds to wait until a dry run of the restart is admitted with the mutation; no restart is sent without it (default 180)'],
  kubeconfigHelp,
]);
export const options = {
  wait: { type: 'string' as const },
  ...kubeconfigOption,
};

export async function run({ values, config }: CommandArgs): Promise<number> {
  const waitSeconds = intOption(values, 'wait', 0, 3600) ?? 180;
  const log = createLogger(config.logLevel);
  await restartTarget(await clientFromArgs(values), config, { waitSeconds }, log);
  return 0;
}
