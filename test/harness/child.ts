/**
 * Small helpers shared by the harnesses that run real programs (PostgreSQL, tailscaled, the tailscale
 * CLI): capturing a child's output as lines, waiting for a child to exit within a bound, running a
 * command to completion with a deadline, and finding a free loopback TCP port.
 */

import { type ChildProcess, type SpawnOptions, spawn } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { once } from 'node:events';
import { createServer, Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { killQuietly, onProcessExit } from './exit-cleanup.ts';

/** Keeps a child's combined stdout/stderr in memory, bounded, and tells listeners about each full line. */
export class OutputLog {
  readonly #maxChars: number;
  #text = '';
  #partial = '';
  readonly #lineListeners = new Set<(line: string) => void>();

  constructor(maxChars = 16 * 1024 * 1024) {
    this.#maxChars = maxChars;
  }

  /** Feeds a chunk of output; complete lines are announced to listeners. */
  append(chunk: string): void {
    this.#text += chunk;
    if (this.#text.length > this.#maxChars) this.#text = this.#text.slice(-this.#maxChars);
    const lines = (this.#partial + chunk).split('\n');
    this.#partial = lines.pop() ?? '';
    for (const line of lines) for (const listener of this.#lineListeners) listener(line);
  }

  /** Everything captured so far (the oldest part is dropped past the size bound). */
  text(): string {
    return this.#text;
  }

  /** The last `lines` lines, for error messages. */
  tail(lines = 40): string {
    return this.#text
      .split('\n')
      .slice(-lines - 1)
      .join('\n');
  }

  /** Complete lines captured so far, oldest first. */
  lines(): string[] {
    return this.#text.split('\n').slice(0, -1);
  }

  onLine(listener: (line: string) => void): () => void {
    this.#lineListeners.add(listener);
    return () => {
      this.#lineListeners.delete(listener);
    };
  }

  /** Wires a child's stdout and stderr into this log; a failure to start it is logged rather than thrown. */
  attach(child: ChildProcess): void {
    child.on('error', (error) => this.append(`[harness] ${error.message}\n`));
    for (const stream of [child.stdout, child.stderr]) {
      stream?.setEncoding('utf8');
      stream?.on('data', (chunk: string) => this.append(chunk));
    }
  }
}

/**
 * Settles like `promise`, or with `fallback` after `timeoutMs`, whichever comes first. The timer is
 * cleared either way, so a finished wait never keeps the process alive.
 */
export async function within<T, F>(promise: Promise<T>, timeoutMs: number, fallback: F): Promise<T | F> {
  const ac = new AbortController();
  try {
    return await Promise.race([promise, sleep(timeoutMs, fallback, { signal: ac.signal })]);
  } finally {
    ac.abort();
  }
}

/**
 * Lets this process exit while `child` still runs: a test that forgets stop() must not hang its file;
 * the harness's onProcessExit hook kills the child then.
 */
export function unrefChild(child: ChildProcess): void {
  child.unref();
  for (const stream of [child.stdout, child.stderr]) (stream as { unref?: () => void } | null)?.unref?.();
}

/** Removes a test's temp folder, or keeps it (and says where) when KEEP_TEST_DIRS is set. */
export function removeTestDir<T>(dir: string, remove: () => T): T | undefined {
  if (process.env.KEEP_TEST_DIRS) {
    process.stderr.write(`KEEP_TEST_DIRS: kept ${dir}\n`);
    return undefined;
  }
  return remove();
}

/**
 * Resolves with the first line of `log` (already seen or still to come) that `matches` accepts;
 * rejects with the log tail when `timeoutMs` passes or the child exits first.
 */
export function waitForLine(
  child: ChildProcess,
  log: OutputLog,
  matches: (line: string) => boolean,
  timeoutMs: number,
  describe: string,
): Promise<string> {
  const seen = log.lines().find(matches);
  if (seen !== undefined) return Promise.resolve(seen);
  return new Promise<string>((resolve, reject) => {
    const finish = (settle: () => void) => {
      stopListening();
      child.off('exit', onExit);
      clearTimeout(timer);
      settle();
    };
    const stopListening = log.onLine((line) => {
      if (matches(line)) finish(() => resolve(line));
    });
    const onExit = () => finish(() => reject(new Error(`${describe} exited while waiting:\n${log.tail()}`)));
    const timer = setTimeout(
      () =>
        finish(() =>
          reject(new Error(`${describe}: no matching log line in ${timeoutMs} ms:\n${log.tail()}`)),
        ),
      timeoutMs,
    );
    if (hasExited(child)) onExit();
    else child.on('exit', onExit);
  });
}

/** True once the child has exited (by code or signal), or never started (no pid: spawn failed). */
export function hasExited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null || child.pid === undefined;
}

/** Resolves true when the child exits within `timeoutMs`, false otherwise. Never rejects. */
export async function waitForExit(child: ChildProcess, timeoutMs: number): Promise<boolean> {
  if (hasExited(child)) return true;
  const ac = new AbortController();
  const exited = once(child, 'exit', { signal: ac.signal }).then(
    () => true,
    () => false,
  );
  try {
    return (await within(exited, timeoutMs, false)) || hasExited(child);
  } finally {
    ac.abort(); // drops the 'exit' listener when the wait timed out
  }
}

/** Sends `signal`, then SIGKILL if the child is still there after `graceMs`; resolves once it is gone. */
export async function terminate(child: ChildProcess, signal: NodeJS.Signals, graceMs: number): Promise<void> {
  if (hasExited(child)) return;
  child.kill(signal);
  if (await waitForExit(child, graceMs)) return;
  child.kill('SIGKILL');
  await waitForExit(child, 5_000);
}

export interface CommandResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs a command to completion and collects its output. Past `timeoutMs` the command is killed
 * (SIGKILL) and the result has `code: null`; this never rejects for a non-zero exit, only when the
 * program cannot be started at all. With `killProcessGroup` the command gets its own process group and
 * the whole group is killed, for commands that fork workers (a build's compilers). The command is also
 * killed if this process exits first.
 */
export async function runCommand(
  command: string,
  args: readonly string[],
  options: SpawnOptions & { timeoutMs: number; killProcessGroup?: boolean },
): Promise<CommandResult> {
  const { timeoutMs, killProcessGroup = false, ...spawnOptions } = options;
  const child = spawn(command, args, {
    ...spawnOptions,
    detached: killProcessGroup,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const kill = () =>
    killQuietly(killProcessGroup && child.pid !== undefined ? -child.pid : child.pid, 'SIGKILL');
  const unregisterKill = onProcessExit(kill);
  let stdout = '';
  let stderr = '';
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
    stdout += chunk;
  });
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk;
  });
  const closed = once(child, 'close').catch(() => undefined); // rejects if 'error' fires instead
  // Resolves with the error if the program cannot be started (e.g. ENOENT); then no 'exit' may follow.
  const spawnError = once(child, 'error').then(([error]) => error as Error);
  try {
    if (child.pid === undefined) throw await spawnError;
    const outcome = await Promise.race([
      waitForExit(child, timeoutMs).then((exited) => ({ exited })),
      spawnError.then((error) => ({ error })),
    ]);
    if ('error' in outcome) throw outcome.error;
    if (!outcome.exited) {
      kill();
      await waitForExit(child, 5_000);
    }
    // 'close' follows 'exit' once the output pipes are drained; a killed child's pipes may be held open
    // by a grandchild, so don't wait for them forever.
    await within(closed, 2_000, undefined);
    return { code: outcome.exited ? child.exitCode : null, stdout, stderr };
  } finally {
    unregisterKill();
  }
}

/** A TCP port on 127.0.0.1 that was free a moment ago (bind port 0, read it, close). Callers retry on conflict. */
export async function freeLoopbackPort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  server.close();
  await once(server, 'close');
  if (address === null || typeof address === 'string') throw new Error('could not read the bound port');
  return address.port;
}

/** A UDP port on 127.0.0.1 that was free a moment ago (for a STUN listener that must keep its port). */
export async function freeLoopbackUdpPort(): Promise<number> {
  const socket = createSocket('udp4');
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  const { port } = socket.address();
  await new Promise<void>((resolve) => socket.close(() => resolve()));
  return port;
}

/** True when nothing accepts TCP connections on 127.0.0.1:`port` (the connection is refused). */
export async function isLoopbackPortClosed(port: number, timeoutMs = 2_000): Promise<boolean> {
  const socket = new Socket();
  try {
    // once() rejects when 'error' fires first: that is the refused case.
    const connected = once(socket, 'connect').then(
      () => false,
      () => true,
    );
    socket.connect(port, '127.0.0.1');
    return await within(connected, timeoutMs, false);
  } finally {
    socket.destroy();
  }
}
