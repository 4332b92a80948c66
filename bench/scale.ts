/**
 * Scale benchmark: thousands of simulated Tailscale clients (the real protocol, see
 * bench/lib/scale-client.ts) against weft and against Headscale, one server at a time on the same
 * machine, with the same generator. See bench/README.md ("Scale") for the scenarios and how to read
 * the figures.
 *
 *   npm run bench:scale -- [--nodes N] [--quick] [--json] [--servers weft,headscale] [--workers W]
 *                          [--policy allow-all|groups] [--cpu-prof DIR]
 *
 * Every phase has a deadline; a server that misses one gets `null` for that figure, with the reason.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import { cpus, release, totalmem } from 'node:os';
import { resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { fetchServerKey } from '../test/harness/control-client.ts';
import { killQuietly, onProcessExit } from '../test/harness/exit-cleanup.ts';
import { headscaleBinary } from './lib/headscale-bin.ts';
import { now } from './lib/scale-client.ts';
import {
  rssMiB,
  type ScaleServer,
  type ScaleServerName,
  startHeadscaleScale,
  startWeftScale,
} from './lib/scale-servers.ts';
import type { ChurnCommand, JoinCommand } from './lib/scale-worker.ts';
import { processCpuSeconds } from './lib/servers.ts';

const USAGE = `usage: npm run bench:scale -- [options]

  --nodes N            simulated clients in one tailnet (default 1000)
  --quick              1000 nodes, short phases (under 3 minutes for both servers)
  --json               one JSON object on stdout instead of the table (progress goes to stderr)
  --servers LIST       weft,headscale (default both)
  --workers N          generator processes (default 2)
  --policy NAME        allow-all (default) or groups: the policy in force during the join storm
  --churn N            endpoint changes in the churn phase, one every 100 ms (default 50; quick 20)
  --cpu-prof DIR       run weft with --cpu-prof into DIR
  --help
`;

/** A capability version both servers accept (Tailscale v1.80, the oldest client weft supports). */
const CAP_VERSION = 113;
const CHURN_INTERVAL_MS = 100;
const POLICY_MARKER_PORT = 4242;

const ALLOW_ALL = '{"acls": [{"action": "accept", "src": ["*"], "dst": ["*:*"]}]}';
const GROUPS = `{
  "groups": {"group:bench": ["bench@"]},
  "acls": [{"action": "accept", "src": ["group:bench"], "dst": ["group:bench:22,443"]}]
}`;
/** Touches every node's packet filter: the marker port appears in every filter. */
const CHANGED = `{
  "groups": {"group:bench": ["bench@"]},
  "acls": [{"action": "accept", "src": ["group:bench"], "dst": ["*:${POLICY_MARKER_PORT}"]}]
}`;

interface Settings {
  nodes: number;
  quick: boolean;
  json: boolean;
  servers: ScaleServerName[];
  workers: number;
  policy: 'allow-all' | 'groups';
  churn: number;
  cpuProf: string | undefined;
}

interface Result {
  server: ScaleServerName;
  version: string;
  figures: Record<string, number | null>;
  notes: string[];
  /** What the generator had to do: CPU time, map messages and compressed MiB received. */
  generator?: { cpu_s: number; messages: number; mib: number };
}

interface Metric {
  name: string;
  unit: string;
  better: 'lower' | 'higher';
}

const METRICS: Metric[] = [
  { name: 'join_rate_per_s', unit: 'registrations/s', better: 'higher' },
  { name: 'all_full_maps_s', unit: 's', better: 'lower' },
  { name: 'idle_rss_mib', unit: 'MiB', better: 'lower' },
  { name: 'idle_cpu_pct', unit: '% of one core', better: 'lower' },
  { name: 'churn_p50_ms', unit: 'ms', better: 'lower' },
  { name: 'churn_p99_ms', unit: 'ms', better: 'lower' },
  { name: 'policy_change_all_s', unit: 's', better: 'lower' },
];

