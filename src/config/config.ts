// Reads the config file once, validates it against the one schema, fills defaults and returns a frozen, typed Config.
import { readFileSync } from 'node:fs';
import { posix } from 'node:path';
import type { ErrorObject } from 'ajv';
import { parse as parseYaml } from 'yaml';
// The schema in config-schema.ts, compiled ahead of time by ajv (allErrors, useDefaults, verbose): loading ajv and
// compiling at start-up cost ~110 ms of every command's start. `npm run gen:validator` rewrites it; a test checks it.
import validate from './validator.gen.js';
import {
  LENGTH_REASON, MAX_LOCATION_LENGTH, defaultAllowedPrefix, hasDotSegment, locationPath, projectBase, withSlash, type LocationStyle,
} from './artifact-location.js';
import { deepFreeze } from '../mutators/json.js';
import { POD_IDENTITY_ENV, type CredentialsMode } from '../mutators/overrides.js';

/** How MLflow gets its role: IRSA's web identity, or an EKS Pod Identity association. */
export type { CredentialsMode };

export type TriggerMode = 'project-id' | 'custom-location';

/** What the trigger does with a location written without our tag that it would refuse: nothing, record it, or refuse it. */
export type LocationPolicyMode = 'off' | 'audit' | 'enforce';
export const LOCATION_POLICY_MODES: readonly LocationPolicyMode[] = ['off', 'audit', 'enforce'];
/** The policy when neither trigger.locationPolicy nor the deprecated trigger.enforceLocations is set. */
export const DEFAULT_LOCATION_POLICY: LocationPolicyMode = 'audit';

export interface TokenConfig {
  readonly audience: string;
  readonly expirationSeconds: number;
  readonly volumeName: string;
  readonly mountPath: string;
  readonly defaultMode: number;
}

export interface TriggerConfig {
  readonly mode: TriggerMode;
  readonly locationStyle: LocationStyle;
  readonly projectTag: string;
  readonly locationTag: string;
  readonly prefix: string;
  /** never empty after loading: defaults to [<artifactsDestination>/] (direct) or [mlflow-artifacts:/] (proxied) */
  readonly allowedLocationPrefixes: readonly string[];
  readonly schema: string;
  /** locations written directly (not through our tag) that are not empty, MLflow's default, or allowed: let through, recorded, or refused */
  readonly locationPolicy: LocationPolicyMode;
  /** the deprecated key as the file gave it (true is enforce, false is off), so commands can say it is deprecated */
  readonly enforceLocations?: boolean;
  /** MLflow's default artifact root; unset, install-trigger derives it from experiment 0 */
  readonly defaultArtifactRoot?: string;
}

export interface ServerConfig {
  readonly port: number;
  readonly host: string;
  readonly tlsMinVersion: 'TLSv1.2' | 'TLSv1.3';
  readonly bodyLimitBytes: number;
  readonly requestTimeoutSeconds: number;
  readonly idleTimeoutSeconds: number;
  readonly drainSeconds: number;
  readonly maxConnections: number;
  readonly maxConnectionsPerSource: number;
  readonly certReloadSeconds: number;
  /** 0: no plain-HTTP metrics listener */
  readonly metricsPort: number;
  readonly metricsMaxConnections: number;
  readonly metricsMaxConnectionsPerSource: number;
  readonly metricsIdleTimeoutSeconds: number;
}

export interface ReconcileConfig {
  readonly enabled: boolean;
  readonly intervalSeconds: number;
  readonly minRestartIntervalSeconds: number;
  readonly maxRestartIntervalSeconds: number;
  readonly leaseName: string;
  readonly leaseDurationSeconds: number;
}

export interface MigrationConfig {
  /** old artifacts destinations, without a trailing slash, whose copy the operator has finished (migrate-artifacts) */
  readonly completedFrom: readonly string[];
}

export interface Config {
  readonly roleArn: string;
  readonly credentials: CredentialsMode;
  /** without a trailing slash */
  readonly artifactsDestination: string;
  readonly namespace: string;
  readonly deployment: string;
  readonly container: string;
  readonly serviceAccount: string;
  readonly region?: string;
  readonly token: TokenConfig;
  readonly removeEnv: readonly string[];
  readonly trigger: TriggerConfig;
  readonly migration: MigrationConfig;
  readonly server: ServerConfig;
  readonly reconcile: ReconcileConfig;
  readonly logLevel: string;
}

