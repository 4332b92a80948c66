/**
 * A private, throwaway PostgreSQL server for tests.
 *
 * Never touches the system cluster or systemd: each call initialises a fresh data directory in a temp
 * folder and runs its own postmaster, listening only on 127.0.0.1 (a free port) and on a unix socket
 * inside that folder. Durability is switched off (fsync, synchronous_commit, full_page_writes) because
 * the data dies with the test.
 *
 * Made fast in two ways (measured on 2 vCPU: ~0.6 s cold, ~0.12 s warm, CREATE DATABASE ~25 ms):
 *   - the temp folder is on the RAM-backed /dev/shm when it has room; on disk every step was 5-10x
 *     slower here (CREATE DATABASE alone ~150 ms);
 *   - initdb (~0.5-1 s) runs once per machine: its fresh, never-started data directory is kept as a
 *     template beside the temp folders (keyed by the initdb binary and its arguments) and later servers
 *     copy it. The template is written under a temporary name and renamed into place, so concurrent
 *     test processes never see half of one.
 *
 * initdb and postgres refuse to run as root. Under root (as in CI) they are spawned directly with the
 * `postgres` OS user's uid/gid rather than through `runuser`: runuser would sit between us and the
 * postmaster and turn our shutdown signal into SIGTERM-then-SIGKILL, while PostgreSQL needs SIGINT
 * ("fast shutdown") to stop promptly and killing the postmaster orphans its backends.
 */
