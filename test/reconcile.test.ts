// Specification of the self-healing decisions: needs repair?, rollout in progress?, and the restart backoff.
import t from 'tap';
import { loadConfig } from '../src/config.js';
import { buildMutators } from '../src/mutators/index.js';
import { backoffInterval, decideRepair, initialRepairState, lacksMutation, rolloutInProgress, type RepairState } from '../src/reconcile/decide.js';
import { exampleConfig, fixture } from './helpers/fixtures.js';

const mutators = buildMutators(loadConfig(exampleConfig));
const MIN = 600_000;
const policy = { minRestartIntervalMs: MIN, maxRestartIntervalMs: 8 * MIN };

t.test('lacksMutation asks the same mutator the webhook uses', async (t) => {
  const table: Array<[string, any, boolean]> = [
    ['Domino\'s unmutated Deployment', fixture('deployment-create').review.request.object, true],
    ['a mutated Deployment', fixture('deployment-update-restart-mutated').review.request.object, false],
    ['the golden of a partly mutated one', fixture('deployment-update-partial').patched, false],
    ['a partly mutated one', fixture('deployment-update-partial').review.request.object, true],
    ['no mlflow container (cannot be repaired by a restart)', fixture('deployment-create-no-container').review.request.object, false],
  ];
  for (const [what, obj, expected] of table) t.equal(lacksMutation(mutators.deployment, obj), expected, what);
  t.equal(lacksMutation(mutators.serviceAccount, fixture('serviceaccount-create').review.request.object), true, 'unannotated ServiceAccount');
  t.equal(lacksMutation(mutators.serviceAccount, fixture('serviceaccount-update').patched), false, 'annotated ServiceAccount');
  t.equal(lacksMutation(mutators.serviceAccount, fixture('serviceaccount-update').review.request.object), true, 'ServiceAccount with an old role');
});

t.test('rolloutInProgress follows kubectl rollout status', async (t) => {
  const dep = (generation: number, replicas: number, status: Record<string, unknown>) => ({ metadata: { generation }, spec: { replicas }, status });
  const done = { observedGeneration: 3, replicas: 2, updatedReplicas: 2, readyReplicas: 2, availableReplicas: 2 };
  const table: Array<[string, any, boolean, RegExp]> = [
    ['complete', dep(3, 2, done), false, /complete/],
    ['new generation not observed', dep(4, 2, done), true, /generation 4 not yet observed/],
    ['replicas not updated', dep(3, 2, { ...done, updatedReplicas: 1 }), true, /1 of 2 replicas updated/],
    ['old replicas terminating', dep(3, 2, { ...done, replicas: 3 }), true, /1 old replicas pending termination/],
    ['updated not available', dep(3, 2, { ...done, availableReplicas: 1 }), true, /1 of 2 updated replicas available/],
    ['deadline exceeded', dep(3, 2, { ...done, updatedReplicas: 1, conditions: [{ type: 'Progressing', status: 'False', reason: 'ProgressDeadlineExceeded' }] }), false, /deadline/],
    ['scaled to zero', dep(3, 0, { observedGeneration: 3 }), false, /complete/],
    ['no status yet', { metadata: { generation: 1 }, spec: {} }, true, /not yet observed/],
  ];
  for (const [what, obj, inProgress, reason] of table) {
    const r = rolloutInProgress(obj);
    t.equal(r.inProgress, inProgress, what);
    t.match(r.reason, reason, what);
  }
});

t.test('the backoff state machine', async (t) => {
  t.same([0, 1, 2, 3, 4, 5].map((n) => backoffInterval(n, policy) / MIN), [1, 1, 2, 4, 8, 8], 'min, min, 2·min, 4·min … capped');

  const unmutated = { lacksMutation: true, rolloutInProgress: false };
  let s: RepairState = initialRepairState;
  let now = 1_000_000;
  const step = (observed: typeof unmutated & { rolloutReason?: string }, at: number) => {
    const d = decideRepair(s, observed, at, policy);
    s = d.state;
    return d;
  };
  t.equal(step(unmutated, now).action, 'restart', 'first sight of an unmutated Deployment restarts at once');
  t.equal(step({ lacksMutation: true, rolloutInProgress: true, rolloutReason: '0 of 1 replicas updated' }, now + 1000).action, 'wait', 'never during a rollout');
  const early = step(unmutated, now + MIN - 1);
  t.equal(early.action, 'wait', 'the repair did not stick: wait at least min');
  t.equal(early.notBefore, now + MIN);
  t.match(early.reason, /backing off until/);
  t.equal(step(unmutated, now + MIN).action, 'restart', 'second restart after min');
  now += MIN;
  t.equal(step(unmutated, now + 2 * MIN - 1).action, 'wait', 'then 2·min');
  t.equal(step(unmutated, now + 2 * MIN).action, 'restart');
  t.equal(s.consecutive, 3);
  now += 2 * MIN;
  const ok = step({ lacksMutation: false, rolloutInProgress: false }, now + 10);
  t.equal(ok.action, 'none', 'a mutated Deployment needs nothing');
  t.equal(s.consecutive, 0, 'and resets the streak');
  t.equal(step(unmutated, now + 20).action, 'wait', 'even after a repair that stuck, at most one restart per min');
  t.equal(step(unmutated, now + MIN).action, 'restart');

  // no restart loop: an hour of checks every minute against a webhook that never comes back sends few restarts
  s = initialRepairState;
  let restarts = 0;
  for (let minute = 0; minute < 24 * 60; minute++) if (step(unmutated, minute * 60_000).action === 'restart') restarts++;
  t.equal(restarts, 5 + Math.floor((24 * 60 - 1 - 150) / 80), 'a day of 1-minute checks: restarts at 0, 10, 30, 70, 150 min, then every 80 min');
});
