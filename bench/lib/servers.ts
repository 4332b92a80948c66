/**
 * The two relays under test, each in a process of its own: weft (`bin/weft serve`, embedded DERP and
 * STUN) and the official `derper` of the pinned Tailscale release. Both listen on 127.0.0.1 only, serve
 * DERP over plain HTTP and STUN on a UDP port picked here. Each start registers a last-resort kill with
 * the harness's exit hook, so a crash or Ctrl-C of the benchmark never leaves a server behind; `stop()`
 * is SIGTERM, then SIGKILL after a bounded grace, then the temp dir goes.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  freeLoopbackPort,
  freeLoopbackUdpPort,
  hasExited,
  OutputLog,
  terminate,
  unrefChild,
  waitForLine,
} from '../../test/harness/child.ts';
import { killQuietly, onProcessExit } from '../../test/harness/exit-cleanup.ts';
import { tailscaleBinaries } from '../../test/harness/tailscale.ts';
import { cleanEnv, WEFT_BIN } from '../../test/harness/weft.ts';

export interface BenchServer {
  readonly name: 'weft' | 'derper';
  /** `http://127.0.0.1:<port>/derp`. */
  readonly derpUrl: string;
  readonly stunPort: number;
  readonly pid: number;
  /** A version string for the report. */
  readonly version: string;
  /** Fetches server-side counters, where the server exposes them (weft's metrics endpoint). */
  counters(): Promise<Record<string, number>>;
  /** Raw output, for error messages. */
  output(): string;
  stop(): Promise<void>;
}

const START_TIMEOUT_MS = 30_000;
const STOP_GRACE_MS = 15_000;

/** User + system CPU time of a process (all its threads) in seconds, from /proc/<pid>/stat; 0 if gone. */
export function processCpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may contain spaces; the fields after it are space-separated.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // utime and stime are fields 14 and 15 overall, i.e. 11 and 12 after the name and state.
    const ticks = Number(fields[11]) + Number(fields[12]);
    return ticks / CLOCK_TICKS;
  } catch {
    return 0;
  }
}

/** USER_HZ; 100 on every Linux build that matters (getconf CLK_TCK). */
const CLOCK_TICKS = 100;

export function spawned(child: ChildProcess, what: string): number {
  if (child.pid === undefined) throw new Error(`could not start ${what}`);
  return child.pid;
}

/** A benchmark's server process: its pid, its output, and an idempotent stop that removes its dir. */
export interface Launched {
  pid: number;
  output: OutputLog;
  stop(): Promise<void>;
}

/**
 * Starts `binary` in `dir` with its output kept, and waits for `ready`. If it does not start or never
 * gets ready, it is stopped (and `dir` removed) before the error is thrown.
 */