import { execFile, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { constants, existsSync, rmSync } from 'node:fs';
import { access, chown, lstat, mkdir, mkdtemp, readdir, rename, rm, stat, statfs } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import pg from 'pg';
import { freeLoopbackPort, hasExited, OutputLog, runCommand, terminate, unrefChild } from './child.ts';
import { killQuietly, onProcessExit } from './exit-cleanup.ts';

export interface PostgresServer {
  readonly host: string;
  readonly port: number;
  /** postgres://postgres@127.0.0.1:PORT/<database, default 'postgres'> */
  url(database?: string): string;
  /** Creates a database with a random unique name (`<prefix>_<hex>`) and returns its url. */
  createDatabase(prefix?: string): Promise<string>;
  /** Fast shutdown, then removes the temp directory. Idempotent. */
  stop(): Promise<void>;
}

const HOST = '127.0.0.1';
const SUPERUSER = 'postgres';
const POSTGRES_ROOT = '/usr/lib/postgresql';
const READY_TIMEOUT_MS = 30_000;
const RAM_DIR = '/dev/shm';
const RAM_DIR_MIN_FREE = 1024 ** 3;
const PORT_ATTEMPTS = 5;
const INITDB_ARGS = `-U ${SUPERUSER} -A trust -E UTF8 --locale=C --no-sync --no-instructions`.split(' ');
const SPEED_SETTINGS = ['fsync=off', 'synchronous_commit=off', 'full_page_writes=off'];

const execFileAsync = promisify(execFile);

/** Uid/gid to run PostgreSQL programs as: the `postgres` OS user under root, else ourselves (undefined). */
interface RunAs {
  uid: number;
  gid: number;
}

export async function startPostgres(): Promise<PostgresServer> {
  const binDir = await findPostgresBinDir();
  const runAs = await postgresRunAs();
  const root = await scratchRoot();
  const dir = await mkdtemp(join(root, 'weft-pg-'));
  const unregisterDirCleanup = onProcessExit(() => rmSync(dir, { recursive: true, force: true }));
  try {
    if (runAs) await chown(dir, runAs.uid, runAs.gid);
    const dataDir = join(dir, 'data');
    await createDataDir(binDir, dataDir, runAs);
    const server = await startPostmasterOnFreePort(binDir, dir, dataDir, runAs);
    unregisterDirCleanup();
    return server;
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    unregisterDirCleanup();
    throw error;
  }
}

/**
 * Where to put data directories: the RAM-backed /dev/shm when it is big enough (a cluster needs ~40 MB,
 * and CREATE DATABASE copies ~8 MB each time), else the OS temp folder.
 */
async function scratchRoot(): Promise<string> {
  try {
    await access(RAM_DIR, constants.W_OK);
    const fsInfo = await statfs(RAM_DIR);
    if (fsInfo.bavail * fsInfo.bsize >= RAM_DIR_MIN_FREE) return RAM_DIR;
  } catch {
    // No /dev/shm here.
  }
  return tmpdir();
}

/** The bin folder of the highest PostgreSQL major version installed the Debian way. */
async function findPostgresBinDir(): Promise<string> {
  const versions = await readdir(POSTGRES_ROOT).catch(() => [] as string[]);
  const installed = versions
    .filter((name) => /^\d+(\.\d+)?$/.test(name) && existsSync(join(POSTGRES_ROOT, name, 'bin', 'postgres')))
    .sort((a, b) => Number.parseFloat(b) - Number.parseFloat(a));
  const newest = installed[0];
  if (newest === undefined) {
    throw new Error(
      `PostgreSQL server binaries not found under ${POSTGRES_ROOT}; install the Debian package postgresql (.ci/run does)`,
    );
  }
  return join(POSTGRES_ROOT, newest, 'bin');
}

async function postgresRunAs(): Promise<RunAs | undefined> {
  if (process.getuid?.() !== 0) return undefined;
  try {
    const [uid, gid] = await Promise.all(
      ['-u', '-g'].map(async (flag) => Number((await execFileAsync('id', [flag, SUPERUSER])).stdout.trim())),
    );
    if (uid === undefined || gid === undefined || !Number.isInteger(uid) || !Number.isInteger(gid)) {
      throw new Error('unexpected output from id');
    }
    return { uid, gid };
  } catch (error) {
    throw new Error(`running as root, but the OS user "${SUPERUSER}" (to run PostgreSQL as) is missing`, {
      cause: error,
    });
  }
}

// ---------------------------------------------------------------------------------------------------
// Data directory: copy of the cached template, or initdb (then cache it)

async function createDataDir(binDir: string, dataDir: string, runAs: RunAs | undefined): Promise<void> {
  const template = await templatePath(binDir, dirname(dirname(dataDir)));
  if (template !== undefined && existsSync(template)) {
    const copied = await runCommand('cp', ['-a', template, dataDir], { timeoutMs: 30_000 });
    if (copied.code === 0) return;
    await rm(dataDir, { recursive: true, force: true });
  }
  await initdb(binDir, dataDir, runAs);
  if (template !== undefined) await saveTemplate(dataDir, template);
}

async function initdb(binDir: string, dataDir: string, runAs: RunAs | undefined): Promise<void> {
  const result = await runCommand(join(binDir, 'initdb'), ['-D', dataDir, ...INITDB_ARGS], {
    ...spawnIdentity(runAs, dirname(dataDir)),
    timeoutMs: 60_000,
  });
  if (result.code !== 0) {
    throw new Error(`initdb failed (exit ${result.code}):\n${result.stdout}${result.stderr}`);
  }
}

/**
 * Where the template for this initdb binary and these arguments lives, or undefined when the cache
 * folder is unusable (e.g. someone else owns it: then it could hand us a doctored cluster).
 */
async function templatePath(binDir: string, root: string): Promise<string | undefined> {
  const uid = process.getuid?.() ?? 0;
  const cacheDir = join(root, `weft-pg-templates-${uid}`);
  try {
    await mkdir(cacheDir, { mode: 0o700 });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') return undefined;
  }
  const info = await lstat(cacheDir);
  if (!info.isDirectory() || info.uid !== uid || (info.mode & 0o022) !== 0) return undefined;
  const initdbBinary = await stat(join(binDir, 'initdb'));
  const key = createHash('sha256')
    .update([binDir, initdbBinary.size, initdbBinary.mtimeMs, ...INITDB_ARGS].join('\0'))
    .digest('hex')
    .slice(0, 16);
  return join(cacheDir, key);
}

/** Best effort: a failure here only means the next server runs initdb again. */
async function saveTemplate(dataDir: string, template: string): Promise<void> {
  const staging = `${template}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    const copied = await runCommand('cp', ['-a', dataDir, staging], { timeoutMs: 30_000 });
    if (copied.code === 0) await rename(staging, template);
  } catch {
    // Another process renamed its copy into place first, or the temp folder is full.
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------------
// The postmaster

async function startPostmasterOnFreePort(
  binDir: string,
  dir: string,
  dataDir: string,
  runAs: RunAs | undefined,
): Promise<PostgresServer> {
  for (let attempt = 1; ; attempt++) {
    const port = await freeLoopbackPort();
    try {
      return await startPostmaster(binDir, dir, dataDir, port, runAs);
    } catch (error) {
      // Another process may have taken the port between our probe and the postmaster's bind.
      if (!(error instanceof PortInUseError) || attempt >= PORT_ATTEMPTS) throw error;
    }
  }
}

class PortInUseError extends Error {}

async function startPostmaster(
  binDir: string,
  dir: string,
  dataDir: string,
  port: number,
  runAs: RunAs | undefined,
): Promise<PostgresServer> {
  const settings = [`listen_addresses=${HOST}`, ...SPEED_SETTINGS].flatMap((setting) => ['-c', setting]);
  const child = spawn(join(binDir, 'postgres'), ['-D', dataDir, '-p', String(port), '-k', dir, ...settings], {
    ...spawnIdentity(runAs, dir),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const log = new OutputLog(1024 * 1024);
  log.attach(child);
  const unregisterKill = onProcessExit(() => {
    killQuietly(child.pid, 'SIGQUIT'); // immediate shutdown: the postmaster takes its backends with it
    rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
  });
  // A test that forgets stop() must not keep its process alive; the exit hook above cleans up then.
  unrefChild(child);

  const url = (database = 'postgres') =>
    `postgres://${SUPERUSER}@${HOST}:${port}/${encodeURIComponent(database)}`;
  try {
    await waitUntilReady(child, log, url(), port);
  } catch (error) {
    // The caller removes the folder (or retries on another port in it), so only the process goes here.
    await terminate(child, 'SIGINT', 10_000);
    unregisterKill();
    throw error;
  }
  let stopping: Promise<void> | undefined;
  const stop = () => {
    stopping ??= (async () => {
      await terminate(child, 'SIGINT', 10_000); // SIGINT = fast shutdown
      await rm(dir, { recursive: true, force: true, maxRetries: 3 });
      unregisterKill();
    })();
    return stopping;
  };
  return {
    host: HOST,
    port,
    url,
    createDatabase: (prefix = 'weft_test') => createDatabase(url, prefix),
    stop,
  };
}

/** Polls `SELECT 1` until it succeeds, the postmaster dies, or the bound passes. */
async function waitUntilReady(
  child: ReturnType<typeof spawn>,
  log: OutputLog,
  url: string,
  port: number,
): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  let lastError: unknown;
  while (Date.now() < deadline) {
    if (hasExited(child)) {
      if (/could not bind|Address already in use/i.test(log.text())) {
        throw new PortInUseError(`port ${port} was taken`);
      }
      throw new Error(
        `PostgreSQL exited during start-up (${child.exitCode ?? child.signalCode}):\n${log.tail()}`,
      );
    }
    try {
      await selectOne(url);
      return;
    } catch (error) {
      lastError = error;
    }
    await sleep(20);
  }
  throw new Error(
    `PostgreSQL did not accept SELECT 1 within ${READY_TIMEOUT_MS} ms (last error: ${String(lastError)}):\n${log.tail()}`,
  );
}

async function selectOne(url: string): Promise<void> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2_000 });
  try {
    await client.connect();
    await client.query('SELECT 1');
  } finally {
    await client.end().catch(() => {});
  }
}

async function createDatabase(url: (database?: string) => string, prefix: string): Promise<string> {
  if (!/^[a-z_][a-z0-9_]{0,40}$/.test(prefix)) {
    throw new Error(
      `database prefix must be a lowercase SQL identifier of at most 41 chars, got "${prefix}"`,
    );
  }
  const name = `${prefix}_${randomBytes(6).toString('hex')}`;
  const client = new pg.Client({ connectionString: url(), connectionTimeoutMillis: 5_000 });
  try {
    await client.connect();
    // The name is generated from a validated prefix and hex, so quoting it is enough.
    await client.query(`CREATE DATABASE "${name}"`);
  } finally {
    await client.end().catch(() => {});
  }
  return url(name);
}

/** Spawn options that run a PostgreSQL program as `runAs` with a neutral locale (log text we match is English). */
function spawnIdentity(runAs: RunAs | undefined, cwd: string) {
  return {
    cwd, // the postgres user may not be allowed into our working directory
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LANG: 'C', LC_ALL: 'C' },
    ...(runAs ?? {}),
  };
}
