// Leader election on a coordination.k8s.io/v1 Lease, so that one webhook replica acts and the others only watch.
// client-go's rules: a holder's claim expires leaseDuration after we last saw the record change, measured on our own
// clock (so skew between nodes does not matter); only then may another replica take it, and every write is a PUT
// with the read resourceVersion, so two replicas racing for it cannot both win.
import type { LeaseRecord } from '../k8s/client.js';

export type LeaseStep = 'renew' | 'acquire' | 'follow';

/** What to do with the Lease as read now. `observedAt` is our clock's time when the record last changed. */
export function leaseStep(record: LeaseRecord, identity: string, observedAt: number, now: number, durationMs: number): LeaseStep {
  if (record.holderIdentity === identity) return 'renew';
  if (!record.holderIdentity) return 'acquire';
  const duration = record.leaseDurationSeconds ? record.leaseDurationSeconds * 1000 : durationMs;
  return now - observedAt >= duration ? 'acquire' : 'follow';
}

export interface LeaseApi {
  readLease(namespace: string, name: string): Promise<LeaseRecord>;
  replaceLease(namespace: string, name: string, record: LeaseRecord): Promise<LeaseRecord>;
}

export interface ElectorOptions {
  readonly namespace: string;
  readonly name: string;
  readonly identity: string;
  readonly durationMs: number;
  readonly now?: () => number;
}

export class LeaseElector {
  private observed?: LeaseRecord;
  private observedAt = 0;
  /** our clock's time of our last successful write as holder */
  private renewedAt?: number;
  private readonly now: () => number;

  constructor(private readonly api: LeaseApi, private readonly o: ElectorOptions) {
    this.now = o.now ?? Date.now;
  }

  /** Leader only while our last renewal is younger than the lease duration: a partitioned leader stops acting in time. */
  get isLeader(): boolean {
    return this.renewedAt !== undefined && this.now() - this.renewedAt < this.o.durationMs;
  }

  get holder(): string | undefined {
    return this.observed?.holderIdentity;
  }

  /** One round: read, then renew, take over, or follow. Throws on API errors (the caller logs them and stays follower). */
  async tick(): Promise<LeaseStep> {
    const record = await this.api.readLease(this.o.namespace, this.o.name);
    const now = this.now();
    if (!this.observed || record.resourceVersion !== this.observed.resourceVersion) {
      this.observed = record;
      this.observedAt = now;
    }
    const step = leaseStep(record, this.o.identity, this.observedAt, now, this.o.durationMs);
    if (step === 'follow') {
      this.renewedAt = undefined;
      return step;
    }
    const taking = step === 'acquire';
    const written = await this.api.replaceLease(this.o.namespace, this.o.name, {
      holderIdentity: this.o.identity,
      leaseDurationSeconds: Math.ceil(this.o.durationMs / 1000),
      acquireTime: taking ? now : (record.acquireTime ?? now),
      renewTime: now,
      leaseTransitions: (record.leaseTransitions ?? 0) + (taking && record.holderIdentity ? 1 : 0),
      resourceVersion: record.resourceVersion,
    });
    this.observed = written;
    this.observedAt = now;
    this.renewedAt = now;
    return step;
  }

  /** Gives the Lease up (on shutdown) so another replica need not wait out the duration. */
  async release(): Promise<void> {
    if (!this.isLeader || !this.observed) return;
    this.renewedAt = undefined;
    await this.api.replaceLease(this.o.namespace, this.o.name, {
      holderIdentity: '',
      leaseDurationSeconds: 1,
      renewTime: this.now(),
      leaseTransitions: this.observed.leaseTransitions,
      resourceVersion: this.observed.resourceVersion,
    });
  }

  /** Forgets leadership at once (after a failed renewal that might have been a conflict). */
  stepDown(): void {
    this.renewedAt = undefined;
  }
}