export async function launch(
  what: string,
  binary: string,
  args: readonly string[],
  options: { dir: string; env: NodeJS.ProcessEnv },
  ready: (child: ChildProcess, output: OutputLog) => Promise<unknown>,
): Promise<Launched> {
  const child = spawn(binary, args, {
    env: options.env,
    cwd: options.dir,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output = new OutputLog();
  output.attach(child);
  const stop = stopper(child, options.dir);
  try {
    const pid = spawned(child, what);
    await ready(child, output);
    return { pid, output, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** Sets up the exit hook and returns an idempotent stop for `child` and its temp dir. */
export function stopper(child: ChildProcess, dir: string): () => Promise<void> {
  const unregister = onProcessExit(() => {
    killQuietly(child.pid, 'SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });
  unrefChild(child);
  let stopping: Promise<void> | undefined;
  return () => {
    stopping ??= (async () => {
      try {
        await terminate(child, 'SIGTERM', STOP_GRACE_MS);
      } finally {
        await rm(dir, { recursive: true, force: true });
        unregister();
      }
    })();
    return stopping;
  };
}

export interface WeftStartOptions {
  /** Extra environment for the weft process (e.g. NODE_OPTIONS=--cpu-prof …). */
  env?: Record<string, string>;
}

/** A running `bin/weft serve` of a benchmark: its port, the environment its CLI needs, and how to stop it. */
export interface SpawnedWeft {
  port: number;
  pid: number;
  /** The server's environment: `bin/weft` CLI calls with it reach this server's admin socket. */
  env: NodeJS.ProcessEnv;
  version: string;
  output: OutputLog;
  stop(): Promise<void>;
}

/**
 * `bin/weft serve` on a free loopback port and a free STUN port, with a temporary data dir, JSON logs
 * at warn; `env` adds or overrides settings. At warn the "weft is serving" line never comes, so it is
 * ready once `/health` answers.
 */
export async function spawnWeft(dirPrefix: string, env: Record<string, string>): Promise<SpawnedWeft> {
  const dir = await mkdtemp(join(tmpdir(), dirPrefix));
  const port = await freeLoopbackPort();
  const fullEnv = cleanEnv({
    WEFT_SERVER_URL: `http://127.0.0.1:${port}`,
    WEFT_LISTEN_ADDR: `127.0.0.1:${port}`,
    WEFT_STUN_LISTEN_ADDR: `127.0.0.1:${await freeLoopbackUdpPort()}`,
    WEFT_DATA_DIR: join(dir, 'data'),
    WEFT_LOG_FORMAT: 'json',
    WEFT_LOG_LEVEL: 'warn',
    ...env,
  });
  const { pid, output, stop } = await launch(
    'weft',
    WEFT_BIN,
    ['serve'],
    { dir, env: fullEnv },
    (child, out) => waitForHttp(child, `http://127.0.0.1:${port}/health`, out, 'weft'),
  );
  const version = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')).version;
  return { port, pid, env: fullEnv, version, output, stop };
}

/** weft with the embedded DERP (no client verification) and STUN on a free UDP port. */
export async function startWeftServer(options: WeftStartOptions = {}): Promise<BenchServer> {
  const metricsPort = await freeLoopbackPort();
  const stunPort = await freeLoopbackUdpPort();
  const weft = await spawnWeft('weft-bench-', {
    WEFT_METRICS_LISTEN_ADDR: `127.0.0.1:${metricsPort}`,
    WEFT_STUN_LISTEN_ADDR: `127.0.0.1:${stunPort}`,
    WEFT_DERP_SERVER_VERIFY_CLIENTS: 'false',
    ...options.env,
  });
  return {
    name: 'weft',
    derpUrl: `http://127.0.0.1:${weft.port}/derp`,
    stunPort,
    pid: weft.pid,
    version: weft.version,
    counters: () => scrapeWeftMetrics(`http://127.0.0.1:${metricsPort}/metrics`),
    output: () => weft.output.text(),
    stop: weft.stop,
  };
}

export async function waitForHttp(
  child: ChildProcess,
  url: string,
  output: OutputLog,
  what: string,
): Promise<void> {
  const deadline = performance.now() + START_TIMEOUT_MS;
  while (performance.now() < deadline) {
    if (hasExited(child)) throw new Error(`${what} exited during start-up:\n${output.tail()}`);
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(1_000) });
      await res.arrayBuffer();
      if (res.status < 500) return;
    } catch {
      // Not listening yet.
    }
    await sleep(100);
  }
  throw new Error(`${what} did not answer ${url} within ${START_TIMEOUT_MS} ms:\n${output.tail()}`);
}

/** The weft_derp_* counters from the Prometheus text format, without the prefix. */
async function scrapeWeftMetrics(url: string): Promise<Record<string, number>> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(2_000) });
    const text = await res.text();
    const out: Record<string, number> = {};
    for (const line of text.split('\n')) {
      const match = /^weft_derp_([a-z_]+)(?:\{[^}]*\})? ([0-9.e+-]+)$/.exec(line);
      if (match?.[1] !== undefined) out[match[1]] = Number(match[2]);
    }
    return out;
  } catch {
    return {};
  }
}

/**
 * Starts the official derper on plain HTTP (a non-443 `-a` without `--certmode=manual`), no port-80
 * listener, STUN on a free UDP port, its key in a temp dir. It verifies no clients by default.
 */
export async function startDerperServer(): Promise<BenchServer> {
  const binaries = await tailscaleBinaries('newest');
  const dir = await mkdtemp(join(tmpdir(), 'derper-bench-'));
  const port = await freeLoopbackPort();
  const stunPort = await freeLoopbackUdpPort();
  const args = [
    `-a=127.0.0.1:${port}`,
    '-http-port=-1',
    `-stun-port=${stunPort}`,
    '-hostname=127.0.0.1',
    `-c=${join(dir, 'derper.key')}`,
  ];
  const env = { ...process.env, HOME: dir };
  const { pid, output, stop } = await launch('derper', binaries.derper, args, { dir, env }, (child, out) =>
    waitForLine(child, out, (line) => /serving on/.test(line), START_TIMEOUT_MS, 'derper start-up'),
  );
  return {
    name: 'derper',
    derpUrl: `http://127.0.0.1:${port}/derp`,
    stunPort,
    pid,
    version: binaries.version,
    counters: async () => ({}),
    output: () => output.text(),
    stop,
  };
}
