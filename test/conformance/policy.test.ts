/**
 * Policy conformance: every capture in WEFT_POLICY_CASES (default ../shared/conformance/policy) is
 * replayed through weft's policy engine and compared with what Tailscale's own control plane sent
 * each node: packet filter, SSH rules, peers with their AllowedIPs, nodeAttrs capabilities, and
 * auto-approved routes; refused policies must be refused with Tailscale's message.
 *
 * No case-specific code: any folder of captures in the same format runs the same way. All mismatches
 * of a case are reported together, one line per node and check.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, test } from 'node:test';
import {
  autoApprovedRoutes,
  type CompiledPolicy,
  checkPolicy,
  PolicyError,
  parsePolicy,
} from '../../src/policy/index.ts';
import type { CapGrant, FilterRule, NetPortRange } from '../../src/tailcfg/index.ts';
import { type CapturedNode, firstLabel, loadPolicyCases, type PolicyCase } from './policy-cases.ts';

const REPO = resolve(import.meta.dirname, '../..');
const DIR = process.env.WEFT_POLICY_CASES ? resolve(REPO, process.env.WEFT_POLICY_CASES) : defaultCasesDir();
/** The captures' holdAndDelegate URLs start with this. */
const SERVER_URL = 'https://unused';

/**
 * `../shared/conformance/policy` beside the project. A clean clone made elsewhere (CI clones main into
 * a scratch folder) finds it beside the repository it was cloned from.
 */
function defaultCasesDir(): string {
  const beside = (root: string) => resolve(root, '../shared/conformance/policy');
  if (existsSync(beside(REPO))) return beside(REPO);
  const config = existsSync(join(REPO, '.git/config')) ? readFileSync(join(REPO, '.git/config'), 'utf8') : '';
  const origin = /\[remote "origin"\][^[]*?url\s*=\s*(\S+)/.exec(config)?.[1];
  if (origin !== undefined && !origin.includes('://') && existsSync(beside(resolve(REPO, origin))))
    return beside(resolve(REPO, origin));
  return beside(REPO);
}

// ---- comparison helpers ----

/** What a client would receive: fields set to undefined disappear, as in the JSON on the wire. */
function wire(value: unknown): unknown {
  return value === undefined ? undefined : JSON.parse(JSON.stringify(value));
}

/** JSON with object keys sorted, for ordering values whose key order does not matter. */
function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonical(v)}`).join(',')}}`;
  }
  return JSON.stringify(value) ?? 'undefined';
}

function byText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function byDstPort(a: NetPortRange, b: NetPortRange): number {
  return byText(a.IP, b.IP) || a.Ports.First - b.Ports.First || a.Ports.Last - b.Ports.Last;
}

/**
 * Order inside a rule does not matter to the client; rule order and grouping do. Empty lists equal
 * absent ones (Go's omitempty), so a missing IPProto and [] compare equal.
 */
function normalizeFilter(rules: readonly FilterRule[] | null | undefined): unknown[] {
  const list = (wire(rules ?? []) ?? []) as FilterRule[];
  return list.map((rule) => {
    const { SrcIPs, DstPorts, IPProto, CapGrant: grants, ...rest } = rule;
    const out: Record<string, unknown> = { SrcIPs: [...(SrcIPs ?? [])].sort(byText), ...rest };
    if (DstPorts?.length) out.DstPorts = [...DstPorts].sort(byDstPort);
    if (IPProto?.length) out.IPProto = [...IPProto].sort((a, b) => a - b);
    if (grants?.length)
      out.CapGrant = grants
        .map((g): CapGrant => ({ ...g, Dsts: [...g.Dsts].sort(byText) }))
        .sort((a, b) => byText(canonical(a), canonical(b)));
    return out;
  });
}

function short(value: unknown): string {
  const text = value === undefined ? '(absent)' : JSON.stringify(value);
  return text.length > 2000 ? `${text.slice(0, 2000)}… (${text.length} chars)` : text;
}

function mismatch(problems: string[], what: string, got: unknown, want: unknown): void {
  try {
    assert.deepStrictEqual(got, want);
  } catch {
    problems.push(`${what}\n      want ${short(want)}\n      got  ${short(got)}`);
  }
}

function crashed(err: unknown): string {
  const text = err instanceof Error ? (err.stack ?? `${err.name}: ${err.message}`) : String(err);
  return text.split('\n').slice(0, 6).join('\n      ');
}

function asList(value: unknown): unknown[] {
  return Array.isArray(value) ? value : [];
}

/** The capability names the policy itself sets (nodeAttrs attr/app, top-level randomizeClientPort). */
function policyCaps(doc: Record<string, unknown>): string[] | undefined {
  if (!('nodeAttrs' in doc) && !('randomizeClientPort' in doc)) return undefined;
  const keys = new Set<string>();
  for (const entry of asList(doc.nodeAttrs)) {
    if (entry === null || typeof entry !== 'object') continue;
    const { attr, app } = entry as { attr?: unknown; app?: unknown };
    for (const name of asList(attr)) if (typeof name === 'string') keys.add(name);
    if (app !== null && typeof app === 'object') for (const name of Object.keys(app)) keys.add(name);
  }
  if (doc.randomizeClientPort === true) keys.add('randomize-client-port');
  return [...keys].sort(byText);
}

// ---- the checks ----

function addressesOf(c: PolicyCase, id: number): string[] {
  const node = c.tailnet.nodes.find((n) => n.id === id);
  const out: string[] = [];
  if (node?.ipv4) out.push(`${node.ipv4}/32`);
  if (node?.ipv6) out.push(`${node.ipv6}/128`);
  return out;
}

function sortedObject<T>(value: Record<string, T>): Record<string, T> {
  return Object.fromEntries(Object.entries(value).sort(([a], [b]) => byText(a, b)));
}