/** The EKS pod-identity webhook's token volume and the directory it mounts it on. */
const EKS_TOKEN_VOLUME = 'aws-iam-token';
const EKS_TOKEN_DIR = '/var/run/secrets/eks.amazonaws.com/serviceaccount';

/** Env names the Deployment mutator owns; removing one of them would fight the mutation. */
export const OWNED_ENV = ['AWS_ROLE_ARN', 'AWS_WEB_IDENTITY_TOKEN_FILE', 'MLFLOW_ARTIFACTS_DESTINATION', 'AWS_REGION', 'AWS_DEFAULT_REGION', 'AWS_STS_REGIONAL_ENDPOINTS'];

export class ConfigError extends Error {
  /** `what` names the kind of file in the message: the config, or the chart's values (chart-values.ts) */
  constructor(readonly source: string, readonly problems: string[], what = 'config') {
    super(`invalid ${what} ${source}:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}


function keyOf(path: string): string {
  return path.replace(/^\//, '').replace(/\//g, '.') || '(top level)';
}

function valueAt(root: unknown, pointer: string): unknown {
  let cur: unknown = root;
  for (const part of pointer.split('/').slice(1)) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string, unknown>)[part.replace(/~1/g, '/').replace(/~0/g, '~')];
  }
  return cur;
}

function show(value: unknown): string {
  const text = JSON.stringify(value);
  if (text === undefined) return String(value);
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

function describe(error: ErrorObject, data: unknown): string {
  const schema = error.parentSchema as { description?: string } | undefined;
  const rule = schema?.description ? ` (${schema.description})` : '';
  switch (error.keyword) {
    case 'additionalProperties': {
      const extra = (error.params as { additionalProperty: string }).additionalProperty;
      const base = keyOf(error.instancePath);
      const key = base === '(top level)' ? extra : `${base}.${extra}`;
      return `${key}: unknown key; allowed keys here are ${Object.keys((error.parentSchema as { properties: object }).properties).join(', ')}`;
    }
    case 'required': {
      const missing = (error.params as { missingProperty: string }).missingProperty;
      const base = keyOf(error.instancePath);
      const props = (error.parentSchema as { properties?: Record<string, { description?: string }> }).properties;
      const desc = props?.[missing]?.description;
      return `${base === '(top level)' ? missing : `${base}.${missing}`}: is required${desc ? ` (${desc})` : ''}`;
    }
    case 'pattern': {
      const value = valueAt(data, error.instancePath);
      // an S3 URI's pattern is mostly the bucket naming rule, which a description of the key does not state
      const bucket = typeof value === 'string' && value.startsWith('s3://') ? `; ${BUCKET_RULE}` : '';
      return `${keyOf(error.instancePath)}: ${show(value)} is not valid${rule ? `${rule.slice(0, -1)}${bucket})` : ` (must match ${(error.params as { pattern: string }).pattern})`}`;
    }
    case 'enum':
      return `${keyOf(error.instancePath)}: ${show(valueAt(data, error.instancePath))} is not one of ${(error.params as { allowedValues: unknown[] }).allowedValues.map((v) => show(v)).join(', ')}${rule}`;
    default:
      return `${keyOf(error.instancePath)}: ${show(valueAt(data, error.instancePath))} ${error.message ?? 'is invalid'}${rule}`;
  }
}

const IPV4 = /^\d+\.\d+\.\d+\.\d+$/;

/** S3's bucket naming rule as an error states it (the finer rules are bucketProblem's). */
const BUCKET_RULE = 'a bucket name is 3 to 63 lowercase letters, digits, "." and "-", beginning and ending with a letter or digit; '
  + 'a prefix after it uses letters, digits, ".", "_" and "-"';

/** The S3 bucket rules a RE2 pattern cannot say. Returns the problem, or undefined. */
export function bucketProblem(uri: string): string | undefined {
  const bucket = uri.slice('s3://'.length).split('/')[0];
  if (bucket.includes('..')) return `bucket "${bucket}" has two adjacent periods`;
  if (IPV4.test(bucket)) return `bucket "${bucket}" is formatted as an IP address`;
  if (bucket.startsWith('xn--') || bucket.startsWith('sthree-')) return `bucket "${bucket}" starts with a reserved prefix (xn--, sthree-)`;
  if (bucket.endsWith('-s3alias') || bucket.endsWith('--ol-s3')) return `bucket "${bucket}" ends with a reserved suffix (-s3alias, --ol-s3)`;
  return undefined;
}

/** A destination URI without its trailing slash, the one spelling config values are compared in. */
export function stripSlash(uri: string): string {
  return uri.endsWith('/') ? uri.slice(0, -1) : uri;
}

/** A location base must leave room for at least one more character within MLflow's limit on locations. */
function roomProblem(key: string, value: string, base: string, what: string): string | undefined {
  if (base.length < MAX_LOCATION_LENGTH) return undefined;
  return `${key}: ${show(value)} is not valid (${what} "${base}" is ${base.length} characters, which leaves no room within the `
    + `${MAX_LOCATION_LENGTH}-character limit on experiment locations: ${LENGTH_REASON})`;
}

/** Checks across keys and the rules no schema keyword can express. */
function refine(raw: Record<string, any>): string[] {
  const problems: string[] = [];
  const dest = stripSlash(raw.artifactsDestination);
  const prefixes: Array<[string, string]> = (raw.trigger.allowedLocationPrefixes as string[]).map((p, i) => [`trigger.allowedLocationPrefixes.${i}`, p]);
  const completed: Array<[string, string]> = (raw.migration.completedFrom as string[]).map((p, i) => [`migration.completedFrom.${i}`, p]);
  for (const [key, uri] of [['artifactsDestination', raw.artifactsDestination], ...prefixes, ...completed]) {
    const problem = uri.startsWith('s3://') ? bucketProblem(uri) : undefined;
    if (problem) problems.push(`${key}: ${show(uri)} is not valid (${problem})`);
    if (hasDotSegment(locationPath(uri))) problems.push(`${key}: ${show(uri)} is not valid (no "." or ".." path segments)`);
  }
  if (hasDotSegment(raw.trigger.prefix)) problems.push(`trigger.prefix: ${show(raw.trigger.prefix)} is not valid (no "." or ".." path segments)`);
  if (raw.trigger.mode === 'project-id') {
    const base = projectBase(raw.trigger.locationStyle, dest, raw.trigger.prefix);
    const problem = roomProblem(raw.trigger.prefix ? 'trigger.prefix' : 'artifactsDestination', raw.trigger.prefix || raw.artifactsDestination, base, 'the project location base');
    if (problem) problems.push(problem);
  } else {
    const keyed: Array<[string, string]> = prefixes.length > 0 ? prefixes : [['artifactsDestination', defaultAllowedPrefix(raw.trigger.locationStyle, dest)]];
    for (const [key, value] of keyed) {
      const problem = roomProblem(key, value, withSlash(value), 'the allowed location prefix');
      if (problem) problems.push(problem);
    }
  }
  const { volumeName, mountPath } = raw.token;
  if (volumeName !== EKS_TOKEN_VOLUME && stripSlash(posix.normalize(mountPath)) === EKS_TOKEN_DIR) {
    problems.push(`token.volumeName: ${show(volumeName)} with token.mountPath ${show(mountPath)} is not valid (the EKS pod-identity webhook `
      + `mounts its own volume ${EKS_TOKEN_VOLUME} on that directory when the pod has none of that name, and the API server refuses a pod `
      + `with two mounts on one path: keep token.volumeName ${EKS_TOKEN_VOLUME}, or choose another token.mountPath)`);
  }
  for (const name of raw.removeEnv as string[]) {
    if (OWNED_ENV.includes(name)) problems.push(`removeEnv: ${show(name)} is set by the webhook itself and cannot also be removed`);
    if (raw.credentials === 'pod-identity' && POD_IDENTITY_ENV.includes(name)) {
      problems.push(`removeEnv: ${show(name)} cannot be removed with credentials pod-identity (EKS's webhook puts it in the pod, and Pod Identity's credentials need it)`);
    }
  }
  if (raw.reconcile.maxRestartIntervalSeconds < raw.reconcile.minRestartIntervalSeconds) {
    problems.push(`reconcile.maxRestartIntervalSeconds: ${raw.reconcile.maxRestartIntervalSeconds} must be >= reconcile.minRestartIntervalSeconds (${raw.reconcile.minRestartIntervalSeconds})`);
  }
  if (raw.server.metricsPort === raw.server.port) {
    problems.push(`server.metricsPort: ${raw.server.metricsPort} must differ from server.port (the metrics listener is a second port; 0 turns it off)`);
  }
  const policy = raw.trigger.locationPolicy as LocationPolicyMode | undefined;
  const legacy = (raw.trigger.enforceLocations ?? undefined) as boolean | undefined;
  if (policy !== undefined && legacy !== undefined && policy !== legacyPolicy(legacy)) {
    problems.push(`trigger.enforceLocations: ${legacy} is deprecated and means locationPolicy ${legacyPolicy(legacy)}, which disagrees with `
      + `trigger.locationPolicy: ${show(policy)}; remove trigger.enforceLocations (helm upgrade --reuse-values keeps it from the earlier `
      + 'chart\'s defaults: add --set trigger.enforceLocations=null)');
  }
  for (const [perSource, total] of [['maxConnectionsPerSource', 'maxConnections'], ['metricsMaxConnectionsPerSource', 'metricsMaxConnections']]) {
    if (raw.server[perSource] > raw.server[total]) {
      problems.push(`server.${perSource}: ${raw.server[perSource]} must be <= server.${total} (${raw.server[total]}); a cap per client address above the total one caps nothing`);
    }
  }
  if (raw.trigger.projectTag === raw.trigger.locationTag) {
    problems.push(`trigger.locationTag: ${show(raw.trigger.locationTag)} must differ from trigger.projectTag`);
  }
  return problems;
}

/** What the deprecated trigger.enforceLocations means as a trigger.locationPolicy. */
export const legacyPolicy = (enforceLocations: boolean): LocationPolicyMode => (enforceLocations ? 'enforce' : 'off');

/** Validates an already-parsed config document. Throws ConfigError listing every problem. */
export function parseConfig(input: unknown, source = '<inline>'): Config {
  if (input === null || typeof input !== 'object' || Array.isArray(input)) {
    throw new ConfigError(source, ['(top level): the config must be a mapping of keys to values']);
  }
  const raw: any = structuredClone(input);
  if (!validate(raw as unknown)) {
    throw new ConfigError(source, ((validate as { errors?: ErrorObject[] | null }).errors ?? []).map((e) => describe(e, raw)));
  }
  const problems = refine(raw);
  if (problems.length > 0) throw new ConfigError(source, problems);
  raw.artifactsDestination = stripSlash(raw.artifactsDestination);
  raw.migration.completedFrom = (raw.migration.completedFrom as string[]).map(stripSlash);
  if (raw.trigger.enforceLocations === null) delete raw.trigger.enforceLocations;
  raw.trigger.locationPolicy ??= raw.trigger.enforceLocations === undefined ? DEFAULT_LOCATION_POLICY : legacyPolicy(raw.trigger.enforceLocations);
  if (raw.trigger.allowedLocationPrefixes.length === 0) {
    raw.trigger.allowedLocationPrefixes = [defaultAllowedPrefix(raw.trigger.locationStyle, raw.artifactsDestination)];
  }
  return deepFreeze(raw as Config);
}

/** Parses YAML or JSON text (JSON is YAML) into a Config. */
export function parseConfigText(text: string, source = '<inline>'): Config {
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    throw new ConfigError(source, [`(file): not valid YAML or JSON: ${(err as Error).message.split('\n')[0]}`]);
  }
  return parseConfig(doc ?? {}, source);
}

/** The problem of a file that cannot be read, its error code (ENOENT, EACCES) rather than Node's whole message. */
export function cannotRead(err: unknown): string {
  return `(file): cannot read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`;
}

/**
 * The config from an environment variable (--config-env NAME): the chart's hook Jobs and helm test Pod carry their config
 * in their own spec, which a tenant who may edit ConfigMaps in their namespace cannot change between render and start.
 */
export function loadConfigEnv(name: string, env: NodeJS.ProcessEnv = process.env): Config {
  const source = `$${name}`;
  const text = env[name];
  if (text === undefined) throw new ConfigError(source, ['(environment): not set (--config-env names the environment variable that holds the config text)']);
  return parseConfigText(text, source);
}

export function loadConfig(file: string): Config {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(file, [cannotRead(err)]);
  }
  return parseConfigText(text, file);
}
