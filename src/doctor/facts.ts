// doctor's vocabulary: what was read (the facts), the context of a run, the verdicts and the helpers every check's
// fix uses. The checks themselves live in one file per thing they check; checks.ts lists them in order and runs them.
import type { Config } from '../config/config.js';
import { type Installed, type Legacy } from '../db/install.js';
import type { PolicySurvey, ResolvedPolicy } from '../db/policy.js';
import { shellQuote } from '../iam-policy.js';
import { type JsonObject, type Mutators } from '../mutators/index.js';
import { isObject } from '../mutators/json.js';
import { type EnvSource } from '../mutators/overrides.js';


export type Status = 'pass' | 'warn' | 'fail' | 'skip';

export interface Verdict {
  readonly status: Status;
  /** what the check saw, one line */
  readonly message: string;
  /** for warn and fail: the command that fixes it (or, where no one command can, the one that shows why) */
  readonly fix?: string;
}

/** A read that succeeded, or why it did not (the API's status code when there was one). */
export type Read<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: string; readonly status?: number };

export interface ServingCertificate {
  /** where it came from: served through the Service, or the TLS Secret */
  readonly source: string;
  /** PEM certificates, the serving certificate first */
  readonly chain: readonly string[];
}

/** --backfill's survey of the tagged experiments (backfillSql), with the first that is not where the rule puts it. */
export interface Drift {
  /** experiments carrying the mode's tag */
  readonly tagged: number;
  /** of those, how many have a location other than the rule's for their tag value */
  readonly due: number;
  /** how many carry a tag value the rule refuses (they keep their location) */
  readonly refused: number;
  readonly example?: { readonly experimentId: number; readonly location: string | null; readonly expected: string };
}

export interface DatabaseFacts {
  readonly database: string;
  readonly missingTables: readonly string[];
  readonly installed: Installed;
  readonly legacy?: Legacy;
  /** the location policy install-trigger would install now, resolved as it does (absent when MLflow's tables are) */
  readonly policy?: ResolvedPolicy;
  /** audit mode: the experiments our audit table recorded that still hold a location enforce would refuse */
  readonly audit?: PolicySurvey;
  readonly drift?: Drift;
  /** references that resolve through the artifact proxy (mlflow-artifacts:), which a destination switch must carry */
  /** mlflow-artifacts: references in the tables the login may read, and the columns it may not */
  readonly proxiedReferences?: { readonly total: number; readonly unreadable: readonly string[] };
}

export interface TrustFacts {
  readonly policy: Read<unknown>;
  /** the cluster's OIDC provider (host/path), and where it came from */
  readonly provider: Read<{ readonly value: string; readonly source: string }>;
}

export interface LeaseFacts {
  readonly holder?: string;
  /** epoch ms */
  readonly renewTime?: number;
  readonly leaseDurationSeconds?: number;
}

/** A list as doctor read it, page by page: what it kept, how many objects it looked at, and whether that was all. */
export interface Listing {
  readonly items: JsonObject[];
  readonly examined: number;
  /** false: doctor stopped at its cap (LIST_LIMITS) while more objects matched */
  readonly complete: boolean;
}

/** Everything doctor read, once. An absent field was not read (its check says why it skips). */
export interface DoctorFacts {
  /** the API server's version */
  readonly api: Read<string>;
  readonly webhookConfig: Read<JsonObject>;
  readonly service?: Read<JsonObject>;
  readonly endpointSlices?: Read<JsonObject[]>;
  readonly certificate?: Read<ServingCertificate>;
  readonly deployment: Read<JsonObject>;
  /** the Deployment as the API server admitted a dry-run update of it */
  readonly dryRun?: Read<JsonObject>;
  /** the Deployment's own ReplicaSets, of those matching its labels */
  readonly replicaSets?: Read<Listing>;
  /** the pods those ReplicaSets own, of those matching the Deployment's labels */
  readonly pods?: Read<Listing>;
  /** the ConfigMaps and Secrets the mlflow container takes all keys of (envFrom): their key names, never values */
  readonly envSources?: ReadonlyArray<{ readonly source: EnvSource; readonly optional: boolean; readonly keys: Read<string[]> }>;
  readonly serviceAccount: Read<JsonObject>;
  /** undefined: no database was given */
  readonly database?: Read<DatabaseFacts>;
  /** undefined: no --trust-policy */
  readonly trust?: TrustFacts;
  /** undefined: reconcile.enabled is false */
  readonly lease?: Read<LeaseFacts>;
  /** the EKS Pod Identity Agent's DaemonSet; undefined: credentials irsa (not read) */
  readonly podIdentityAgent?: Read<JsonObject>;
}

/** The DaemonSet of EKS's Pod Identity Agent add-on, which serves Pod Identity's credentials on every node. */
export const POD_IDENTITY_AGENT = { namespace: 'kube-system', name: 'eks-pod-identity-agent' } as const;

