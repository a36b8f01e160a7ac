// The reconcile loop inside `serve`: while this replica leads, it watches (and polls) the target Deployment and
// ServiceAccount and repairs what rolled out without the mutation. Decisions come from decide.ts; this file only
// schedules, calls the API and logs.
import type { Config } from '../config/config.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../webhook/metrics.js';
import type { Mutators, JsonObject } from '../mutators/index.js';
import type { LeaseMetadata } from '../k8s/client.js';
import { isConflict, isForbidden, isNotFound, retryOnConflict, type KubeClient } from '../k8s/client.js';
import { restartPatch } from '../k8s/restart-target.js';
import { serviceAccountPlan, serviceAccountRepair } from '../mutators/service-account.js';
import { decideRepair, initialRepairState, lacksMutation, rolloutInProgress, type RepairState } from './decide.js';
import { LeaseElector } from './lease.js';

export type ReconcileApi = Pick<KubeClient,
  'readDeployment' | 'patchDeployment' | 'readServiceAccount' | 'patchServiceAccount' | 'readLease' | 'updateLease' | 'createLease' | 'watchDeployment'>;

export interface ReconcilerOptions {
  readonly config: Config;
  readonly mutators: Mutators;
  readonly api: ReconcileApi;
  readonly logger: Logger;
  readonly metrics: Metrics;
  /** Lease holder identity: the pod name */
  readonly identity: string;
  /** where the Lease lives: the webhook's own namespace */
  readonly leaseNamespace: string;
  /** labels and annotations of the Lease when the loop has to create it (the chart's, so Helm can adopt it) */
  readonly leaseMetadata?: LeaseMetadata;
  readonly now?: () => number;
  /** a check that takes longer (an API call that never returns) is given up, so later checks are not blocked */
  readonly checkTimeoutMs?: number;
}

export class Reconciler {
  private state: RepairState = initialRepairState;
  private readonly elector: LeaseElector;
  private readonly log: Logger;
  private readonly now: () => number;
  private timers: NodeJS.Timeout[] = [];
  private stopWatch?: () => void;
  private watchRetry?: NodeJS.Timeout;
  private running = false;
  private pending?: JsonObject | 'read';
  private checking?: Promise<void>;
  private started = false;
  private stopped = false;
  /** the ServiceAccount's repair, from the mutation's own plan: our annotations set, IRSA's removed in pod-identity */
  private readonly saRepair: JsonObject;
  private lastLeaseError?: string;
  /** what the loop last acted on: leading (watch running, checks acting) or not */
  private leading = false;
  /** fires when our claim would lapse, so a leader whose renewals hang notices it stopped leading */
  private expiry?: NodeJS.Timeout;

  constructor(private readonly o: ReconcilerOptions) {
    this.now = o.now ?? Date.now;
    this.saRepair = serviceAccountRepair(serviceAccountPlan(o.config));
    this.log = o.logger.child({ component: 'reconcile' });
    this.elector = new LeaseElector(o.api, {
      namespace: o.leaseNamespace,
      name: o.config.reconcile.leaseName,
      identity: o.identity,
      durationMs: o.config.reconcile.leaseDurationSeconds * 1000,
      metadata: o.leaseMetadata,
      now: this.now,
    });
  }

  get isLeader(): boolean {
    return this.elector.isLeader;
  }

  start(): void {
    if (this.started || this.stopped) return;
    this.started = true;
    const r = this.o.config.reconcile;
    this.log.info({ identity: this.o.identity, lease: `${this.o.leaseNamespace}/${r.leaseName}`, intervalSeconds: r.intervalSeconds }, 'reconcile loop started');
    // client-go renews at about a third of the duration, leaving two more tries before the claim lapses
    const renewMs = Math.max(500, (r.leaseDurationSeconds * 1000) / 3);
    this.timers.push(setInterval(() => void this.leaseTick(), renewMs), setInterval(() => this.request('read'), r.intervalSeconds * 1000));
    for (const t of this.timers) t.unref();
    void this.leaseTick();
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    clearTimeout(this.expiry);
    this.leading = false;
    this.endWatch();
    // a check stuck on an unanswered API call must not hold up shutdown: the drain has its own deadline
    await Promise.race([this.checking, new Promise((resolve) => setTimeout(resolve, 5000).unref())]);
    // Releasing lets another replica take over at once; an API server that does not answer must not hold up the exit.
    const released = this.elector.release().then(() => true, (err: Error) => {
      this.log.warn({ reason: err.message }, 'could not release the Lease; another replica takes over when it expires');
      return true;
    });
    const gaveUp = new Promise<false>((resolve) => setTimeout(() => resolve(false), 3000).unref());
    if (!(await Promise.race([released, gaveUp]))) this.log.warn('releasing the Lease took too long; another replica takes over when it expires');
    this.o.metrics.leader.set(0);
    this.log.info('reconcile loop stopped');
  }

