/**
 * Official, unmodified Tailscale clients as test peers.
 *
 * `tailscaleBinaries` builds (or finds cached) the official tailscale, tailscaled and derper of one
 * version through scripts/tailscale-bin.sh. `startTailscaled` runs one daemon the way
 * docs/control-protocol.md §9.2 describes: userspace networking (no root, no TUN), state, socket and
 * logs in a private temp folder, no log uploads, no port mapping, and a panic instead of ever talking
 * to Tailscale's own control plane.
 *
 * Keeping everything on loopback and inside the temp folder needs two knobs beyond §9.2:
 *   - TS_LOGS_DIR: as root, tailscaled otherwise writes its log identity to /var/lib/tailscale even
 *     with --statedir and --no-logs-no-support;
 *   - proxy variables are removed from the environment, so a developer's HTTP(S)_PROXY can't route
 *     the control connection off the machine.
 * HOME points into the temp folder too, so nothing lands in the real home directory.
 *
 * With `netns` the daemon and every CLI call run inside that network namespace (`ip netns exec`, root
 * only), as a device of a lab network; the CLI must run there too, since some commands (netcheck) do
 * their own networking.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createWriteStream, existsSync, rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import {
  type CommandResult,
  hasExited,
  OutputLog,
  removeTestDir,
  runCommand,
  terminate,
  unrefChild,
  waitForLine,
} from './child.ts';
import { killQuietly, onProcessExit } from './exit-cleanup.ts';

export interface TailscaleBinaries {
  /** The release tag, e.g. v1.80.3 (also for 'oldest' / 'newest'). */
  version: string;
  dir: string;
  tailscale: string;
  tailscaled: string;
  derper: string;
}

export interface TailscaledProcess {
  readonly name: string;
  readonly dir: string;
  readonly socket: string;
  readonly binaries: TailscaleBinaries;
  /** host:port of the SOCKS5 proxy into the tailnet, when started with `socks5: true`. */
  readonly socks5Address: string | undefined;
  /** Runs `tailscale --socket=<sock> ...args`; `code` is null when it was killed at the timeout (default 30 s). */
  cli(args: string[], opts?: { timeoutMs?: number }): Promise<CommandResult>;
  /**
   * `tailscale up --login-server=… [--auth-key=…] [--hostname=…] --timeout=…s ...extraArgs`. The CLI's
   * own --timeout is `timeoutMs` (default 60 s), so it exits non-zero when the node doesn't reach
   * Running by then.
   */
  up(opts: UpOptions): Promise<CommandResult>;
  /** `tailscale status --json`, parsed. */
  status(): Promise<TailscaleStatus>;
  /** tailscaled's combined stdout and stderr so far. */
  log(): string;
  /** Resolves with the first log line (past or future) matching `pattern`; rejects with the log tail on timeout or daemon exit. */
  waitForLog(pattern: RegExp, timeoutMs: number): Promise<string>;
  /** Stops the daemon and starts it again on the same state, socket and log (a reboot of the device). */
  restart(): Promise<void>;
  /** SIGTERM, then SIGKILL after 10 s; removes the temp folder unless KEEP_TEST_DIRS is set. Idempotent. */
  stop(): Promise<void>;
}

export interface UpOptions {
  loginServer: string;
  authKey?: string;
  hostname?: string;
  extraArgs?: string[];
  timeoutMs?: number;
}

/** The parts of `tailscale status --json` tests look at most; the rest is there, untyped. */
export interface TailscaleStatus {
  BackendState: string;
  Self?: { HostName?: string; TailscaleIPs?: string[] | null; Online?: boolean; [key: string]: unknown };
  Peer?: Record<
    string,
    { HostName?: string; TailscaleIPs?: string[]; Online?: boolean; [key: string]: unknown }
  >;
  [key: string]: unknown;
}

