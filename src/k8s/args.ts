// Command-line pieces bootstrap-cert and restart-target share: the --kubeconfig option and required string options.
import { stringOption, UsageError, type Values } from '../command.js';
import { kubeClient, type KubeClient } from './client.js';

export const kubeconfigOption = { kubeconfig: { type: 'string' as const } };

/** --kubeconfig's line in a command's --help (usageText) */
export const kubeconfigHelp = ['--kubeconfig', 'cluster credentials (default: $KUBECONFIG, ~/.kube/config, or the pod\'s service account)'] as const;

/** The value of --key, or a usage error naming the option and what it is for. */
export function requiredOption(values: Values, key: string, what: string): string {
  const v = stringOption(values, key);
  if (v === undefined || v === '') throw new UsageError(`--${key} is required (${what})`);
  return v;
}

/** --kubeconfig FILE, else $KUBECONFIG, ~/.kube/config, or the in-cluster service account. */
export function clientFromArgs(values: Values): Promise<KubeClient> {
  return kubeClient(stringOption(values, 'kubeconfig'));
}
