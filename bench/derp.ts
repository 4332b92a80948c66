/**
 * DERP relay and STUN benchmark: weft's embedded relay against the official derper, side by side on
 * loopback. See bench/README.md ("DERP and STUN") for what is measured and how to read it.
 *
 *   npm run bench:derp -- [--seconds N | --quick] [--json] [--workers N] [--cpu-prof DIR] …
 *
 * Both servers run as separate processes, started once and kept up for the whole run; the load
 * generator runs in this process (or in worker threads with --workers). Phases run one server at a
 * time, alternating between the servers, each for a fixed time: a short warm-up, then the measured
 * window (and, for the relay, a bounded drain so that the drop rate counts what was still in flight).
 */
import { readdirSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { availableParallelism, cpus, release, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { formatProfile, summarizeProfile } from './lib/cpuprofile.ts';
import {
  COUNTER_BYTES,
  COUNTER_ERRORS,
  COUNTER_RECEIVED,
  COUNTER_SENT,
  inProcessGenerator,
  type RelayGenerator,
  type RelayLoadOptions,
  workerGenerator,
} from './lib/relay.ts';
import { type BenchServer, processCpuSeconds, startDerperServer, startWeftServer } from './lib/servers.ts';
import { loopbackSource, probeStun, StunLoad } from './lib/stun-load.ts';

const USAGE = `usage: node bench/derp.ts [options]

  --seconds N          measured time per phase (default 5)
  --quick              2-second phases (same as --seconds 2)
  --json               print one JSON object with every figure instead of the table
  --pairs LIST         relay pair counts, comma-separated (default 1,50)
  --packet-size N      relay packet size in bytes (default 1280)
  --window N           also run the relay phases with at most N packets in flight per pair
                       (default 32, the servers' per-client queue depth; 0 skips those phases)
  --frames-per-write N relay frames per socket write by each sender (default 1)
  --workers N          run the relay load in N worker threads (default 0: in this thread)
  --stun-clients N     STUN client sockets, each from its own 127.x source address (default 8)
  --stun-window N      outstanding STUN requests per client (default 64)
  --stun-spread N      also run STUN round-robin over N source addresses (default 8192; 0 skips)
  --servers LIST       weft,derper (default both)
  --cpu-prof DIR       run weft with --cpu-prof into DIR and print its hottest functions
  --help
`;

type ServerName = 'weft' | 'derper';

interface Settings {
  seconds: number;
  warmupSeconds: number;
  json: boolean;
  pairs: number[];
  packetSize: number;
  window: number;
  framesPerWrite: number;
  workers: number;
  stunClients: number;
  stunWindow: number;
  stunSpread: number;
  stunTimeoutMs: number;
  servers: ServerName[];
  cpuProfDir: string | undefined;
}

function wholeNumber(name: string, text: string | undefined, fallback: number, min = 1): number {
  if (text === undefined) return fallback;
  const value = Number(text);
  if (!Number.isInteger(value) || value < min) throw new Error(`--${name} must be a whole number ≥ ${min}`);
  return value;
}

function parseSettings(argv: string[]): Settings {
  const { values } = parseArgs({
    args: argv,
    options: {
      seconds: { type: 'string' },
      quick: { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
      pairs: { type: 'string' },
      'packet-size': { type: 'string' },
      window: { type: 'string' },
      'frames-per-write': { type: 'string' },
      workers: { type: 'string' },
      'stun-clients': { type: 'string' },
      'stun-window': { type: 'string' },
      'stun-spread': { type: 'string' },
      servers: { type: 'string' },
      'cpu-prof': { type: 'string' },
      help: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(USAGE);
    process.exit(0);
  }
  const seconds = values.seconds !== undefined ? Number(values.seconds) : values.quick ? 2 : 5;
  if (!(seconds > 0 && seconds <= 600)) throw new Error('--seconds must be more than 0 and at most 600');
  const servers = (values.servers ?? 'weft,derper').split(',').map((s) => s.trim());
  for (const s of servers) if (s !== 'weft' && s !== 'derper') throw new Error(`unknown server ${s}`);
  const packetSize = wholeNumber('packet-size', values['packet-size'], 1280);
  if (packetSize > 65_536) throw new Error('--packet-size must be at most 65536 (DERP limit)');
  const stunSpread = wholeNumber('stun-spread', values['stun-spread'], 8192, 0);
  if (stunSpread > 60_000) throw new Error('--stun-spread must be at most 60000');
  return {
    seconds,
    warmupSeconds: Math.min(1, Math.max(0.5, seconds / 5)),
    json: values.json,
    pairs: (values.pairs ?? '1,50').split(',').map((p) => wholeNumber('pairs', p.trim(), 1)),
    packetSize,
    window: wholeNumber('window', values.window, 32, 0),
    framesPerWrite: wholeNumber('frames-per-write', values['frames-per-write'], 1),
    workers: wholeNumber('workers', values.workers, 0, 0),
    stunClients: wholeNumber('stun-clients', values['stun-clients'], 8),
    stunWindow: wholeNumber('stun-window', values['stun-window'], 64),
    stunSpread,
    stunTimeoutMs: 250,
    servers: servers as ServerName[],
    cpuProfDir: values['cpu-prof'] === undefined ? undefined : resolve(values['cpu-prof']),
  };
}

function progress(message: string): void {
  process.stderr.write(`[bench:derp] ${message}\n`);
}

// ---------------------------------------------------------------------------------------------------
// Measurements

interface Snapshot {
  at: number;
  serverCpu: number;
  generatorCpu: number;
}

function snapshot(server: BenchServer): Snapshot {
  const usage = process.cpuUsage();
  return {
    at: performance.now(),
    serverCpu: processCpuSeconds(server.pid),
    generatorCpu: (usage.user + usage.system) / 1e6,
  };
}

interface CpuFigures {
  /** Length of the measured window (s). */
  seconds: number;
  /** Server CPU time (all threads) over the window, in percent of one core. */
  serverCpuPercent: number;
  /** This process (all threads) over the window, in percent of one core. */
  generatorCpuPercent: number;
}

function cpuFigures(a: Snapshot, b: Snapshot): CpuFigures {
  const seconds = (b.at - a.at) / 1000;
  return {
    seconds,
    serverCpuPercent: ((b.serverCpu - a.serverCpu) / seconds) * 100,
    generatorCpuPercent: ((b.generatorCpu - a.generatorCpu) / seconds) * 100,
  };
}

export interface RelayResult extends CpuFigures {
  kind: 'relay';
  pairs: number;
  /** 0 = flood. */
  window: number;
  sentPerSecond: number;
  deliveredPerSecond: number;
  deliveredMiBPerSecond: number;
  /** 1 − delivered/sent over the whole phase (warm-up, window, and the drain after the senders stop). */
  dropRate: number;
  /** Server CPU per delivered packet in the window (µs). */
  serverCpuUsPerPacket: number;
  totalSent: number;
  totalDelivered: number;
  /** Connections that closed during the phase (should be 0). */
  connectionErrors: number;
  /** Server-side counter deltas over the window, where the server exposes them (weft's metrics). */
  serverCounters: Record<string, number>;
}

async function relayPhase(
  server: BenchServer,
  pairs: number,
  window: number,
  settings: Settings,
): Promise<RelayResult> {
  const options: RelayLoadOptions = {
    url: server.derpUrl,
    pairs,
    packetSize: settings.packetSize,
    framesPerWrite: settings.framesPerWrite,
    window,
  };
  const generator: RelayGenerator =
    settings.workers > 0 ? await workerGenerator(options, settings.workers) : inProcessGenerator(options);
  try {
    await generator.connect();
    generator.start();
    await sleep(settings.warmupSeconds * 1000);
    const countersA = await server.counters();
    const a = snapshot(server);
    const ca = generator.read();
    await sleep(settings.seconds * 1000);
    const cb = generator.read();
    const b = snapshot(server);
    const countersB = await server.counters();
    await generator.stop();
    // Let what is still in flight arrive: done when nothing arrived for 300 ms (at most 3 s).
    const drainDeadline = performance.now() + 3_000;
    let last = generator.read()[COUNTER_RECEIVED];
    while (performance.now() < drainDeadline) {
      await sleep(300);
      const now = generator.read()[COUNTER_RECEIVED];
      if (now === last) break;
      last = now;
    }
    const cc = generator.read();
    const cpu = cpuFigures(a, b);
    const at = (c: Float64Array, i: number) => c[i] ?? 0;
    const delivered = at(cb, COUNTER_RECEIVED) - at(ca, COUNTER_RECEIVED);
    const serverCounters: Record<string, number> = {};
    for (const [name, value] of Object.entries(countersB)) {
      if (name !== 'connections' && name !== 'clients') serverCounters[name] = value - (countersA[name] ?? 0);
    }
    const totalSent = at(cc, COUNTER_SENT);
    const totalDelivered = at(cc, COUNTER_RECEIVED);
    return {
      kind: 'relay',
      pairs,
      window,
      ...cpu,
      sentPerSecond: (at(cb, COUNTER_SENT) - at(ca, COUNTER_SENT)) / cpu.seconds,
      deliveredPerSecond: delivered / cpu.seconds,
      deliveredMiBPerSecond: (at(cb, COUNTER_BYTES) - at(ca, COUNTER_BYTES)) / cpu.seconds / 2 ** 20,
      dropRate: totalSent > 0 ? Math.max(0, 1 - totalDelivered / totalSent) : 0,
      serverCpuUsPerPacket: delivered > 0 ? ((b.serverCpu - a.serverCpu) / delivered) * 1e6 : 0,
      totalSent,
      totalDelivered,
      connectionErrors: at(cc, COUNTER_ERRORS),
      serverCounters,
    };
  } finally {
    await generator.close();
  }
}

export interface StunResult extends CpuFigures {
  kind: 'stun';
  sources: number;
  /** Outstanding requests per source, or in all when `roundRobin`. */
  window: number;
  roundRobin: boolean;
  sentPerSecond: number;
  responsesPerSecond: number;
  /** Requests that got no answer within the timeout, per second (dropped or rate-limited). */
  unansweredPerSecond: number;
  invalid: number;
  /** NaN when the server was nearly idle (the figure would be noise). */
  serverCpuUsPerResponse: number;
}

async function stunPhase(
  server: BenchServer,
  sourceCount: number,
  window: number,
  roundRobin: boolean,
  settings: Settings,
): Promise<StunResult> {
  const sources = Array.from({ length: sourceCount }, (_, i) => loopbackSource(i));
  const load = new StunLoad({
    port: server.stunPort,
    sources,
    window,
    roundRobin,
    timeoutMs: settings.stunTimeoutMs,
  });
  await load.open();
  try {
    load.start();
    await sleep(settings.warmupSeconds * 1000);
    const ca = { ...load.counters };
    const a = snapshot(server);
    await sleep(settings.seconds * 1000);
    const cb = { ...load.counters };
    const b = snapshot(server);
    load.stop();
    const cpu = cpuFigures(a, b);
    const valid = cb.valid - ca.valid;
    return {
      kind: 'stun',
      sources: sourceCount,
      window,
      roundRobin,
      ...cpu,
      sentPerSecond: (cb.sent - ca.sent) / cpu.seconds,
      responsesPerSecond: valid / cpu.seconds,
      unansweredPerSecond: (cb.timedOut - ca.timedOut) / cpu.seconds,
      invalid: cb.invalid,
      // Below ~10 % of a core the server's idle background (timers, GC) swamps the per-response cost.
      serverCpuUsPerResponse:
        valid > 0 && cpu.serverCpuPercent >= 10 ? ((b.serverCpu - a.serverCpu) / valid) * 1e6 : Number.NaN,
    };
  } finally {
    await load.close();
  }
}

// ---------------------------------------------------------------------------------------------------
// Phases

type PhaseResult = RelayResult | StunResult;

interface Phase {
  id: string;
  label: string;
  run(server: BenchServer): Promise<PhaseResult>;
}

function phases(settings: Settings): Phase[] {
  const list: Phase[] = [];
  const { packetSize } = settings;
  const windows = settings.window > 0 ? [0, settings.window] : [0];
  for (const window of windows) {
    for (const pairs of settings.pairs) {
      const mode = window === 0 ? 'flood' : `window ${window}`;
      list.push({
        id: `relay-${window === 0 ? 'flood' : `window${window}`}-${pairs}`,
        label: `DERP ${pairs} pair${pairs === 1 ? '' : 's'}, ${packetSize} B, ${mode}`,
        run: (server) => relayPhase(server, pairs, window, settings),
      });
    }
  }
  const { stunClients, stunWindow, stunSpread } = settings;
  list.push({
    id: 'stun',
    label: `STUN ${stunClients} sources × window ${stunWindow}`,
    run: (server) => stunPhase(server, stunClients, stunWindow, false, settings),
  });
  if (stunSpread > 0) {
    const window = stunClients * stunWindow;
    list.push({
      id: 'stun-spread',
      label: `STUN ${stunSpread} sources round-robin, window ${window}`,
      run: (server) => stunPhase(server, stunSpread, window, true, settings),
    });
  }
  return list;
}

function describe(result: PhaseResult): string {
  if (result.kind === 'relay') {
    return (
      `${integer(result.deliveredPerSecond)} packets/s delivered (${integer(result.sentPerSecond)} sent), ` +
      `${oneDecimal(result.deliveredMiBPerSecond)} MiB/s, drop ${percent(result.dropRate)}, ` +
      `server CPU ${cpuPercent(result.serverCpuPercent)}, generator CPU ${cpuPercent(result.generatorCpuPercent)}` +
      (result.connectionErrors > 0 ? `, ${result.connectionErrors} connection(s) lost` : '')
    );
  }
  return (
    `${integer(result.responsesPerSecond)} responses/s, ${integer(result.unansweredPerSecond)} unanswered/s, ` +
    `server CPU ${cpuPercent(result.serverCpuPercent)}, generator CPU ${cpuPercent(result.generatorCpuPercent)}`
  );
}

// ---------------------------------------------------------------------------------------------------
// Report

interface Row {
  metric: string;
  weft: number | undefined;
  derper: number | undefined;
  format: (value: number) => string;
  /** False for figures where weft/derper means nothing (drop rates, the generator's own CPU). */
  ratio: boolean;
}

const integer = (v: number) => Math.round(v).toLocaleString('en-US');
const oneDecimal = (v: number) => v.toFixed(1);
const percent = (v: number) => `${(v * 100).toFixed(1)} %`;
const cpuPercent = (v: number) => `${v.toFixed(0)} %`;
const micros = (v: number) => `${v.toFixed(2)} µs`;

type Results = Partial<Record<ServerName, Record<string, PhaseResult>>>;

function buildRows(results: Results, list: Phase[]): Row[] {
  const rows: Row[] = [];
  for (const phase of list) {
    const add = <R extends PhaseResult>(
      metric: string,
      pick: (r: R) => number,
      format: (v: number) => string,
      ratio = true,
    ) => {
      const value = (name: ServerName) => {
        const r = results[name]?.[phase.id] as R | undefined;
        const v = r === undefined ? undefined : pick(r);
        return v === undefined || Number.isNaN(v) ? undefined : v;
      };
      rows.push({
        metric: `${phase.label}: ${metric}`,
        weft: value('weft'),
        derper: value('derper'),
        format,
        ratio,
      });
    };
    if (phase.id.startsWith('relay')) {
      add<RelayResult>('delivered packets/s', (r) => r.deliveredPerSecond, integer);
      add<RelayResult>('delivered MiB/s', (r) => r.deliveredMiBPerSecond, oneDecimal);
      if (phase.id.startsWith('relay-flood'))
        add<RelayResult>('sent packets/s', (r) => r.sentPerSecond, integer);
      add<RelayResult>('drop rate', (r) => r.dropRate, percent, false);
      add<RelayResult>('server CPU', (r) => r.serverCpuPercent, cpuPercent);
      add<RelayResult>('server CPU per delivered packet', (r) => r.serverCpuUsPerPacket, micros);
      add<RelayResult>('load generator CPU', (r) => r.generatorCpuPercent, cpuPercent, false);
    } else {
      add<StunResult>('responses/s', (r) => r.responsesPerSecond, integer);
      add<StunResult>('unanswered/s', (r) => r.unansweredPerSecond, integer, false);
      add<StunResult>('server CPU', (r) => r.serverCpuPercent, cpuPercent);
      add<StunResult>('server CPU per response', (r) => r.serverCpuUsPerResponse, micros);
      add<StunResult>('load generator CPU', (r) => r.generatorCpuPercent, cpuPercent, false);
    }
  }
  return rows;
}

function ratioOf(row: Row): number | undefined {
  return row.ratio && row.weft !== undefined && row.derper !== undefined && row.derper > 0
    ? row.weft / row.derper
    : undefined;
}

function renderTable(rows: Row[]): string {
  const cells = rows.map((row) => {
    const show = (v: number | undefined) => (v === undefined ? '—' : row.format(v));
    return [row.metric, show(row.weft), show(row.derper), ratioOf(row)?.toFixed(2) ?? '—'];
  });
  const header = ['metric', 'weft', 'derper', 'weft/derper'];
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => (c[i] ?? '').length)));
  const line = (c: string[]) =>
    c.map((cell, i) => (i === 0 ? cell.padEnd(widths[i] ?? 0) : cell.padStart(widths[i] ?? 0))).join('  ');
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...cells.map(line)].join('\n');
}

function machine(servers: BenchServer[]) {
  return {
    cpu: cpus()[0]?.model.trim() ?? 'unknown',
    cores: availableParallelism(),
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    kernel: release(),
    node: process.version,
    weft: servers.find((s) => s.name === 'weft')?.version,
    derper: servers.find((s) => s.name === 'derper')?.version,
  };
}

// ---------------------------------------------------------------------------------------------------
// Main

async function startServers(settings: Settings, servers: BenchServer[]): Promise<void> {
  if (settings.servers.includes('weft')) {
    const env: Record<string, string> = {};
    if (settings.cpuProfDir !== undefined) {
      await mkdir(settings.cpuProfDir, { recursive: true });
      env.NODE_OPTIONS =
        `${process.env.NODE_OPTIONS ?? ''} --cpu-prof --cpu-prof-dir=${settings.cpuProfDir}`.trim();
    }
    servers.push(await startWeftServer({ env }));
  }
  if (settings.servers.includes('derper')) servers.push(await startDerperServer());
  for (const server of servers) {
    await probeStun(server.stunPort);
    progress(
      `${server.name} ${server.version} up (pid ${server.pid}, ${server.derpUrl}, STUN port ${server.stunPort})`,
    );
  }
}

function profileReport(dir: string): string | undefined {
  const file = readdirSync(dir)
    .filter((f) => f.endsWith('.cpuprofile'))
    .sort()
    .at(-1);
  if (file === undefined) {
    progress(`no .cpuprofile in ${dir} (weft did not exit cleanly?)`);
    return undefined;
  }
  const summary = summarizeProfile(join(dir, file));
  return [join(dir, file), formatProfile(summary, 25), '', formatProfile(summary, 25, 'src/derp/')].join(
    '\n',
  );
}

async function main(): Promise<void> {
  let settings: Settings;
  try {
    settings = parseSettings(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n\n${USAGE}`);
    process.exitCode = 2;
    return;
  }
  const list = phases(settings);
  const servers: BenchServer[] = [];
  const results: Results = {};
  try {
    await startServers(settings, servers);
    progress(
      `phases: ${settings.warmupSeconds} s warm-up + ${settings.seconds} s measured; relay load ` +
        (settings.workers > 0 ? `in ${settings.workers} worker thread(s)` : 'in this process'),
    );
    // Phase by phase, servers alternating, so drift over the run affects both alike.
    for (const phase of list) {
      for (const server of servers) {
        progress(`${server.name}: ${phase.label}`);
        const result = await phase.run(server);
        results[server.name] = { ...results[server.name], [phase.id]: result };
        progress(`  ${describe(result)}`);
      }
    }
  } catch (err) {
    progress(`failed: ${(err as Error).stack ?? String(err)}`);
    for (const server of servers) progress(`${server.name} output (tail):\n${server.output().slice(-4000)}`);
    process.exitCode = 1;
  } finally {
    await Promise.all(servers.map((s) => s.stop().catch(() => undefined)));
  }
  if (process.exitCode === 1) return;

  const profile = settings.cpuProfDir === undefined ? undefined : profileReport(settings.cpuProfDir);
  const rows = buildRows(results, list);
  const info = machine(servers);
  const generator = settings.workers > 0 ? `${settings.workers} worker thread(s)` : 'in-process';
  if (settings.json) {
    const table = rows.map((row) => ({
      metric: row.metric,
      weft: row.weft ?? null,
      derper: row.derper ?? null,
      ratio: ratioOf(row) ?? null,
    }));
    process.stdout.write(
      `${JSON.stringify({ machine: info, settings: { ...settings, generator }, results, table }, null, 2)}\n`,
    );
    if (profile !== undefined) process.stderr.write(`weft CPU profile: ${profile}\n`);
    return;
  }
  const out = [
    `machine: ${info.cpu}, ${info.cores} cores, ${info.memoryGiB} GiB, Linux ${info.kernel}, Node ${info.node}`,
    `servers: weft ${info.weft ?? '—'} (bin/weft serve), derper ${info.derper ?? '—'}; loopback, plain HTTP`,
    `phases: ${settings.warmupSeconds} s warm-up + ${settings.seconds} s measured; load generator ${generator}, ` +
      `${settings.framesPerWrite} frame(s) per write`,
    '',
    renderTable(rows),
  ];
  if (profile !== undefined) out.push('', `weft CPU profile: ${profile}`);
  process.stdout.write(`${out.join('\n')}\n`);
}

await main();