export interface StartTailscaledOptions {
  version: 'oldest' | 'newest' | string;
  /** Used in the temp folder's name and in error messages. */
  name: string;
  /** Also run a SOCKS5 proxy on 127.0.0.1 (a free port; see `socks5Address`). */
  socks5?: boolean;
  /** Extra environment for the daemon and its CLI calls (e.g. TS_DEBUG_MAP: '1'); wins over the defaults. */
  env?: Record<string, string>;
  /**
   * Run the daemon and its CLI calls inside this network namespace. Alone there, the daemon takes
   * Tailscale's standard UDP port 41641 like a real device (instead of a random one), and the SOCKS5
   * proxy's 127.0.0.1 is the namespace's own loopback.
   */
  netns?: string;
}

const BUILD_SCRIPT = fileURLToPath(new URL('../../scripts/tailscale-bin.sh', import.meta.url));
const BUILD_TIMEOUT_MS = 20 * 60_000; // a cold build of three binaries takes minutes on 2 cores
const READY_TIMEOUT_MS = 30_000;
const CLI_TIMEOUT_MS = 30_000;
const UP_TIMEOUT_MS = 60_000;
const STOP_GRACE_MS = 10_000;
const TAILSCALE_STANDARD_PORT = 41641;
const PROXY_VARIABLES = ['HTTP_PROXY', 'HTTPS_PROXY', 'ALL_PROXY', 'NO_PROXY'].flatMap((name) => [
  name,
  name.toLowerCase(),
]);

// ---------------------------------------------------------------------------------------------------
// Binaries

const builds = new Map<string, Promise<TailscaleBinaries>>();

/** Builds or finds the binaries of `version`; memoised per process (a failure too, so it isn't retried per test). */
export function tailscaleBinaries(version: 'oldest' | 'newest' | string): Promise<TailscaleBinaries> {
  let build = builds.get(version);
  if (build === undefined) {
    build = buildBinaries(version);
    builds.set(version, build);
  }
  return build;
}

async function buildBinaries(version: string): Promise<TailscaleBinaries> {
  const result = await runCommand(BUILD_SCRIPT, [version], {
    timeoutMs: BUILD_TIMEOUT_MS,
    killProcessGroup: true,
  });
  const dir = result.stdout.trim().split('\n').at(-1) ?? '';
  if (result.code !== 0 || dir === '') {
    const outcome = result.code === null ? `timed out after ${BUILD_TIMEOUT_MS} ms` : `exit ${result.code}`;
    throw new Error(
      `scripts/tailscale-bin.sh ${version} failed (${outcome}):\n${lastLines(result.stderr, 30)}`,
    );
  }
  const binaries = {
    version: basename(dir),
    dir,
    tailscale: join(dir, 'tailscale'),
    tailscaled: join(dir, 'tailscaled'),
    derper: join(dir, 'derper'),
  };
  for (const path of [binaries.tailscale, binaries.tailscaled, binaries.derper]) {
    if (!existsSync(path))
      throw new Error(`scripts/tailscale-bin.sh ${version} printed ${dir}, but ${path} is missing`);
  }
  return binaries;
}

// ---------------------------------------------------------------------------------------------------
// Daemon

