// The contract between cli.ts and each command module, and the argument helpers they share.
import type { ParseArgsConfig } from 'node:util';
import type { Config } from './config/config.js';

export class UsageError extends Error {
  override name = 'UsageError';
}

export type Values = Record<string, string | boolean | undefined>;

/** The options cli.ts gives every command, before each command's own: where its config comes from. */
export const COMMON_OPTIONS = {
  config: { type: 'string', short: 'c' },
  'config-env': { type: 'string' },
  values: { type: 'string', short: 'f', multiple: true },
} as const satisfies NonNullable<ParseArgsConfig['options']>;

export interface CommandArgs {
  readonly values: Values;
  readonly positionals: string[];
  readonly config: Config;
}

export interface CommandModule {
  /** the arguments after the command name, for --help and usage errors */
  readonly usage: string;
  readonly options: NonNullable<ParseArgsConfig['options']>;
  readonly allowPositionals?: boolean;
  /**
   * Old option names still accepted, each with the name that replaced it: one name per concept on every command
   * (--output, --webhook-namespace, --tls-secret). Using one prints a note on stderr.
   */
  readonly deprecatedOptions?: Readonly<Record<string, string>>;
  /** exit code, or undefined for a command that keeps the process running (serve) */
  run(args: CommandArgs): Promise<number | undefined>;
}

/** A whole number option in [min, max], or undefined when absent. */
export function intOption(values: Values, key: string, min = 0, max = Number.MAX_SAFE_INTEGER): number | undefined {
  const raw = values[key];
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (typeof raw !== 'string' || raw.trim() === '' || !Number.isInteger(n) || n < min || n > max) {
    throw new UsageError(`--${key}: ${JSON.stringify(raw)} is not a whole number in ${min}..${max}`);
  }
  return n;
}

/** --help text: the synopsis, then one aligned line per option saying what it is for. */
export function usageText(synopsis: string, options: ReadonlyArray<readonly [flag: string, meaning: string]>): string {
  const width = Math.max(...options.map(([flag]) => flag.length));
  return [synopsis, ...options.map(([flag, meaning]) => `  ${flag.padEnd(width)}  ${meaning}`)].join('\n');
}

export function stringOption(values: Values, key: string): string | undefined {
  const v = values[key];
  return typeof v === 'string' ? v : undefined;
}
