// The fingerprint of our trigger function: a hash of its body with whitespace normalised, so that the body PostgreSQL
// keeps (pg_proc.prosrc) and the body this config would install compare equal however the text was laid out, and
// differ as soon as one rule, literal or statement differs. doctor uses it; install-trigger does not need it.
import { createHash } from 'node:crypto';
import type pg from 'pg';
import type { Config } from '../config.js';
import { FUNCTION_NAME, functionDefinition } from './sql.js';

/** sha256 of the body with every run of whitespace made one space, first 16 hex digits. */
export function fingerprint(body: string): string {
  return createHash('sha256').update(body.replace(/\s+/g, ' ').trim()).digest('hex').slice(0, 16);
}

/** The dollar-quoted body of the function this config installs: what PostgreSQL will keep as prosrc. */
export function expectedFunctionBody(config: Config): string {
  const match = /\bAS\s+(\$[A-Za-z_0-9]*\$)([\s\S]*?)\1/.exec(functionDefinition(config));
  if (!match) throw new Error('the trigger function definition has no dollar-quoted body');
  return match[2];
}

/** The body of our function as PostgreSQL keeps it, or undefined when there is none. */
export async function installedFunctionBody(client: pg.Client, schema: string): Promise<string | undefined> {
  const { rows } = await client.query<{ prosrc: string }>(
    'SELECT p.prosrc FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = $1 AND p.proname = $2',
    [schema, FUNCTION_NAME],
  );
  return rows[0]?.prosrc;
}