export async function startTailscaled(opts: StartTailscaledOptions): Promise<TailscaledProcess> {
  const binaries = await tailscaleBinaries(opts.version);
  // Short: the socket path inside must stay under the 108-byte unix socket limit.
  const dir = await mkdtemp(join(tmpdir(), `ts-${opts.name.replace(/[^A-Za-z0-9]/g, '').slice(0, 12)}-`));
  const socket = join(dir, 'tailscaled.sock');
  const env = daemonEnvironment(dir, opts.env);
  const args = [
    '--tun=userspace-networking',
    `--statedir=${dir}`,
    `--socket=${socket}`,
    `--port=${opts.netns === undefined ? 0 : TAILSCALE_STANDARD_PORT}`,
    '--no-logs-no-support',
    '--verbose=1',
    ...(opts.socks5 ? ['--socks5-server=127.0.0.1:0'] : []),
  ];
  const log = new OutputLog();
  const logFile = createWriteStream(join(dir, 'tailscaled.log')).on('error', () => {}); // a copy, best effort
  log.onLine((line) => {
    if (!logFile.writableEnded) logFile.write(`${line}\n`); // output can trail the exit
  });
  // Restarts replace the child; everything below reads the current one.
  const spawnInNamespace = () =>
    spawnDaemon(...inNamespace(opts.netns, binaries.tailscaled, args), dir, env, log);
  let child = spawnInNamespace();
  const unregisterKill = onProcessExit(() => {
    killQuietly(child.pid, 'SIGKILL');
    removeTestDir(dir, () => rmSync(dir, { recursive: true, force: true }));
  });

  let stopping: Promise<void> | undefined;
  const stop = () => {
    stopping ??= (async () => {
      await terminate(child, 'SIGTERM', STOP_GRACE_MS);
      await new Promise((resolve) => logFile.end(resolve));
      await removeTestDir(dir, () => rm(dir, { recursive: true, force: true, maxRetries: 3 }));
      unregisterKill();
    })();
    return stopping;
  };

  const cli = (cliArgs: string[], cliOpts: { timeoutMs?: number } = {}) =>
    runCommand(...inNamespace(opts.netns, binaries.tailscale, [`--socket=${socket}`, ...cliArgs]), {
      env,
      timeoutMs: cliOpts.timeoutMs ?? CLI_TIMEOUT_MS,
    });
  const describe = `tailscaled ${opts.name} (${binaries.version})`;
  const waitForLog = (pattern: RegExp, timeoutMs: number) =>
    waitForLogLine(child, log, pattern, timeoutMs, describe);

  let socks5Address: string | undefined;
  const ready = async () => {
    if (opts.socks5) socks5Address = await socks5ListenAddress(child, log, describe);
    await waitForLocalApi(child, log, socket, cli, describe);
  };
  try {
    await ready();
  } catch (error) {
    await stop();
    throw error;
  }
  return {
    name: opts.name,
    dir,
    socket,
    binaries,
    get socks5Address() {
      return socks5Address;
    },
    cli,
    up: (upOpts) => cli(upArguments(upOpts), { timeoutMs: (upOpts.timeoutMs ?? UP_TIMEOUT_MS) + 10_000 }),
    status: () => readStatus(cli, describe),
    log: () => log.text(),
    waitForLog,
    async restart() {
      await terminate(child, 'SIGTERM', STOP_GRACE_MS);
      log.append('[harness] restarting tailscaled with the same state\n');
      child = spawnInNamespace();
      await ready();
    },
    stop,
  };
}

/** `command args` as run inside `netns` (ip execs the command, so the child's pid stays the command's). */
function inNamespace(netns: string | undefined, command: string, args: string[]): [string, string[]] {
  return netns === undefined ? [command, args] : ['ip', ['netns', 'exec', netns, command, ...args]];
}

function spawnDaemon(
  tailscaled: string,
  args: string[],
  dir: string,
  env: NodeJS.ProcessEnv,
  log: OutputLog,
): ChildProcess {
  const child = spawn(tailscaled, args, { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] });
  log.attach(child);
  // A test that forgets stop() must not keep its process alive; the exit hook cleans up then.
  unrefChild(child);
  return child;
}

/** Our environment minus proxy settings, plus the §9.2 test knobs, plus the caller's additions. */
function daemonEnvironment(dir: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const name of PROXY_VARIABLES) delete env[name];
  return {
    ...env,
    HOME: dir,
    TS_LOGS_DIR: dir,
    TS_NO_LOGS_NO_SUPPORT: 'true',
    TS_ASSUME_NETWORK_UP_FOR_TEST: '1',
    TS_DISABLE_PORTMAPPER: '1',
    TS_PANIC_IF_HIT_MAIN_CONTROL: '1',
    ...extra,
  };
}

