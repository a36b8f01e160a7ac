// The fingerprint of a function of ours: a hash of its body with whitespace normalised, so that the body PostgreSQL keeps
// (pg_proc.prosrc) and the body this config would install compare equal however the text was laid out, and differ as
// soon as one rule, literal or statement differs. installedDifferences (install.ts) compares with it.
import { createHash } from 'node:crypto';
import type { Config } from '../config.js';
import { functionBody, tagTestBody, type Policy } from './sql.js';

/** sha256 of the body with every run of whitespace made one space, first 16 hex digits. */
export function fingerprint(body: string): string {
  return createHash('sha256').update(body.replace(/\s+/g, ' ').trim()).digest('hex').slice(0, 16);
}

/** The fingerprints of what this config installs with this location policy: the trigger function and the tag test. */
export function expectedFingerprints(config: Config, policy: Policy): { readonly function: string; readonly tagTest: string } {
  return { function: fingerprint(functionBody(config, policy)), tagTest: fingerprint(tagTestBody(config)) };
}
