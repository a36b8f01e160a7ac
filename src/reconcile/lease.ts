// Leader election on a coordination.k8s.io/v1 Lease, so that one webhook replica acts and the others only watch.
// client-go's rules: a holder's claim expires leaseDuration after we last saw the record change, measured on our own
// clock (so skew between nodes does not matter); only then may another replica take it. Every write is a PUT of the
// object as read, with the read resourceVersion (two replicas racing for it cannot both win) and with only the spec's
// election fields changed, so the chart's labels and Helm's ownership annotations survive every renewal.
import { isNotFound, retryOnConflict, type Lease, type LeaseMetadata, type LeaseRecord } from '../k8s/client.js';
import { isObject } from '../mutators/json.js';

export type LeaseStep = 'renew' | 'acquire' | 'follow';

/** What to do with the Lease as read now. `observedAt` is our clock's time when the record last changed. */
export function leaseStep(record: LeaseRecord, identity: string, observedAt: number, now: number, durationMs: number): LeaseStep {
  if (record.holderIdentity === identity) return 'renew';
  if (!record.holderIdentity) return 'acquire';
  const duration = record.leaseDurationSeconds ? record.leaseDurationSeconds * 1000 : durationMs;
  return now - observedAt >= duration ? 'acquire' : 'follow';
}

export interface LeaseApi {
  readLease(namespace: string, name: string): Promise<Lease>;
  updateLease(read: Lease, record: LeaseRecord): Promise<Lease>;
  createLease(namespace: string, name: string, metadata: LeaseMetadata, record: LeaseRecord): Promise<Lease>;
}

export interface ElectorOptions {
  readonly namespace: string;
  readonly name: string;
  readonly identity: string;
  readonly durationMs: number;
  /** labels and annotations of a Lease we create because it is missing (the chart's, so Helm can adopt it) */
  readonly metadata?: LeaseMetadata;
  readonly now?: () => number;
}

/** Attempts per round: a 409 (another replica wrote since our read) means read again and decide again. */
const CONFLICT_TRIES = 3;

export class LeaseElector {
  private observed?: Lease;
  private observedAt = 0;
  /** our clock's time of our last successful write as holder */
  private renewedAt?: number;
  private readonly now: () => number;

  constructor(private readonly api: LeaseApi, private readonly o: ElectorOptions) {
    this.now = o.now ?? Date.now;
  }

  /** Leader only while our last renewal is younger than the lease duration: a partitioned leader stops acting in time. */
  get isLeader(): boolean {
    return this.leaderUntil !== undefined && this.now() < this.leaderUntil;
  }

  /** Our clock's time at which our claim lapses unless renewed; undefined when we do not hold it. */
  get leaderUntil(): number | undefined {
    return this.renewedAt === undefined ? undefined : this.renewedAt + this.o.durationMs;
  }

  /** The holder in the record last seen (ours or another replica's), if any. */
  get holder(): string | undefined {
    return this.observed?.record.holderIdentity;
  }

  /**
   * One round: read, then renew, take over, or follow; a missing Lease is created. A conflict re-reads and decides
   * again. Throws on other API errors (the caller logs them and stays follower).
   */
  async tick(): Promise<LeaseStep> {
    return retryOnConflict(CONFLICT_TRIES, () => this.round());
  }

  private async round(): Promise<LeaseStep> {
    let read: Lease;
    try {
      read = await this.api.readLease(this.o.namespace, this.o.name);
    } catch (err) {
      if (!isNotFound(err)) throw err;
      return this.create();
    }
    const now = this.now();
    if (!this.observed || read.resourceVersion !== this.observed.resourceVersion) {
      this.observed = read;
      this.observedAt = now;
    }
    const record = read.record;
    const step = leaseStep(record, this.o.identity, this.observedAt, now, this.o.durationMs);
    if (step === 'follow') {
      this.renewedAt = undefined;
      return step;
    }
    this.held(await this.api.updateLease(read, this.claim(record, step === 'acquire', now)), now);
    return step;
  }

  /** The record of the Lease held by us from `now`: taken (acquired now, one transition more when someone held it) or renewed. */
  private claim(record: LeaseRecord, taking: boolean, now: number): LeaseRecord {
    return {
      holderIdentity: this.o.identity,
      leaseDurationSeconds: this.durationSeconds,
      acquireTime: taking ? now : (record.acquireTime ?? now),
      renewTime: now,
      leaseTransitions: (record.leaseTransitions ?? 0) + (taking && record.holderIdentity ? 1 : 0),
    };
  }

  /** The Lease is missing (deleted by hand, or never made outside Helm): create it, holding it, with the chart's metadata. */
  private async create(): Promise<LeaseStep> {
    const now = this.now();
    this.held(await this.api.createLease(this.o.namespace, this.o.name, this.o.metadata ?? {}, this.claim({}, true, now)), now);
    return 'acquire';
  }

  private held(written: Lease, now: number): void {
    this.observed = written;
    this.observedAt = now;
    this.renewedAt = now;
  }

  private get durationSeconds(): number {
    return Math.ceil(this.o.durationMs / 1000);
  }

  /**
   * Gives the Lease up (on shutdown) so another replica need not wait out the duration. On a conflict it reads again
   * and releases only if the Lease is still ours.
   */
  async release(): Promise<void> {
    if (!this.isLeader || !this.observed) return;
    this.renewedAt = undefined;
    const first = this.observed;
    await retryOnConflict(CONFLICT_TRIES, async (n) => {
      const read = n === 1 ? first : await this.api.readLease(this.o.namespace, this.o.name);
      if (read.record.holderIdentity !== this.o.identity) return;
      this.observed = await this.api.updateLease(read, {
        holderIdentity: '',
        leaseDurationSeconds: 1,
        renewTime: this.now(),
        leaseTransitions: read.record.leaseTransitions,
      });
    });
  }

  /** Forgets leadership at once (after a failed renewal that might have been a conflict). */
  stepDown(): void {
    this.renewedAt = undefined;
  }
}

/** The environment variable the chart sets on the webhook pods: the Lease's labels and annotations, as JSON. */
export const LEASE_METADATA_ENV = 'RECONCILE_LEASE_METADATA';

/**
 * Parses RECONCILE_LEASE_METADATA, `{"labels":{…},"annotations":{…}}` with string values. Throws an error naming the
 * variable, the key and the rule; an unset or empty variable means none.
 */
export function parseLeaseMetadata(text: string | undefined): LeaseMetadata {
  if (text === undefined || text.trim() === '') return {};
  const fail = (problem: string) => new Error(`${LEASE_METADATA_ENV}: ${problem} (expected {"labels":{"key":"value"},"annotations":{"key":"value"}})`);
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw fail(`not valid JSON: ${(err as Error).message}`);
  }
  if (!isObject(doc)) throw fail('must be a JSON object');
  const out: Record<string, Record<string, string>> = {};
  for (const [key, map] of Object.entries(doc)) {
    if (key !== 'labels' && key !== 'annotations') throw fail(`unknown key ${JSON.stringify(key)}`);
    if (!isObject(map)) throw fail(`${key} must be an object`);
    for (const [k, v] of Object.entries(map)) if (typeof v !== 'string') throw fail(`${key}.${k} must be a string`);
    out[key] = { ...(map as Record<string, string>) };
  }
  return out;
}