  private async leaseTick(): Promise<void> {
    if (this.stopped) return;
    try {
      await this.elector.tick();
      this.lastLeaseError = undefined;
    } catch (err) {
      if (isConflict(err)) this.elector.stepDown();
      const msg = isConflict(err) ? 'lost the race for the Lease'
        : isForbidden(err) ? `not allowed to read, renew or create the Lease ${this.leaseRef} (the chart's Role grants it: helm upgrade restores it); not acting`
          : 'could not read or renew the Lease';
      // the same failure every few seconds (no RBAC, API down) is logged once at warn, then at debug until it changes
      const reason = (err as Error).message;
      if (reason !== this.lastLeaseError) this.log.warn({ reason }, msg);
      else this.log.debug({ reason }, msg);
      this.lastLeaseError = reason;
    }
    this.noteLeadership();
  }

  private get leaseRef(): string {
    return `${this.o.leaseNamespace}/${this.o.config.reconcile.leaseName}`;
  }

  /** Acts on a change of leadership: after every Lease round, and when our claim lapses without a renewal. */
  private noteLeadership(): void {
    if (this.stopped) return;
    const is = this.elector.isLeader;
    this.o.metrics.leader.set(is ? 1 : 0);
    clearTimeout(this.expiry);
    if (is) {
      // +1 ms: at exactly leaderUntil the claim has lapsed (isLeader compares with <)
      this.expiry = setTimeout(() => this.noteLeadership(), Math.max(0, (this.elector.leaderUntil ?? 0) - this.now()) + 1);
      this.expiry.unref();
    }
    if (is && !this.leading) {
      this.log.info({ identity: this.o.identity }, 'leading: this replica now checks and repairs the target');
      this.leading = true;
      this.beginWatch();
      this.request('read');
    } else if (!is && this.leading) {
      this.leading = false;
      const holder = this.elector.holder;
      const how = holder && holder !== this.o.identity ? `taken by ${holder}`
        : this.lastLeaseError ? `the renewal failed: ${this.lastLeaseError}`
          : `expired: not renewed within ${this.o.config.reconcile.leaseDurationSeconds} s, the API server did not answer`;
      this.log.warn({ lease: this.leaseRef, holder: holder ?? null }, `lost the Lease (${how}); not acting until it is regained`);
      this.endWatch();
    }
  }

  private beginWatch(): void {
    if (this.stopWatch || this.stopped) return;
    const { namespace, deployment } = this.o.config;
    const stopper = { stop: (() => {}) as () => void, ended: false };
    this.stopWatch = () => {
      stopper.ended = true;
      stopper.stop();
    };
    this.o.api.watchDeployment(namespace, deployment, (type, object) => {
      if (type === 'ADDED' || type === 'MODIFIED') this.request(object);
    }, (err) => {
      if (stopper.ended) return;
      this.stopWatch = undefined;
      this.log.info({ reason: err?.message ?? 'stream closed' }, 'watch ended; the poll covers meanwhile, and the watch restarts');
      this.scheduleWatch();
    }).then((stop) => {
      stopper.stop = stop;
      if (stopper.ended) stop();
    }, (err: Error) => {
      this.stopWatch = undefined;
      this.log.warn({ reason: err.message }, 'could not start the watch; polling meanwhile');
      this.scheduleWatch();
    });
  }

  private scheduleWatch(): void {
    if (this.stopped || this.watchRetry) return;
    this.watchRetry = setTimeout(() => {
      this.watchRetry = undefined;
      if (this.elector.isLeader) this.beginWatch();
    }, Math.min(5000, this.o.config.reconcile.intervalSeconds * 1000));
    this.watchRetry.unref();
  }

  private endWatch(): void {
    if (this.watchRetry) clearTimeout(this.watchRetry);
    this.watchRetry = undefined;
    this.stopWatch?.();
    this.stopWatch = undefined;
  }

  /** Queues a check; checks never overlap, and a burst of events collapses into one more check with the newest object. */
  private request(what: JsonObject | 'read'): void {
    if (this.stopped || !this.elector.isLeader) return;
    this.pending = what;
    if (this.running) return;
    this.running = true;
    this.checking = (async () => {
      while (this.pending !== undefined && !this.stopped) {
        const next = this.pending;
        this.pending = undefined;
        const limit = this.o.checkTimeoutMs ?? 30_000;
        let timer: NodeJS.Timeout | undefined;
        const timedOut = new Promise<'timeout'>((resolve) => { timer = setTimeout(() => resolve('timeout'), limit); });
        if (await Promise.race([this.check(next === 'read' ? undefined : next), timedOut]) === 'timeout') {
          this.log.warn({ timeoutMs: limit }, 'reconcile check did not finish (the API server does not answer); going on without it');
        }
        clearTimeout(timer);
      }
      this.running = false;
    })();
  }

