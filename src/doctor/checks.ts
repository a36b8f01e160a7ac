// doctor's checks in dependency order, and running them: each a small pure function from what was read (objects, rows,
// documents) to a verdict with a fix, in a file per thing it checks. No I/O here: read.ts reads everything once; the
// checks share it. "Mutated" is the webhook's own mutator's answer
// and "installed" is what db/install.ts reads back, so doctor never has a definition of its own.
import { judgeMigration } from './migration.js';
import { judgeCaBundle, judgeCertificate, judgeConfiguration, judgeDryRun, judgeEndpoints } from './webhook-checks.js';
import { judgeAgent, judgeArguments, judgeCredentials, judgeCurrentPods, judgeOldPods, judgePodCredentials, judgeRollout, judgeServiceAccount, judgeTemplate } from './workload-checks.js';
import { judgeConnection, judgeDeferred, judgeDrift, judgeFunction, judgeInstalled, judgeLegacy, judgeLocationPolicy } from './trigger-checks.js';
import { judgeTrust } from './iam-checks.js';
import { type CheckDefinition, type CheckResult, type DoctorContext, type DoctorFacts, type Status, type Verdict, checkDocs, fail, helmUpgrade, pass, sh, skip, unreadable, warn } from './facts.js';
export * from './facts.js';
export * from './webhook-checks.js';
export * from './workload-checks.js';
export * from './trigger-checks.js';
export * from './iam-checks.js';

// ---- the reconcile loop ------------------------------------------------------------------------------------------

function judgeLease(f: DoctorFacts, c: DoctorContext): Verdict {
  const name = `${c.webhookNamespace}/${c.config.reconcile.leaseName}`;
  if (!f.lease) return skip('reconcile.enabled is false: no self-healing, no Lease');
  const logs = sh`kubectl -n ${c.webhookNamespace} logs -l app.kubernetes.io/component=webhook --prefix --tail 200 | grep -i lease`;
  if (!f.lease.ok) {
    return unreadable(f.lease, `Lease ${name}`, fail(`Lease ${name} not found: no replica can lead (the webhook recreates it when allowed)`, helmUpgrade(f, c)), 'get', `lease.coordination.k8s.io/${c.config.reconcile.leaseName}`, c.webhookNamespace);
  }
  const { holder, renewTime } = f.lease.value;
  if (!holder) return fail(`Lease ${name} has no holder: no webhook replica is leading`, logs);
  const duration = f.lease.value.leaseDurationSeconds ?? c.config.reconcile.leaseDurationSeconds;
  const age = renewTime === undefined ? Infinity : Math.round((c.now - renewTime) / 1000);
  // twice the duration: a leader renews every third of it, and the clocks of this machine and the node may differ
  if (age > 2 * duration) {
    return fail(`Lease ${name} is held by ${holder}, last renewed ${Number.isFinite(age) ? `${age} s ago` : 'never'} (lease duration ${duration} s): the leader stopped renewing`, logs);
  }
  return pass(`Lease ${name} is held by ${holder}, renewed ${Math.max(0, age)} s ago`);
}

function judgeApi(f: DoctorFacts): Verdict {
  if (!f.api.ok) return fail(`cannot reach the Kubernetes API: ${f.api.error}`, 'kubectl cluster-info');
  return pass(`the API server answers (${f.api.value})`);
}

/** A check whose group is its id's first part. */
const check = (id: string, judge: CheckDefinition['judge'], needs?: string[]): CheckDefinition => ({ id, group: id.split('.')[0], judge, ...(needs && { needs }) });

/** Every check, in dependency order. The ids are stable (each has its section in docs/troubleshooting.md). */
export const CHECKS: readonly CheckDefinition[] = [
  check('kubernetes.api', judgeApi),
  check('webhook.configuration', judgeConfiguration, ['kubernetes.api']),
  check('webhook.ca-bundle', judgeCaBundle, ['webhook.configuration']),
  check('webhook.certificate', judgeCertificate, ['webhook.configuration']),
  check('webhook.endpoints', judgeEndpoints, ['webhook.configuration']),
  check('admission.dry-run', judgeDryRun, ['webhook.ca-bundle', 'webhook.certificate', 'webhook.endpoints']),
  check('deployment.template', judgeTemplate, ['kubernetes.api']),
  check('deployment.rollout', judgeRollout, ['kubernetes.api']),
  check('deployment.credentials', judgeCredentials, ['kubernetes.api']),
  check('deployment.arguments', judgeArguments, ['kubernetes.api']),
  check('pods.current', judgeCurrentPods, ['deployment.template']),
  check('pods.old-replicasets', judgeOldPods, ['deployment.template']),
  check('pods.credentials', judgePodCredentials, ['deployment.template']),
  check('serviceaccount.annotation', judgeServiceAccount, ['kubernetes.api']),
  check('pod-identity.agent', judgeAgent, ['kubernetes.api']),
  check('trigger.connection', judgeConnection),
  check('trigger.installed', judgeInstalled, ['trigger.connection']),
  check('trigger.function', judgeFunction, ['trigger.installed']),
  check('trigger.deferred', judgeDeferred, ['trigger.installed']),
  check('trigger.location-policy', judgeLocationPolicy, ['trigger.installed']),
  check('trigger.legacy', judgeLegacy, ['trigger.connection']),
  check('trigger.drift', judgeDrift, ['trigger.connection']),
  check('migration.artifacts', judgeMigration, ['kubernetes.api']),
  check('iam.trust-policy', judgeTrust),
  check('reconcile.lease', judgeLease, ['kubernetes.api']),
];

/** Runs the checks in order; a check whose prerequisite failed or was skipped is skipped, naming it. */
export function runChecks(facts: DoctorFacts, ctx: DoctorContext, checks: readonly CheckDefinition[] = CHECKS): CheckResult[] {
  const done = new Map<string, CheckResult>();
  // the check at the root of a chain of skips, so a skip names the cause, not just its neighbour
  const rootOf = new Map<string, CheckResult>();
  for (const check of checks) {
    const blocker = (check.needs ?? []).map((id) => done.get(id)).find((r) => r !== undefined && (r.status === 'fail' || r.status === 'skip'));
    let verdict: Verdict;
    if (blocker) {
      const root = rootOf.get(blocker.id) ?? blocker;
      const how = (r: CheckResult) => (r.status === 'fail' ? 'failed' : 'was skipped');
      verdict = skip(root === blocker ? `skipped: needs ${blocker.id}, which ${how(blocker)}` : `skipped: needs ${blocker.id}; ${root.id} ${how(root)}`);
      rootOf.set(check.id, root);
    } else {
      verdict = check.judge(facts, ctx);
    }
    done.set(check.id, { id: check.id, group: check.group, ...verdict, docs: checkDocs(check.id) });
  }
  return [...done.values()];
}

export interface Summary {
  readonly pass: number;
  readonly warn: number;
  readonly fail: number;
  readonly skip: number;
}

export function summarise(results: readonly CheckResult[]): Summary {
  const count = (s: Status) => results.filter((r) => r.status === s).length;
  return { pass: count('pass'), warn: count('warn'), fail: count('fail'), skip: count('skip') };
}

/** 0 when nothing failed (warnings included), 1 when something did. Bad usage or config (2) never gets this far. */
export const exitCode = (results: readonly CheckResult[]): number => (results.some((r) => r.status === 'fail') ? 1 : 0);