/**
 * Our peers of `id`: name → sorted AllowedIPs. Read off peersOf, the bit-set path the map builder
 * uses, and checked against the pairwise canSee on the way.
 */
function peersOf(c: PolicyCase, compiled: CompiledPolicy, id: number): Record<string, string[]> {
  const peers: Record<string, string[]> = {};
  const visible = compiled.peersOf(id);
  for (const node of c.tailnet.nodes) {
    assert.equal(visible.has(node.id), compiled.canSee(id, node.id), `peersOf(${id}) and canSee disagree`);
    if (!visible.has(node.id)) continue;
    const name = c.names.get(node.id) ?? `#${node.id}`;
    peers[name] = [...addressesOf(c, node.id), ...compiled.peerRoutes(id, node.id)].sort(byText);
  }
  return sortedObject(peers);
}

function compareNode(
  c: PolicyCase,
  compiled: CompiledPolicy,
  caps: string[] | undefined,
  name: string,
  captured: CapturedNode,
  problems: string[],
): void {
  const id = c.ids.get(name);
  if (id === undefined) {
    problems.push(`${name}: captured, but not in topology.nodes`);
    return;
  }
  const view = compiled.forNode(id);

  mismatch(
    problems,
    `${name}: packet filter`,
    normalizeFilter(view.packetFilter),
    normalizeFilter(captured.packet_filter_rules),
  );

  if ('ssh_rules' in captured || 'ssh' in c.policyDoc)
    mismatch(
      problems,
      `${name}: SSH rules`,
      wire(view.sshPolicy?.rules ?? []),
      wire(captured.ssh_rules ?? []),
    );

  const netmap = captured.netmap;
  if (netmap === undefined || netmap === null) return;

  const want: Record<string, string[]> = {};
  for (const peer of netmap.Peers ?? [])
    want[firstLabel(peer.Name)] = [...(peer.AllowedIPs ?? [])].sort(byText);
  mismatch(problems, `${name}: peers and AllowedIPs`, peersOf(c, compiled, id), sortedObject(want));

  if (caps !== undefined) {
    const theirs = netmap.SelfNode?.CapMap ?? {};
    for (const key of caps)
      mismatch(
        problems,
        `${name}: CapMap["${key}"]`,
        Object.hasOwn(view.capMap, key) ? wire(view.capMap[key]) : undefined,
        Object.hasOwn(theirs, key) ? theirs[key] : undefined,
      );
  }
}

/** Every node that advertises routes: what the autoApprovers grant it must be what SaaS approved. */
function compareApprovals(c: PolicyCase, problems: string[]): void {
  const policy = parsePolicy(c.policyText);
  for (const node of c.tailnet.nodes) {
    if (node.advertisedRoutes.length === 0) continue;
    const name = c.names.get(node.id) ?? `#${node.id}`;
    try {
      const got = [...autoApprovedRoutes(policy, c.tailnet, { ...node, approvedRoutes: [] })].sort(byText);
      mismatch(problems, `${name}: auto-approved routes`, got, [...node.approvedRoutes].sort(byText));
    } catch (err) {
      problems.push(`${name}: auto-approved routes: threw ${crashed(err)}`);
    }
  }
}

/** Every way this case differs from the capture; empty when it conforms. */
function run(c: PolicyCase): string[] {
  let compiled: CompiledPolicy;
  try {
    compiled = checkPolicy(c.policyText, c.tailnet, { serverUrl: SERVER_URL }).compiled;
  } catch (err) {
    if (!(err instanceof PolicyError)) return [`checkPolicy threw a non-PolicyError: ${crashed(err)}`];
    if (c.rejection === undefined) return [`refused a policy Tailscale accepted: ${err.describe()}`];
    if (!err.message.includes(c.rejection))
      return [
        `refused with the wrong message\n      want (substring) ${short(c.rejection)}\n      got  ${short(err.message)}`,
      ];
    return [];
  }
  if (c.rejection !== undefined) return [`accepted a policy Tailscale refused with ${short(c.rejection)}`];

  const problems: string[] = [];
  const caps = policyCaps(c.policyDoc);
  for (const [name, captured] of Object.entries(c.captures)) {
    try {
      compareNode(c, compiled, caps, name, captured, problems);
    } catch (err) {
      problems.push(`${name}: threw ${crashed(err)}`);
    }
  }
  if (c.category === 'routes') {
    try {
      compareApprovals(c, problems);
    } catch (err) {
      problems.push(`auto-approved routes: threw ${crashed(err)}`);
    }
  }
  return problems;
}

// ---- the suite ----

let cases: PolicyCase[] = [];
let loadError: unknown;
try {
  cases = loadPolicyCases(DIR);
} catch (err) {
  loadError = err;
}

describe(`policy conformance (${DIR})`, () => {
  test('the folder holds cases', () => {
    if (loadError !== undefined) throw loadError;
    assert.ok(cases.length > 0, `no *.hujson captures under ${DIR}`);
  });

  const groups = new Map<string, PolicyCase[]>();
  for (const c of cases) {
    const group = c.folder || c.category;
    groups.set(group, [...(groups.get(group) ?? []), c]);
  }
  for (const [group, members] of [...groups].sort(([a], [b]) => byText(a, b))) {
    describe(group, () => {
      for (const c of members) {
        const skip = c.captureError === undefined ? false : `the capture failed: ${c.captureError}`;
        test(c.id, { skip }, () => {
          const problems = run(c);
          if (problems.length > 0)
            assert.fail(
              `${c.id} (${c.file}): ${problems.length} mismatch(es)\n  - ${problems.join('\n  - ')}`,
            );
        });
      }
    });
  }
});
