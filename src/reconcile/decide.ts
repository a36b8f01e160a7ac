// The reconcile loop's decisions as pure functions: does the live object lack the mutation, is a rollout running,
// and may we restart now (the backoff state machine). No I/O: the loop in loop.ts acts on what these return.
import { planPatch, type Mutate, type JsonObject } from '../mutators/index.js';
import { isObject } from '../mutators/json.js';

/** True when the mutator would still change the object: the same question the webhook answers, one source of truth. */
export function lacksMutation(mutate: Mutate, live: JsonObject): boolean {
  return planPatch(mutate, live).patch.length > 0;
}

const num = (v: unknown): number | undefined => (typeof v === 'number' ? v : undefined);

/**
 * Whether a rollout of the Deployment is still under way, by the rules `kubectl rollout status` uses. A rollout that
 * exceeded its progress deadline has stopped progressing and counts as finished (failed), so a repair may follow.
 */
export function rolloutInProgress(deployment: JsonObject): { inProgress: boolean; reason: string } {
  const meta = isObject(deployment.metadata) ? deployment.metadata : {};
  const spec = isObject(deployment.spec) ? deployment.spec : {};
  const status = isObject(deployment.status) ? deployment.status : {};
  const generation = num(meta.generation) ?? 0;
  const observed = num(status.observedGeneration) ?? 0;
  if (observed < generation) return { inProgress: true, reason: `generation ${generation} not yet observed (observed ${observed})` };
  const conditions = Array.isArray(status.conditions) ? status.conditions : [];
  const progressing = conditions.find((c) => isObject(c) && c.type === 'Progressing') as JsonObject | undefined;
  if (progressing?.reason === 'ProgressDeadlineExceeded') return { inProgress: false, reason: 'rollout exceeded its progress deadline' };
  const desired = num(spec.replicas) ?? 1;
  const updated = num(status.updatedReplicas) ?? 0;
  const total = num(status.replicas) ?? 0;
  const available = num(status.availableReplicas) ?? 0;
  if (updated < desired) return { inProgress: true, reason: `${updated} of ${desired} replicas updated` };
  if (total > updated) return { inProgress: true, reason: `${total - updated} old replicas pending termination` };
  if (available < updated) return { inProgress: true, reason: `${available} of ${updated} updated replicas available` };
  return { inProgress: false, reason: 'rollout complete' };
}

export interface RepairState {
  /** restarts in a row that did not leave the Deployment mutated */
  readonly consecutive: number;
  /** epoch ms of the last restart we sent */
  readonly lastRestartAt?: number;
}

export const initialRepairState: RepairState = { consecutive: 0 };

export interface RepairPolicy {
  readonly minRestartIntervalMs: number;
  /** the backoff never waits longer than this */
  readonly maxRestartIntervalMs: number;
}

export type RepairAction = 'none' | 'wait' | 'restart';

export interface RepairDecision {
  readonly action: RepairAction;
  readonly reason: string;
  readonly state: RepairState;
  /** with 'wait' for backoff: epoch ms from which a restart is allowed */
  readonly notBefore?: number;
}

/**
 * The least time between our last restart and the next one: min after a restart that stuck or a first one that did
 * not, then 2·min, 4·min … while restarts keep not sticking, capped at max.
 */
export function backoffInterval(consecutive: number, policy: RepairPolicy): number {
  return Math.min(policy.maxRestartIntervalMs, policy.minRestartIntervalMs * 2 ** Math.max(consecutive - 1, 0));
}

/**
 * One step of the backoff state machine. A mutated Deployment resets the streak; an unmutated one is restarted
 * unless a rollout is running or the last restart was too recent for the current streak.
 */
export function decideRepair(
  state: RepairState,
  observed: { lacksMutation: boolean; rolloutInProgress: boolean; rolloutReason?: string },
  now: number,
  policy: RepairPolicy,
): RepairDecision {
  if (!observed.lacksMutation) {
    return { action: 'none', reason: 'the pod template carries the mutation', state: { consecutive: 0, lastRestartAt: state.lastRestartAt } };
  }
  if (observed.rolloutInProgress) {
    return { action: 'wait', reason: `unmutated, but a rollout is in progress (${observed.rolloutReason ?? 'rollout'}); not restarting during it`, state };
  }
  const interval = backoffInterval(state.consecutive, policy);
  if (state.lastRestartAt !== undefined && now - state.lastRestartAt < interval) {
    const notBefore = state.lastRestartAt + interval;
    return {
      action: 'wait',
      reason: `unmutated after ${state.consecutive} restart(s); backing off until ${new Date(notBefore).toISOString()}`,
      state,
      notBefore,
    };
  }
  return {
    action: 'restart',
    reason: state.consecutive === 0 ? 'the pod template lacks the mutation' : `still unmutated after ${state.consecutive} restart(s)`,
    state: { consecutive: state.consecutive + 1, lastRestartAt: now },
  };
}
