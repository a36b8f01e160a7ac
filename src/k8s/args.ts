// Command-line pieces the cluster commands share: where cluster credentials come from (the --kubeconfig option, the
// usual search), and required string options.
import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { delimiter, join } from 'node:path';
import { stringOption, UsageError, type Values } from '../command.js';
import type { KubeClient } from './client.js';

export const kubeconfigOption = { kubeconfig: { type: 'string' as const } };

/** --kubeconfig's line in a command's --help (usageText) */
export const kubeconfigHelp = ['--kubeconfig', 'cluster credentials (default: $KUBECONFIG, ~/.kube/config, or the pod\'s service account)'] as const;

const SERVICE_ACCOUNT_TOKEN = '/var/run/secrets/kubernetes.io/serviceaccount/token';

/** Where cluster credentials come from: the file to load (undefined: the usual search finds it) and which source said so. */
export interface ClusterCredentials {
  /** --kubeconfig's file; else undefined, and the client's own search ($KUBECONFIG, ~/.kube/config, in-cluster) loads `from` */
  readonly file?: string;
  readonly from: string;
}

const readable = (file: string): string | undefined => {
  try {
    readFileSync(file);
    return undefined;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code ?? (err as Error).message;
  }
};

/**
 * Finds cluster credentials as kubectl does: --kubeconfig, else every file $KUBECONFIG lists, else ~/.kube/config
 * (unless `userFile` is false: `serve` acts on the cluster it finds, so it never takes the developer's current context
 * by default), else the pod's service account. A file that cannot be read is a UsageError naming it and the source
 * that named it; none at all is undefined (see NO_CREDENTIALS for what to say).
 */
export function findCredentials(values: Values, opts: { userFile?: boolean; env?: NodeJS.ProcessEnv } = {}): ClusterCredentials | undefined {
  const env = opts.env ?? process.env;
  const flag = stringOption(values, 'kubeconfig');
  if (flag !== undefined) {
    const problem = readable(flag);
    if (problem) throw new UsageError(`--kubeconfig ${flag}: cannot read it (${problem})`);
    return { file: flag, from: `--kubeconfig ${flag}` };
  }
  if (env.KUBECONFIG) {
    const files = env.KUBECONFIG.split(delimiter).filter(Boolean);
    for (const file of files) {
      const problem = readable(file);
      if (problem) throw new UsageError(`${file}, named by $KUBECONFIG, cannot be read (${problem}); fix $KUBECONFIG or give --kubeconfig FILE`);
    }
    return { from: `$KUBECONFIG (${files.join(delimiter)})` };
  }
  const home = join(homedir(), '.kube', 'config');
  if (opts.userFile !== false && readable(home) === undefined) return { from: home };
  if (env.KUBERNETES_SERVICE_HOST && readable(SERVICE_ACCOUNT_TOKEN) === undefined) return { from: 'the pod\'s service account' };
  return undefined;
}

/** What to say when findCredentials found none: every place it looked. */
export function noCredentials(opts: { userFile?: boolean } = {}): string {
  return `no cluster credentials: no --kubeconfig, no $KUBECONFIG, ${opts.userFile === false ? '' : `no ${join(homedir(), '.kube', 'config')}, `}`
    + `and not in a pod (no KUBERNETES_SERVICE_HOST with ${SERVICE_ACCOUNT_TOKEN})`;
}

/** The value of --key, or a usage error naming the option and what it is for. */
export function requiredOption(values: Values, key: string, what: string): string {
  const v = stringOption(values, key);
  if (v === undefined || v === '') throw new UsageError(`--${key} is required (${what})`);
  return v;
}

/** A client from the credentials findCredentials finds; a UsageError (exit 2) when it finds none or cannot read them. */
export async function clientFromArgs(values: Values): Promise<KubeClient> {
  const credentials = findCredentials(values);
  if (!credentials) throw new UsageError(noCredentials());
  const { kubeClient } = await import('./client.js');
  return kubeClient(credentials.file);
}
