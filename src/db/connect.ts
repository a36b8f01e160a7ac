// Connects to MLflow's tracking database (libpq variables or a URL), retries what is transient until a deadline, keeps the password out of every message, and runs work in transactions with the installer's settings.
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import type { Logger } from '../log.js';
import { preamble } from './sql.js';
import { DatabaseTlsError, openConnection, planConnection } from './ssl.js';

export const APPLICATION_NAME = 'mlflow-irsa-webhook install-trigger';

/** A failure that retrying cannot fix (bad password, wrong database, missing tables): reported at once, exit 1. */
export class TriggerError extends Error {
  override name = 'TriggerError';
}

export interface ConnectionOptions {
  /** postgres://user:password@host:port/database?sslmode=...&sslrootcert=...; without it, PGHOST, PGPORT, PGDATABASE, PGUSER, PGPASSWORD, PGSSLMODE, PGSSLROOTCERT (libpq's meanings: ssl.ts) */
  readonly databaseUrl?: string;
  /** give up on transient failures after this long; 0 means one attempt */
  readonly waitSeconds: number;
  /** the command's option that sets waitSeconds, named when it gives up; none: the wait is the command's own */
  readonly waitOption?: string;
  /** the environment the secrets and the TLS settings come from (process.env in the CLI) */
  readonly env?: NodeJS.ProcessEnv;
}

/**
 * Blanks a password where it stands as one: the userinfo of a URL (`postgres://user:PASSWORD@`, up to the last `@`
 * before the host, since people write an unescaped `@` in passwords), and a `password=` (also `PGPASSWORD=`) or
 * `"password":` key, quoted or not. Only those places: blanking every occurrence of the password's text would change
 * messages that merely contain it (with password `mlflow`, `user "mlflow"` became `user "[redacted]"`; a one-letter
 * password cut into file paths), and so reveal the password.
 */
export function scrub(message: string): string {
  return message
    .replace(/([a-z][a-z0-9+.-]*:\/\/[^:@/\s]*:)[^\s/]*@/gi, '$1[redacted]@')
    .replace(/(\b\w*password\s*=\s*)('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|[^\s&;,)]+)/gi, '$1[redacted]')
    .replace(/("\w*password"\s*:\s*)"(?:[^"\\]|\\.)*"/gi, '$1"[redacted]"');
}

/** SQLSTATE classes and codes worth another attempt: the server is starting, full, going away, or the lock is busy. */
const RETRYABLE_SQLSTATE = new Set(['57P01', '57P02', '57P03', '53300', '55P03', '40001', '40P01']);
const RETRYABLE_ERRNO = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'EPIPE']);
const RETRYABLE_MESSAGE = /^(Connection terminated|timeout expired|Query read timeout)/;

/** What an operator should do about failures that will not go away by waiting. */
const FATAL_HINTS: Record<string, string> = {
  '28P01': 'authentication failed: check PGUSER and PGPASSWORD (secret mlflow-postgresql, key postgresql-password)',
  '28000': 'the server refused this user or host (pg_hba.conf): check PGUSER, PGHOST and PGSSLMODE',
  '3D000': 'the database does not exist: check PGDATABASE (MLflow\'s is "mlflow")',
  '42501': 'permission denied: install-trigger must connect as the owner of MLflow\'s tables (MLflow\'s own user); doctor\'s read-only login needs SELECT on experiments and experiment_tags',
};

export interface Classified {
  readonly retryable: boolean;
  readonly message: string;
}

export function classify(err: unknown): Classified {
  const e = err as Error & { code?: string };
  const raw = e instanceof Error ? e.message : String(err);
  const message = scrub(raw);
  if (err instanceof TriggerError || err instanceof DatabaseTlsError) return { retryable: false, message };
  const code = typeof e?.code === 'string' ? e.code : undefined;
  if (code && FATAL_HINTS[code]) return { retryable: false, message: `${FATAL_HINTS[code]} (${message})` };
  const retryable = Boolean(code && (RETRYABLE_SQLSTATE.has(code) || code.startsWith('08') || RETRYABLE_ERRNO.has(code))) || RETRYABLE_MESSAGE.test(raw);
  return { retryable, message: code ? `${message} [${code}]` : message };
}

/**
 * Connects and runs `work`, retrying the whole of it on transient failures with doubling backoff until `waitSeconds` have passed.
 * Each attempt gets a fresh connection; `work` runs its changes in one transaction, so a connection lost mid-way leaves nothing behind.
 */
export async function withDatabase<T>(opts: ConnectionOptions, logger: Logger, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const plan = await planConnection({ databaseUrl: opts.databaseUrl, env: opts.env ?? process.env })
    .catch((err: unknown) => { throw new TriggerError(classify(err).message); });
  // pg works out host, port, database and user from the URL and the PG* variables; an unconnected client shows them.
  const target = new pg.Client({ connectionString: plan.connectionString, ssl: false });
  logger.info({
    host: target.host, port: target.port, database: target.database, user: target.user,
    sslmode: plan.tls.sslMode, sslmodeFrom: plan.tls.sslModeOrigin, rootCertificate: plan.tls.root?.origin ?? 'none',
  }, 'connecting to the tracking database');
  const deadline = Date.now() + opts.waitSeconds * 1000;
  let delay = 500;
  for (let attempt = 1; ; attempt++) {
    const remaining = deadline - Date.now();
    let client: pg.Client | undefined;
    try {
      const connected = await openConnection(plan, {
        client: { application_name: APPLICATION_NAME, connectionTimeoutMillis: Math.min(10_000, Math.max(1_000, remaining)) },
        logger,
        scrub,
      });
      client = connected.client;
      logger.info({ tls: connected.transport === 'tls', sslmode: plan.tls.sslMode, certificateChecked: connected.transport === 'tls' && plan.tls.root !== undefined }, 'connected to the tracking database');
      return await work(client);
    } catch (err) {
      const { retryable, message } = classify(err);
      const left = deadline - Date.now();
      if (!retryable) throw new TriggerError(message);
      if (left <= 0) throw new TriggerError(`gave up after ${attempt} attempt(s) over ${opts.waitSeconds} s${opts.waitOption ? ` (${opts.waitOption})` : ''}: ${message}`);
      const wait = Math.min(delay, left);
      logger.warn({ attempt, retryInMs: wait, reason: message }, 'tracking database not ready; retrying');
      await sleep(wait);
      delay = Math.min(delay * 2, 10_000);
    } finally {
      await client?.end().catch((err: Error) => logger.debug({ reason: scrub(err.message) }, 'closing the connection failed'));
    }
  }
}

/**
 * Runs `work` in one transaction with the installer's settings (under our advisory lock when `lock`; READ ONLY when
 * `readOnly`, so that not even a mistake in its queries could change MLflow's data); any failure rolls all of it back.
 */
export async function transaction<T>(client: pg.Client, opts: { lock: boolean; readOnly?: boolean }, work: () => Promise<T>): Promise<T> {
  await client.query(opts.readOnly ? 'BEGIN READ ONLY' : 'BEGIN');
  try {
    for (const statement of preamble({ lock: opts.lock })) await client.query(statement);
    const result = await work();
    await client.query('COMMIT');
    return result;
  } catch (err) {
    // On a lost connection the server has rolled back already and this fails too; the original error is the one to report.
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}
