/**
 * Reads V8 .cpuprofile files (what `node --cpu-prof` writes) and ranks functions by self time and by
 * total (inclusive) time, so a benchmark can say where a server spends its CPU.
 *
 *   node bench/lib/cpuprofile.ts <file.cpuprofile> [filter-substring] [limit]
 */
import { readFileSync } from 'node:fs';
import { relative } from 'node:path';
import { fileURLToPath } from 'node:url';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
  children?: number[];
}

interface Profile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface FunctionCost {
  /** `name (file:line)`. */
  name: string;
  file: string;
  selfMs: number;
  totalMs: number;
  selfShare: number;
  totalShare: number;
}

export interface ProfileSummary {
  /** Sampled wall time of the profile (ms). */
  durationMs: number;
  /** Time in samples that were not idle / (program) / (garbage collector) split out below. */
  busyMs: number;
  idleMs: number;
  gcMs: number;
  functions: FunctionCost[];
}

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

function fileOf(url: string): string {
  if (url === '') return '';
  const path = url.startsWith('file://') ? fileURLToPath(url) : url;
  return path.startsWith(ROOT) ? relative(ROOT, path) : path;
}

export function summarizeProfile(path: string): ProfileSummary {
  const profile = JSON.parse(readFileSync(path, 'utf8')) as Profile;
  const byId = new Map<number, ProfileNode>();
  const parent = new Map<number, number>();
  for (const node of profile.nodes) {
    byId.set(node.id, node);
    for (const child of node.children ?? []) parent.set(child, node.id);
  }
  const selfUs = new Map<number, number>();
  for (let i = 0; i < profile.samples.length; i += 1) {
    const id = profile.samples[i] as number;
    // timeDeltas[i] is the time before sample i; attribute the following interval to it instead.
    const dt = profile.timeDeltas[i + 1] ?? 0;
    selfUs.set(id, (selfUs.get(id) ?? 0) + dt);
  }
  const keyOf = (node: ProfileNode) => {
    const { functionName, url, lineNumber } = node.callFrame;
    const file = fileOf(url);
    return `${functionName || '(anonymous)'}${file === '' ? '' : ` (${file}:${lineNumber + 1})`}`;
  };
  const self = new Map<string, number>();
  const total = new Map<string, number>();
  const files = new Map<string, string>();
  let idle = 0;
  let gc = 0;
  let all = 0;
  for (const [id, us] of selfUs) {
    const node = byId.get(id) as ProfileNode;
    all += us;
    const key = keyOf(node);
    if (key === '(idle)') idle += us;
    if (key === '(garbage collector)') gc += us;
    self.set(key, (self.get(key) ?? 0) + us);
    // Inclusive time: once per distinct function on the stack (recursion is not double-counted).
    const seen = new Set<string>();
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const frame = byId.get(at) as ProfileNode;
      const k = keyOf(frame);
      files.set(k, fileOf(frame.callFrame.url));
      if (seen.has(k)) continue;
      seen.add(k);
      total.set(k, (total.get(k) ?? 0) + us);
    }
  }
  const busy = all - idle;
  const functions = [...total.keys()]
    .filter((k) => k !== '(root)' && k !== '(idle)')
    .map((name) => ({
      name,
      file: files.get(name) ?? '',
      selfMs: (self.get(name) ?? 0) / 1000,
      totalMs: (total.get(name) ?? 0) / 1000,
      selfShare: busy > 0 ? (self.get(name) ?? 0) / busy : 0,
      totalShare: busy > 0 ? (total.get(name) ?? 0) / busy : 0,
    }));
  return { durationMs: all / 1000, busyMs: busy / 1000, idleMs: idle / 1000, gcMs: gc / 1000, functions };
}

/** A plain-text ranking: the top `limit` by self time, then by total time, optionally only `filter` files. */
export function formatProfile(summary: ProfileSummary, limit = 25, filter?: string): string {
  const pct = (x: number) => `${(x * 100).toFixed(1).padStart(5)} %`;
  const pick = (fs: FunctionCost[]) =>
    filter === undefined ? fs : fs.filter((f) => f.file.includes(filter));
  const lines = [
    `profile: ${summary.durationMs.toFixed(0)} ms sampled, ${summary.busyMs.toFixed(0)} ms busy, ` +
      `${summary.idleMs.toFixed(0)} ms idle, GC ${summary.gcMs.toFixed(0)} ms` +
      (filter === undefined ? '' : `; only ${filter}`),
    '  self time (share of busy)',
  ];
  for (const f of pick([...summary.functions].sort((a, b) => b.selfMs - a.selfMs)).slice(0, limit)) {
    lines.push(`    ${pct(f.selfShare)} ${f.selfMs.toFixed(0).padStart(7)} ms  ${f.name}`);
  }
  lines.push('  total time (inclusive, share of busy)');
  for (const f of pick([...summary.functions].sort((a, b) => b.totalMs - a.totalMs)).slice(0, limit)) {
    lines.push(`    ${pct(f.totalShare)} ${f.totalMs.toFixed(0).padStart(7)} ms  ${f.name}`);
  }
  return lines.join('\n');
}

if (process.argv[1] !== undefined && import.meta.url === `file://${process.argv[1]}`) {
  const [file, filter, limit] = process.argv.slice(2);
  if (file === undefined) {
    process.stderr.write('usage: node bench/lib/cpuprofile.ts <file.cpuprofile> [filter] [limit]\n');
    process.exit(2);
  }
  process.stdout.write(`${formatProfile(summarizeProfile(file), Number(limit ?? 25), filter)}\n`);
}