  /** One pass over both objects. Exposed for tests through `checkNow`. */
  private async check(seen?: JsonObject): Promise<void> {
    if (!this.elector.isLeader) return;
    try {
      // the ServiceAccount first: with pod-identity, a pod restarted while it still names a role gets web identity again
      await this.checkServiceAccount();
      await this.checkDeployment(seen);
      this.o.metrics.lastCheck.set(this.now() / 1000);
    } catch (err) {
      this.log.warn({ reason: (err as Error).message }, 'reconcile check failed; retrying at the next event or interval');
    }
  }

  private async checkDeployment(seen?: JsonObject): Promise<void> {
    const { namespace, deployment: name, reconcile } = this.o.config;
    const where = { object: `deployment ${namespace}/${name}` };
    const live = seen ?? await this.readLive(() => this.o.api.readDeployment(namespace, name), where);
    if (!live) return;
    const rollout = rolloutInProgress(live);
    const decision = decideRepair(this.state, {
      lacksMutation: lacksMutation(this.o.mutators.deployment, live),
      rolloutInProgress: rollout.inProgress,
      rolloutReason: rollout.reason,
    }, this.now(), { minRestartIntervalMs: reconcile.minRestartIntervalSeconds * 1000, maxRestartIntervalMs: reconcile.maxRestartIntervalSeconds * 1000 });
    if (decision.action === 'none') {
      this.state = decision.state;
      this.log.debug({ ...where, decision: 'none', reason: decision.reason }, 'reconcile decision');
      return;
    }
    if (decision.action === 'wait') {
      this.log.info({ ...where, decision: decision.action, reason: decision.reason }, 'reconcile decision');
      return;
    }
    const { patch, restartedAt } = restartPatch(new Date(this.now()));
    // First the same patch as a dry run: the API server admits it through the webhook without storing it. If it comes
    // back unmutated, the API server cannot reach the webhook yet (a replica just started, endpoints not ready, a
    // caBundle in flux), and a real restart now would roll out unmutated again; so wait, without spending the backoff.
    const rehearsal = await retryOnConflict(3, () => this.o.api.patchDeployment(namespace, name, patch, { dryRun: true }));
    if (lacksMutation(this.o.mutators.deployment, rehearsal)) {
      this.log.info({ ...where, decision: 'wait', reason: 'unmutated, but a dry-run restart is admitted without the mutation: the API server does not reach the webhook yet' }, 'reconcile decision');
      return;
    }
    this.log.info({ ...where, decision: decision.action, reason: decision.reason }, 'reconcile decision');
    const admitted = await retryOnConflict(3, () => this.o.api.patchDeployment(namespace, name, patch), (err, n) =>
      this.log.info({ ...where, attempt: n, reason: err.message }, 'restart patch conflicted; retrying'));
    // Counted as a try whether or not it sticks: the backoff must grow when the webhook is still unreachable.
    this.state = decision.state;
    this.o.metrics.repairs.inc({ object: 'deployment' });
    const stuck = !lacksMutation(this.o.mutators.deployment, admitted);
    this.log.info({ ...where, restartedAt, mutated: stuck }, stuck
      ? 'restarted: the new pod template carries the mutation'
      : 'restarted, but admitted without the mutation (the API server did not reach the webhook); backing off');
  }

  private async checkServiceAccount(): Promise<void> {
    const { namespace, serviceAccount: name } = this.o.config;
    const where = { object: `serviceaccount ${namespace}/${name}` };
    const live = await this.readLive(() => this.o.api.readServiceAccount(namespace, name), where);
    if (!live || !lacksMutation(this.o.mutators.serviceAccount, live)) return;
    const reason = this.o.config.credentials === 'irsa' ? 'the role-arn annotation is missing or names another role'
      : 'it carries IRSA\'s role-arn annotation, whose web identity botocore would use before Pod Identity';
    this.log.info({ ...where, decision: 'annotate', reason }, 'reconcile decision');
    await this.o.api.patchServiceAccount(namespace, name, structuredClone(this.saRepair));
    this.o.metrics.repairs.inc({ object: 'serviceaccount' });
  }

  /** The live object, or undefined when it does not exist (yet): nothing to repair then. */
  private async readLive(read: () => Promise<JsonObject>, where: object): Promise<JsonObject | undefined> {
    try {
      return await read();
    } catch (err) {
      if (!isNotFound(err)) throw err;
      this.log.debug(where, 'not found; nothing to check');
      return undefined;
    }
  }

  /** Runs the lease round and one check now, and waits for both: tests drive the loop with this instead of timers. */
  async checkNow(): Promise<void> {
    await this.leaseTick();
    this.request('read');
    await this.checking;
  }
}