export interface DoctorContext {
  readonly config: Config;
  readonly mutators: Mutators;
  readonly now: number;
  /** the config file doctor was given, for fix commands that rerun a command with it */
  readonly configFile: string;
  /** the MutatingWebhookConfiguration's name, which is also the chart's object name prefix */
  readonly webhookConfig: string;
  /** the webhook's own namespace (the Helm release's) */
  readonly webhookNamespace: string;
  readonly tlsSecret: string;
}

export interface CheckDefinition {
  /** stable: scripts match on it (docs/operator-guide.md lists them all) */
  readonly id: string;
  readonly group: string;
  /** checks that must pass (or warn) first; when one failed or was skipped, this one is skipped and says which */
  readonly needs?: readonly string[];
  judge(facts: DoctorFacts, ctx: DoctorContext): Verdict;
}

export interface CheckResult extends Verdict {
  readonly id: string;
  readonly group: string;
  /** the check's own section of docs/troubleshooting.md: what it checks, why it fails, how to fix it */
  readonly docs: string;
}

/** Where the troubleshooting page is published; each check's section is `#` and its id without the dots. */
export const TROUBLESHOOTING_URL = 'https://github.com/mlflow-irsa-webhook/mlflow-irsa-webhook/blob/main/docs/troubleshooting.md';

/** A check's link: the page, and the anchor GitHub gives its heading `` `<id>` `` (lower case, dots dropped). */
export const checkDocs = (id: string): string => `${TROUBLESHOOTING_URL}#${id.toLowerCase().replace(/[^a-z0-9_ -]/g, '')}`;

export const GROUP_TITLES: Readonly<Record<string, string>> = {
  kubernetes: 'Kubernetes API',
  webhook: 'Webhook registered',
  admission: 'The API server calls the webhook',
  deployment: 'mlflow Deployment',
  pods: 'Running pods',
  serviceaccount: 'mlflow ServiceAccount',
  'pod-identity': 'EKS Pod Identity',
  trigger: 'Tracking-database trigger',
  migration: 'Artifacts from the replaced destination',
  iam: 'IAM trust policy',
  reconcile: 'Reconcile loop',
};

export const pass = (message: string): Verdict => ({ status: 'pass', message });
export const warn = (message: string, fix: string): Verdict => ({ status: 'warn', message, fix });
export const fail = (message: string, fix: string): Verdict => ({ status: 'fail', message, fix });
export const skip = (message: string): Verdict => ({ status: 'skip', message });

export const CLI = 'mlflow-irsa-webhook';
export const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
export const obj = (v: unknown): JsonObject => (isObject(v) ? v : {});
export const list = (v: unknown): JsonObject[] => (Array.isArray(v) ? v.filter(isObject) : []);
export const meta = (o: JsonObject) => obj(o.metadata);
export const plural = (n: number, one: string, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

/** A piece of a fix command we wrote ourselves (a placeholder, a command built already): put in as it is. */
export class Verbatim {
  constructor(readonly text: string) {}
}
export type Words = string | number | readonly string[] | Verbatim;

/**
 * A fix command: every interpolated value becomes shell words, single-quoted where it needs to be (a list: one word
 * per entry), so a name read from the cluster, the database or a file cannot break out of its place in the command.
 */
export function sh(parts: TemplateStringsArray, ...values: Words[]): string {
  let out = parts[0];
  values.forEach((v, i) => {
    const text = v instanceof Verbatim ? v.text : Array.isArray(v) ? v.map(shellQuote).join(' ') : shellQuote(String(v));
    out += text + parts[i + 1];
  });
  return out;
}

/** The Helm release that made the webhook's objects, from Helm's ownership annotation, else the object prefix. */
export function release(f: DoctorFacts, c: DoctorContext): string {
  const fromMwc = f.webhookConfig.ok ? str(obj(meta(f.webhookConfig.value).annotations)['meta.helm.sh/release-name']) : undefined;
  return fromMwc ?? c.webhookConfig;
}
export const helmUpgrade = (f: DoctorFacts, c: DoctorContext) =>
  sh`helm -n ${c.webhookNamespace} upgrade ${release(f, c)} charts/mlflow-irsa-webhook --reuse-values`;
export const namespaceFlag = (namespace?: string) => (namespace ? sh` -n ${namespace}` : '');
export const canI = (verb: string, what: string, namespace?: string) => sh`kubectl auth can-i ${verb} ${what}` + namespaceFlag(namespace);

/** A failed read as a verdict: not found is the object's absence; anything else says what the API answered. */
export function unreadable(read: { error: string; status?: number }, what: string, absent: Verdict, verb: string, resource: string, namespace?: string): Verdict {
  if (read.status === 404) return absent;
  if (read.status === 401 || read.status === 403) return fail(`may not read ${what}: ${read.error}`, canI(verb, resource, namespace));
  return fail(`could not read ${what}: ${read.error}`, sh`kubectl ${verb === 'list' ? 'get' : verb} ${resource}` + namespaceFlag(namespace));
}
