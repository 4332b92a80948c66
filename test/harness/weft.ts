/**
 * Runs the real `bin/weft serve` as a child process for black-box tests: the same entry point, wrapper
 * and Node an admin uses. The server listens on 127.0.0.1 with an ephemeral port; the harness learns
 * the port from the "weft is serving" log line. `cli()` runs `bin/weft` against that server through
 * its admin socket, the way an admin on the same host would. With `netns` the server (and every `cli()`
 * call) runs inside that network namespace under `ip netns exec`; the admin socket is a file, so it is
 * reachable from anywhere.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  type CommandResult,
  OutputLog,
  removeTestDir,
  runCommand,
  terminate,
  unrefChild,
  waitForLine,
} from './child.ts';
import { killQuietly, onProcessExit } from './exit-cleanup.ts';

export const WEFT_BIN = fileURLToPath(new URL('../../bin/weft', import.meta.url));

const START_TIMEOUT_MS = 30_000;
const CLI_TIMEOUT_MS = 30_000;
const STOP_GRACE_MS = 15_000;

export type LogEntry = Record<string, unknown> & { msg?: string; level?: number };

export interface WeftServer {
  /** `http://127.0.0.1:<port>`. */
  readonly url: string;
  readonly dataDir: string;
  readonly socketPath: string;
  readonly metricsAddress: string | null;
  /** The environment the server was started with; `cli()` uses it too so it finds the same data dir. */
  readonly env: NodeJS.ProcessEnv;
  /** Runs `bin/weft ...args` with the server's environment. */
  cli(args: string[], options?: { env?: Record<string, string>; timeoutMs?: number }): Promise<CommandResult>;
  /** Every JSON log line so far, parsed. */
  logEntries(): LogEntry[];
  /** Resolves with the first log entry (past or future) that matches; rejects on timeout or exit. */
  waitForLog(match: (entry: LogEntry) => boolean, timeoutMs: number): Promise<LogEntry>;
  /** Raw output (stdout and stderr). */
  output(): string;
  /** Sends a signal without waiting (e.g. SIGHUP to reload the policy file). */
  signal(signal: NodeJS.Signals): void;
  /** Sends `signal` (SIGTERM by default) and waits for the exit; removes the data dir unless asked to keep it. */
  stop(options?: {
    signal?: NodeJS.Signals;
    keepDataDir?: boolean;
  }): Promise<{ code: number | null; signal: string | null }>;
}

export interface StartWeftOptions {
  /** WEFT_* settings on top of the harness defaults (loopback, ephemeral ports, JSON logs, temp data dir). */
  env?: Record<string, string>;
  /** Extra arguments after `serve`, e.g. ['--config', file]. */
  args?: string[];
  /** Reuse a data dir (e.g. a restart); a fresh temp dir otherwise. */
  dataDir?: string;
  /** Run the server and its CLI calls inside this network namespace (`ip netns exec`; needs root). */
  netns?: string;
}

/** `command args` as run inside `netns` (ip execs the command, so the child's pid stays the command's). */
function inNamespace(netns: string | undefined, command: string, args: string[]): [string, string[]] {
  return netns === undefined ? [command, args] : ['ip', ['netns', 'exec', netns, command, ...args]];
}

/**
 * weft on a fixed loopback port, with that address as its server_url: for tests whose clients must
 * reach it at a known URL (official clients, restarts on the same address).
 */
export function loopbackServerEnv(port: number): { WEFT_LISTEN_ADDR: string; WEFT_SERVER_URL: string } {
  return { WEFT_LISTEN_ADDR: `127.0.0.1:${port}`, WEFT_SERVER_URL: `http://127.0.0.1:${port}` };
}

/** The parent's environment without any WEFT_* variable, so a developer's shell cannot leak into tests. */
export function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) if (!name.startsWith('WEFT_')) env[name] = value;
  return { ...env, ...extra };
}

