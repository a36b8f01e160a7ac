// What in MLflow's container can take the artifacts' credentials or destination away from the webhook's: env botocore
// reads before the mode's credentials (or that breaks them), and MLflow flags that beat MLFLOW_ARTIFACTS_DESTINATION. Pure: the
// mutator warns with it, doctor judges with it, and the config's default removeEnv is its list.
import { isObject, type Json, type JsonObject } from './json.js';

/** The credentials each mode relies on, as botocore's chain knows them, and the mode's name in messages. */
const PROVIDERS = {
  irsa: { provider: 'web identity', mode: 'IRSA' },
  'pod-identity': { provider: 'Pod Identity\'s container credentials', mode: 'Pod Identity' },
} as const;

export type CredentialsMode = keyof typeof PROVIDERS;

/** Why botocore's credential chain lets each variable decide before (or instead of) the mode's credentials. */
function overrides(mode: CredentialsMode): Readonly<Record<string, string>> {
  const { provider, mode: name } = PROVIDERS[mode];
  const staticKeys = `botocore uses keys from the environment before ${provider}, so ${name} would not be used`;
  const profile = `it names a profile: one missing from the pod fails every S3 call (ProfileNotFound), one with a role_arn is assumed before ${provider}`;
  const files = `a profile in that file (role_arn, credential_process, keys) would decide before or instead of ${provider}`;
  return Object.freeze({
    AWS_ACCESS_KEY_ID: staticKeys,
    AWS_SECRET_ACCESS_KEY: staticKeys,
    AWS_SESSION_TOKEN: staticKeys,
    // botocore's older name for the session token, still read
    AWS_SECURITY_TOKEN: staticKeys,
    AWS_PROFILE: profile,
    AWS_DEFAULT_PROFILE: profile,
    AWS_CONFIG_FILE: files,
    AWS_SHARED_CREDENTIALS_FILE: files,
  });
}

const REASONS: Readonly<Record<CredentialsMode, Readonly<Record<string, string>>>> = { irsa: overrides('irsa'), 'pod-identity': overrides('pod-identity') };

/** Every env name that beats or breaks the mode's credentials in botocore (the same in both modes); the default removeEnv. */
export const DEFAULT_REMOVE_ENV: readonly string[] = Object.keys(REASONS.irsa);

/** The reason a removed variable is named with: its override reason in this mode, or the operator's own list. */
export function removalReason(name: string, mode: CredentialsMode = 'irsa'): string {
  return REASONS[mode][name] ?? 'it is listed in removeEnv';
}

/** IRSA's web identity in the environment, which botocore reads before Pod Identity's container credentials. */
export const WEB_IDENTITY_ENV: readonly string[] = ['AWS_ROLE_ARN', 'AWS_WEB_IDENTITY_TOKEN_FILE'];
export const WEB_IDENTITY_REASON = `botocore reads web identity from the environment before ${PROVIDERS['pod-identity'].provider}, so IRSA would still be used`;

/** What EKS's webhook puts in each container of a pod whose ServiceAccount has a Pod Identity association. */
export const POD_IDENTITY_ENV: readonly string[] = ['AWS_CONTAINER_CREDENTIALS_FULL_URI', 'AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE'];

/** MLflow server arguments that take the artifact destination away from MLFLOW_ARTIFACTS_DESTINATION. */
const DESTINATION_FLAGS: Readonly<Record<string, string>> = {
  '--artifacts-destination': 'MLflow reads the argument before MLFLOW_ARTIFACTS_DESTINATION, so the webhook\'s destination is ignored',
  '--default-artifact-root': 'new experiments get that root instead of mlflow-artifacts:/ under MLFLOW_ARTIFACTS_DESTINATION',
  '--no-serve-artifacts': 'it turns MLflow\'s artifact proxy off, so MLFLOW_ARTIFACTS_DESTINATION is not used at all',
};

export interface FlagFinding {
  readonly flag: string;
  readonly reason: string;
}

/**
 * The container's words as MLflow's command line sees them: argv entries as they are, and a shell script (an entry
 * with white space, `sh -c "mlflow server ..."`) split on white space with its quotes dropped.
 */
function words(container: JsonObject): string[] {
  const out: string[] = [];
  for (const key of ['command', 'args'] as const) {
    const list = container[key];
    if (!Array.isArray(list)) continue;
    for (const entry of list) {
      if (typeof entry !== 'string') continue;
      if (!/\s/.test(entry)) out.push(entry);
      else for (const w of entry.split(/\s+/)) if (w) out.push(w.replace(/^['"]|['"]$/g, ''));
    }
  }
  return out;
}

/**
 * The destination-beating flags in the container's command and args, each once. `--default-artifact-root` with a
 * `mlflow-artifacts:` value is left out: the proxy resolves that root against MLFLOW_ARTIFACTS_DESTINATION.
 */
export function destinationFlags(container: JsonObject): FlagFinding[] {
  const found = new Map<string, string>();
  const w = words(container);
  for (let i = 0; i < w.length; i++) {
    const eq = w[i].indexOf('=');
    const flag = eq < 0 ? w[i] : w[i].slice(0, eq);
    const reason = Object.hasOwn(DESTINATION_FLAGS, flag) ? DESTINATION_FLAGS[flag] : undefined;
    if (reason === undefined || found.has(flag)) continue;
    const value = eq < 0 ? w[i + 1] : w[i].slice(eq + 1);
    if (flag === '--default-artifact-root' && value?.startsWith('mlflow-artifacts:')) continue;
    found.set(flag, reason);
  }
  return [...found].map(([flag, reason]) => ({ flag, reason }));
}

export interface EnvSource {
  readonly kind: 'configMap' | 'secret';
  readonly name: string;
  /** envFrom's prefix, put before every key of the source */
  readonly prefix: string;
}

/** The ConfigMaps and Secrets a container takes all keys of (envFrom), where the webhook cannot see or remove them. */
export function envSources(container: JsonObject): EnvSource[] {
  const list: readonly Json[] = Array.isArray(container.envFrom) ? container.envFrom : [];
  const out: EnvSource[] = [];
  for (const e of list) {
    if (!isObject(e)) continue;
    const prefix = typeof e.prefix === 'string' ? e.prefix : '';
    for (const kind of ['configMap', 'secret'] as const) {
      const ref = e[`${kind}Ref`];
      if (isObject(ref) && typeof ref.name === 'string') out.push({ kind, name: ref.name, prefix });
    }
  }
  return out;
}

/** The names envFrom would bring in from a source's keys that the webhook removes when they stand in env. */
export function overridingKeys(source: EnvSource, keys: Iterable<string>, removeEnv: ReadonlySet<string>): string[] {
  const out: string[] = [];
  for (const key of keys) if (removeEnv.has(source.prefix + key)) out.push(source.prefix + key);
  return out;
}