function parseSettings(): Settings {
  const { values } = parseArgs({
    options: {
      nodes: { type: 'string' },
      quick: { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
      servers: { type: 'string', default: 'weft,headscale' },
      workers: { type: 'string', default: '2' },
      policy: { type: 'string', default: 'allow-all' },
      churn: { type: 'string' },
      'cpu-prof': { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(USAGE);
    process.exit(0);
  }
  const nodes = values.quick ? 1000 : Number(values.nodes ?? 1000);
  const servers = values.servers.split(',').map((s) => s.trim()) as ScaleServerName[];
  if (!Number.isInteger(nodes) || nodes < 2 || nodes > 20_000) throw new Error('--nodes must be 2..20000');
  if (servers.some((s) => s !== 'weft' && s !== 'headscale'))
    throw new Error('--servers takes weft,headscale');
  if (values.policy !== 'allow-all' && values.policy !== 'groups')
    throw new Error('--policy is allow-all or groups');
  return {
    nodes,
    quick: values.quick,
    json: values.json,
    servers,
    workers: Math.max(1, Number(values.workers)),
    policy: values.policy,
    churn: Number(values.churn ?? (values.quick ? 20 : 50)),
    cpuProf: values['cpu-prof'],
  };
}

function log(text: string): void {
  process.stderr.write(`${text}\n`);
}

function percentile(sorted: number[], p: number): number | null {
  if (sorted.length === 0) return null;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank] ?? null;
}

// ---- generator processes ----

interface Worker {
  child: ChildProcess;
  first: number;
  count: number;
  next(ev: string, timeoutMs: number): Promise<Record<string, unknown>>;
}

function startWorkers(settings: Settings): Worker[] {
  const script = resolve(import.meta.dirname, 'lib/scale-worker.ts');
  const workers: Worker[] = [];
  const per = Math.ceil(settings.nodes / settings.workers);
  for (let w = 0; w < settings.workers; w++) {
    const first = w * per;
    const count = Math.min(per, settings.nodes - first);
    if (count <= 0) break;
    const child = fork(script, [], {
      execArgv: ['--disable-warning=ExperimentalWarning', '--max-old-space-size=8192'],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    const unregister = onProcessExit(() => killQuietly(child.pid, 'SIGKILL'));
    child.once('exit', unregister);
    const inbox: Array<Record<string, unknown>> = [];
    const waiters: Array<() => void> = [];
    child.on('message', (message) => {
      inbox.push(message as Record<string, unknown>);
      for (const wake of waiters.splice(0)) wake();
    });
    const next = async (ev: string, timeoutMs: number) => {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const index = inbox.findIndex((m) => m.ev === ev || m.ev === 'error');
        if (index >= 0) {
          const [message] = inbox.splice(index, 1);
          if (message?.ev === 'error') throw new Error(`generator ${w}: ${String(message.message)}`);
          return message as Record<string, unknown>;
        }
        const left = deadline - Date.now();
        if (left <= 0) throw new Error(`generator ${w}: no '${ev}' within ${timeoutMs} ms`);
        await new Promise<void>((wake) => {
          const timer = setTimeout(wake, left);
          waiters.push(() => {
            clearTimeout(timer);
            wake();
          });
        });
      }
    };
    workers.push({ child, first, count, next });
  }
  return workers;
}

async function stopWorkers(workers: Worker[]): Promise<void> {
  for (const worker of workers) if (worker.child.connected) worker.child.send({ cmd: 'exit' });
  await Promise.all(
    workers.map(
      (w) =>
        new Promise<void>((done) => {
          if (w.child.exitCode !== null) return done();
          const timer = setTimeout(() => {
            killQuietly(w.child.pid, 'SIGKILL');
            done();
          }, 10_000);
          w.child.once('exit', () => {
            clearTimeout(timer);
            done();
          });
        }),
    ),
  );
}

async function reports(workers: Worker[]): Promise<Array<Record<string, unknown>>> {
  for (const w of workers) w.child.send({ cmd: 'report' });
  return Promise.all(workers.map((w) => w.next('report', 60_000)));
}

// ---- phases ----

async function joinStorm(
  server: ScaleServer,
  workers: Worker[],
  settings: Settings,
  result: Result,
): Promise<boolean> {
  const serverKey = await fetchServerKey(server.url, CAP_VERSION);
  const started = now();
  for (const w of workers) {
    const command: JoinCommand = {
      cmd: 'join',
      url: server.url,
      serverKey,
      authKey: server.authKey,
      capVersion: CAP_VERSION,
      first: w.first,
      count: w.count,
      nodes: settings.nodes,
      concurrency: 32,
    };
    w.child.send(command);
  }
  // Quick mode keeps a slow server from stretching the run: it gets a figure of null instead. A storm's
  // work grows as n² (every node must learn of every other), so beyond 5 000 nodes the deadline does too.
  const n = settings.nodes;
  const joinBudget = settings.quick ? 60_000 : Math.max(120_000, n * 60 * Math.max(1, n / 5_000));
  const joined = await Promise.all(workers.map((w) => w.next('joined', joinBudget)));
  const times = joined.flatMap((j) => j.registeredAt as number[]).filter((t) => t > 0);
  const failures = joined.reduce((sum, j) => sum + Number(j.failures), 0);
  if (failures > 0)
    result.notes.push(
      `${failures} registrations failed: ${String(joined.find((j) => j.firstError)?.firstError)}`,
    );
  const lastRegistration = Math.max(...times);
  result.figures.join_rate_per_s = times.length / ((lastRegistration - started) / 1000);
  log(
    `  ${server.name}: ${times.length} registered in ${((lastRegistration - started) / 1000).toFixed(1)} s`,
  );
  if (failures > 0) {
    result.figures.all_full_maps_s = null;
    return false;
  }
  try {
    const fullBudget = settings.quick ? 45_000 : joinBudget;
    const full = await Promise.all(workers.map((w) => w.next('full', fullBudget)));
    result.figures.all_full_maps_s = (Math.max(...full.map((f) => Number(f.at))) - started) / 1000;
    log(
      `  ${server.name}: every client holds all ${settings.nodes - 1} peers after ${result.figures.all_full_maps_s.toFixed(1)} s`,
    );
    return true;
  } catch (err) {
    result.figures.all_full_maps_s = null;
    const counts = (await reports(workers)).map((r) => JSON.stringify(r.peerCounts));
    result.notes.push(
      `not every client got all peers: ${(err as Error).message}; peer counts ${counts.join(' ')}`,
    );
    return false;
  }
}

async function steadyState(server: ScaleServer, settings: Settings, result: Result): Promise<void> {
  await sleep(3_000); // let the storm's tail (write-behind, GC) settle
  const seconds = settings.quick ? 5 : 15;
  const cpu0 = processCpuSeconds(server.pid);
  const t0 = performance.now();
  let rss = 0;
  for (let i = 0; i < seconds; i++) {
    await sleep(1_000);
    rss = Math.max(rss, rssMiB(server.pid));
  }
  const cpu = processCpuSeconds(server.pid) - cpu0;
  result.figures.idle_rss_mib = rss;
  result.figures.idle_cpu_pct = (cpu / ((performance.now() - t0) / 1000)) * 100;
  log(`  ${server.name}: idle RSS ${rss.toFixed(0)} MiB, CPU ${result.figures.idle_cpu_pct.toFixed(1)} %`);
}

async function churn(
  server: ScaleServer,
  workers: Worker[],
  settings: Settings,
  result: Result,
): Promise<void> {
  for (const w of workers) {
    const command: ChurnCommand = {
      cmd: 'churn',
      mover: w.first === 0 ? 0 : -1,
      changes: settings.churn,
      intervalMs: CHURN_INTERVAL_MS,
    };
    w.child.send(command);
  }
  const cpu0 = processCpuSeconds(server.pid);
  await sleep(settings.churn * CHURN_INTERVAL_MS + 5_000);
  const cpu = processCpuSeconds(server.pid) - cpu0;
  const all = await reports(workers);
  const sentAt = (all.find((r) => (r.sentAt as number[]).length > 0)?.sentAt as number[]) ?? [];
  const latencies: number[] = [];
  let missed = 0;
  for (let change = 0; change < settings.churn; change++) {
    let last = 0;
    let seen = 0;
    for (const r of all) {
      const slot = (r.churn as Array<[number, number]>)[change];
      if (slot === undefined) continue;
      last = Math.max(last, slot[0]);
      seen += slot[1];
    }
    const sent = sentAt[change];
    // Every client but the mover must have heard of the change.
    if (sent === undefined || seen < settings.nodes - 1) missed += 1;
    else latencies.push(last - sent);
  }
  latencies.sort((a, b) => a - b);
  result.figures.churn_p50_ms = missed > settings.churn / 2 ? null : percentile(latencies, 50);
  result.figures.churn_p99_ms = missed > 0 ? null : percentile(latencies, 99);
  if (missed > 0)
    result.notes.push(
      `churn: ${missed} of ${settings.churn} changes did not reach every peer within 5 s of the last change`,
    );
  // What one delivery costs the server: its CPU over the phase per peer told (idle CPU is well under 1 %).
  const perDelivery = (cpu * 1e6) / (settings.churn * (settings.nodes - 1));
  log(`  ${server.name}: churn CPU ${cpu.toFixed(2)} s, ${perDelivery.toFixed(0)} µs per peer told`);
  log(
    `  ${server.name}: churn p50 ${result.figures.churn_p50_ms?.toFixed(0) ?? '—'} ms, p99 ${result.figures.churn_p99_ms?.toFixed(0) ?? '—'} ms (${missed} missed)`,
  );
}

async function policyChange(
  server: ScaleServer,
  workers: Worker[],
  settings: Settings,
  result: Result,
): Promise<void> {
  for (const w of workers) w.child.send({ cmd: 'policy-watch', marker: `"First":${POLICY_MARKER_PORT}` });
  const started = now();
  await server.setPolicy(CHANGED);
  const deadline = Date.now() + (settings.quick ? 15_000 : Math.max(60_000, settings.nodes * 20));
  for (;;) {
    const all = await reports(workers);
    const count = all.reduce((sum, r) => sum + Number((r.policy as { count: number }).count), 0);
    if (count >= settings.nodes) {
      const last = Math.max(...all.map((r) => Number((r.policy as { last: number }).last)));
      result.figures.policy_change_all_s = (last - started) / 1000;
      log(
        `  ${server.name}: every client got the new packet filter after ${result.figures.policy_change_all_s.toFixed(2)} s`,
      );
      return;
    }
    if (Date.now() > deadline) {
      result.figures.policy_change_all_s = null;
      result.notes.push(
        `policy change: only ${count} of ${settings.nodes} clients got the new filter in time`,
      );
      return;
    }
    await sleep(250);
  }
}

async function runServer(name: ScaleServerName, settings: Settings): Promise<Result> {
  const result: Result = { server: name, version: '', figures: {}, notes: [] };
  for (const metric of METRICS) result.figures[metric.name] = null;
  let server: ScaleServer | undefined;
  let workers: Worker[] = [];
  try {
    if (name === 'weft') {
      const env: Record<string, string> = {};
      if (settings.cpuProf !== undefined) {
        await mkdir(settings.cpuProf, { recursive: true });
        env.NODE_OPTIONS = `--cpu-prof --cpu-prof-dir=${resolve(settings.cpuProf)}`;
      }
      server = await startWeftScale(env);
    } else {
      const binary = await headscaleBinary();
      server = await startHeadscaleScale(binary.path, binary.version);
    }
    result.version = server.version;
    log(`${name} ${server.version}: ${settings.nodes} nodes, policy ${settings.policy}`);
    await server.setPolicy(settings.policy === 'groups' ? GROUPS : ALLOW_ALL);
    workers = startWorkers(settings);
    // Later phases run even when the storm did not settle: their own figures then say what they can.
    await joinStorm(server, workers, settings, result);
    await steadyState(server, settings, result);
    await churn(server, workers, settings, result);
    await policyChange(server, workers, settings, result);
    const final = await reports(workers);
    const errors = final.reduce((sum, r) => sum + Number(r.errors), 0);
    if (errors > 0)
      result.notes.push(
        `the server ended ${errors} map streams during the run; the clients reconnected (last reason: ${String(final.find((r) => r.firstError)?.firstError)})`,
      );
    const sum = (key: string) => final.reduce((total, r) => total + Number(r[key]), 0);
    result.generator = { cpu_s: sum('cpuSeconds'), messages: sum('messages'), mib: sum('bytes') / 2 ** 20 };
    if (process.env.BENCH_SCALE_DEBUG) log(server?.output().slice(-4000) ?? '');
  } catch (err) {
    result.notes.push(`aborted: ${(err as Error).message}`);
    log(`  ${name}: aborted: ${(err as Error).message}`);
  } finally {
    await stopWorkers(workers);
    await server?.stop();
  }
  return result;
}

function format(value: number | null | undefined): string {
  if (value === null || value === undefined) return '—';
  return value >= 100 ? value.toFixed(0) : value >= 10 ? value.toFixed(1) : value.toFixed(2);
}

function ratio(
  metric: Metric,
  weft: number | null | undefined,
  headscale: number | null | undefined,
): string {
  if (weft == null || headscale == null || weft === 0 || headscale === 0) return '—';
  // Always "times better": above 1 means weft is better on this metric.
  const r = metric.better === 'higher' ? weft / headscale : headscale / weft;
  return `${r.toFixed(2)}×`;
}

async function main(): Promise<void> {
  const settings = parseSettings();
  const results: Result[] = [];
  for (const name of settings.servers) results.push(await runServer(name, settings));
  const byName = (name: ScaleServerName) => results.find((r) => r.server === name);
  const weft = byName('weft');
  const headscale = byName('headscale');
  if (settings.json) {
    const out = {
      nodes: settings.nodes,
      policy: settings.policy,
      machine: {
        cpu: cpus()[0]?.model ?? 'unknown',
        cores: cpus().length,
        memory_gib: Math.round(totalmem() / 2 ** 30),
        kernel: release(),
        node: process.version,
      },
      versions: Object.fromEntries(results.map((r) => [r.server, r.version])),
      metrics: METRICS.map((m) => ({
        name: m.name,
        unit: m.unit,
        weft: weft?.figures[m.name] ?? null,
        headscale: headscale?.figures[m.name] ?? null,
        better: m.better,
      })),
      notes: Object.fromEntries(results.map((r) => [r.server, r.notes])),
      generator: Object.fromEntries(results.map((r) => [r.server, r.generator ?? null])),
    };
    process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
    return;
  }
  const lines = [
    `| metric (${settings.nodes} nodes, ${settings.policy}) | weft | headscale | weft better by |`,
    '| --- | ---: | ---: | ---: |',
    ...METRICS.map(
      (m) =>
        `| ${m.name} (${m.unit}) | ${format(weft?.figures[m.name])} | ${format(headscale?.figures[m.name])} | ${ratio(m, weft?.figures[m.name], headscale?.figures[m.name])} |`,
    ),
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
  for (const r of results) {
    if (r.generator)
      process.stdout.write(
        `- ${r.server}: the generator received ${r.generator.messages} map messages (${r.generator.mib.toFixed(0)} MiB compressed) and used ${r.generator.cpu_s.toFixed(0)} s of CPU\n`,
      );
    for (const note of r.notes) process.stdout.write(`- ${r.server}: ${note}\n`);
  }
}

main().catch((err: Error) => {
  process.stderr.write(`bench:scale failed: ${err.stack ?? err.message}\n`);
  process.exitCode = 1;
});
