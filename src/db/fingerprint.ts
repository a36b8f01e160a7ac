// The fingerprint of an object of ours: a hash of a function's body with whitespace normalised (so the body PostgreSQL
// keeps, pg_proc.prosrc, and the body this config would install compare equal however the text was laid out, and differ
// as soon as one rule, literal or statement differs), or of the audit table's shape. installedDifferences (install.ts)
// compares with it.
import { createHash } from 'node:crypto';
import type { Config } from '../config/config.js';
import { AUDIT_COLUMNS, functionBody, tagTestBody, type Policy } from './sql.js';

/** sha256 of the text with every run of whitespace made one space, first 16 hex digits. */
export function fingerprint(body: string): string {
  return createHash('sha256').update(body.replace(/\s+/g, ' ').trim()).digest('hex').slice(0, 16);
}

/** The audit table's shape as install.ts reads it back from pg_class and pg_attribute, for AUDIT_COLUMNS. */
export function auditTableShape(): string {
  return `table (${AUDIT_COLUMNS.map(([name, type]) => `${name} ${type} not null`).join(', ')}) primary key (experiment_id)`;
}

/**
 * The fingerprints of what this config installs with this location policy: the trigger function (undefined when the
 * policy is: it cannot be installed), the tag test and the audit table.
 */
export function expectedFingerprints(config: Config, policy: Policy | undefined): { readonly function?: string; readonly tagTest: string; readonly auditTable: string } {
  return {
    ...(policy && { function: fingerprint(functionBody(config, policy)) }),
    tagTest: fingerprint(tagTestBody(config)),
    auditTable: fingerprint(auditTableShape()),
  };
}
