/**
 * One server per data directory. SQLite allows a single writing process, and two servers would fight
 * over the admin socket; so `weft serve` holds `<data_dir>/weft.lock`, a file naming its pid.
 *
 * The lock file is created atomically with its content (written under a temporary name, then
 * hard-linked into place, which fails if the lock exists), so a competitor never reads a half-written
 * pid. A lock whose pid is no longer running is a leftover from a crash and is taken over.
 */
import { link, readFile, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { StartupError } from './errors.ts';

export const LOCK_FILE_NAME = 'weft.lock';

/** Directories locked by this process: a pid check cannot tell two servers in one process apart. */
const heldHere = new Set<string>();

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: the process exists but belongs to another user.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function lockHolder(path: string): Promise<number | undefined> {
  const text = await readFile(path, 'utf8').catch(() => '');
  const pid = Number.parseInt(text, 10);
  return Number.isSafeInteger(pid) && pid > 0 ? pid : undefined;
}

function alreadyRunning(path: string, pid: number | undefined): StartupError {
  const holder = pid === undefined ? '' : ` (pid ${pid} holds ${path})`;
  return new StartupError(`another weft server is already running with this data directory${holder}`);
}

/** Takes the data directory lock; resolves with the function that releases it. */
export async function lockDataDir(dataDir: string): Promise<() => Promise<void>> {
  const path = join(dataDir, LOCK_FILE_NAME);
  if (heldHere.has(path)) throw alreadyRunning(path, process.pid);
  const temporary = `${path}.${process.pid}`;
  await writeFile(temporary, `${process.pid}\n`, { mode: 0o600 });
  try {
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        await link(temporary, path);
        heldHere.add(path);
        return async () => {
          heldHere.delete(path);
          if ((await lockHolder(path)) === process.pid) await unlink(path).catch(() => {});
        };
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') {
          throw new StartupError(`cannot create the lock file ${path}: ${(err as Error).message}`, {
            cause: err,
          });
        }
        const pid = await lockHolder(path);
        // Our own pid in a leftover lock: a restarted container often runs weft as pid 1 again.
        if (pid !== undefined && pid !== process.pid && isRunning(pid)) throw alreadyRunning(path, pid);
        await unlink(path).catch(() => {});
      }
    }
    throw alreadyRunning(path, await lockHolder(path));
  } finally {
    await unlink(temporary).catch(() => {});
  }
}