function parseEntry(line: string): LogEntry | undefined {
  if (!line.startsWith('{')) return undefined;
  try {
    return JSON.parse(line) as LogEntry;
  } catch {
    return undefined;
  }
}

export async function startWeft(options: StartWeftOptions = {}): Promise<WeftServer> {
  const ownDataDir = options.dataDir === undefined;
  const dataDir = options.dataDir ?? (await mkdtemp(join(tmpdir(), 'weft-')));
  const env = cleanEnv({
    WEFT_LISTEN_ADDR: '127.0.0.1:0',
    WEFT_METRICS_LISTEN_ADDR: '127.0.0.1:0',
    // Tests run side by side: never the fixed default STUN port.
    WEFT_STUN_LISTEN_ADDR: '127.0.0.1:0',
    WEFT_DATA_DIR: dataDir,
    WEFT_LOG_FORMAT: 'json',
    WEFT_LOG_LEVEL: 'debug',
    ...options.env,
  });
  const [command, args] = inNamespace(options.netns, WEFT_BIN, ['serve', ...(options.args ?? [])]);
  const child: ChildProcess = spawn(command, args, {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const unregister = onProcessExit(() => killQuietly(child.pid, 'SIGKILL'));
  unrefChild(child);
  const output = new OutputLog();
  output.attach(child);

  const waitForLog = async (match: (entry: LogEntry) => boolean, timeoutMs: number): Promise<LogEntry> => {
    const matches = (line: string) => {
      const entry = parseEntry(line);
      return entry !== undefined && match(entry);
    };
    return parseEntry(await waitForLine(child, output, matches, timeoutMs, 'weft serve')) as LogEntry;
  };

  const stop: WeftServer['stop'] = async ({ signal = 'SIGTERM', keepDataDir = false } = {}) => {
    await terminate(child, signal, STOP_GRACE_MS);
    unregister();
    if (ownDataDir && !keepDataDir)
      await removeTestDir(dataDir, () => rm(dataDir, { recursive: true, force: true }));
    return { code: child.exitCode, signal: child.signalCode };
  };

  let serving: LogEntry;
  try {
    serving = await waitForLog((e) => e.msg === 'weft is serving', START_TIMEOUT_MS);
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    url: `http://${String(serving.http)}`,
    dataDir,
    socketPath: String(serving.socket),
    metricsAddress: typeof serving.metrics === 'string' ? serving.metrics : null,
    env,
    cli: (cliArgs, cliOptions = {}) =>
      runCommand(...inNamespace(options.netns, WEFT_BIN, cliArgs), {
        env: { ...env, ...cliOptions.env },
        timeoutMs: cliOptions.timeoutMs ?? CLI_TIMEOUT_MS,
      }),
    logEntries: () =>
      output.lines().flatMap((line): LogEntry[] => {
        const entry = parseEntry(line);
        return entry ? [entry] : [];
      }),
    waitForLog,
    output: () => output.text(),
    signal: (signal) => {
      child.kill(signal);
    },
    stop,
  };
}

/** Runs `bin/weft` once with a clean environment plus `env` (for commands that need no server). */
export function runWeft(
  args: string[],
  env: Record<string, string> = {},
  timeoutMs = CLI_TIMEOUT_MS,
): Promise<CommandResult> {
  return runCommand(WEFT_BIN, args, { env: cleanEnv(env), timeoutMs });
}

/** A node as `weft nodes list -o json` prints it (the fields tests read, and the rest untyped). */
export type NodeListing = Record<string, unknown> & { id: number; givenName: string; online: boolean };

/** Every node, through the CLI as an admin would ask; fails with the CLI's error text. */
export async function listNodes(weft: WeftServer): Promise<NodeListing[]> {
  const list = await weft.cli(['nodes', 'list', '-o', 'json']);
  if (list.code !== 0) throw new Error(`weft nodes list failed: ${list.stderr}`);
  return JSON.parse(list.stdout) as NodeListing[];
}