function upArguments(opts: UpOptions): string[] {
  const timeoutSeconds = Math.max(1, Math.ceil((opts.timeoutMs ?? UP_TIMEOUT_MS) / 1000));
  return [
    'up',
    `--login-server=${opts.loginServer}`,
    ...(opts.authKey !== undefined ? [`--auth-key=${opts.authKey}`] : []),
    ...(opts.hostname !== undefined ? [`--hostname=${opts.hostname}`] : []),
    `--timeout=${timeoutSeconds}s`,
    ...(opts.extraArgs ?? []),
  ];
}

/**
 * With --socks5-server=127.0.0.1:0 the daemon picks the port and logs it ("SOCKS5 listening on …").
 * After a restart the current port is in the newest such line, so lines are counted per start.
 */
async function socks5ListenAddress(child: ChildProcess, log: OutputLog, describe: string): Promise<string> {
  const starts = log.lines().filter((l) => l.startsWith('[harness] restarting')).length + 1;
  const announced = () => log.lines().filter((l) => /SOCKS5 listening on \S+/.test(l));
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (announced().length < starts) {
    if (hasExited(child)) throw new Error(`${describe} exited during start-up:\n${log.tail()}`);
    if (Date.now() > deadline)
      throw new Error(`${describe}: no SOCKS5 address within ${READY_TIMEOUT_MS} ms:\n${log.tail()}`);
    await sleep(20);
  }
  const line = announced().at(-1) ?? '';
  const address = /SOCKS5 listening on (\S+)/.exec(line)?.[1];
  if (address === undefined) throw new Error(`unexpected SOCKS5 log line: ${line}`);
  return address;
}

/**
 * The LocalAPI answers once `status --json` prints a backend state (NeedsLogin for a fresh node). The
 * CLI itself retries a missing socket for ~2 s, so it is only asked once the socket file exists.
 */
async function waitForLocalApi(
  child: ChildProcess,
  log: OutputLog,
  socket: string,
  cli: (args: string[], opts?: { timeoutMs?: number }) => Promise<CommandResult>,
  describe: string,
): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  let last: CommandResult | undefined;
  while (Date.now() < deadline) {
    if (hasExited(child)) throw new Error(`${describe} exited during start-up:\n${log.tail()}`);
    if (existsSync(socket)) {
      last = await cli(['status', '--json'], { timeoutMs: 5_000 });
      if (parseStatus(last.stdout) !== undefined) return;
    }
    await sleep(10);
  }
  throw new Error(
    `${describe}: LocalAPI did not answer within ${READY_TIMEOUT_MS} ms (last status: ${last?.stderr.trim()}):\n${log.tail()}`,
  );
}

async function readStatus(
  cli: (args: string[], opts?: { timeoutMs?: number }) => Promise<CommandResult>,
  describe: string,
): Promise<TailscaleStatus> {
  const result = await cli(['status', '--json']);
  const status = parseStatus(result.stdout);
  if (status === undefined) {
    throw new Error(
      `${describe}: status --json failed (exit ${result.code}): ${result.stderr}${result.stdout}`,
    );
  }
  return status;
}

function parseStatus(stdout: string): TailscaleStatus | undefined {
  try {
    const parsed: unknown = JSON.parse(stdout);
    const isStatus = typeof parsed === 'object' && parsed !== null && 'BackendState' in parsed;
    return isStatus ? (parsed as TailscaleStatus) : undefined;
  } catch {
    return undefined;
  }
}

function waitForLogLine(
  child: ChildProcess,
  log: OutputLog,
  pattern: RegExp,
  timeoutMs: number,
  describe: string,
): Promise<string> {
  // A /g or /y pattern would make test() remember where it stopped; matching must be stateless.
  const matcher = new RegExp(pattern.source, pattern.flags.replace(/[gy]/g, ''));
  return waitForLine(
    child,
    log,
    (line) => matcher.test(line),
    timeoutMs,
    `${describe} (waiting for ${pattern})`,
  );
}

function lastLines(text: string, count: number): string {
  return text.trimEnd().split('\n').slice(-count).join('\n');
}
