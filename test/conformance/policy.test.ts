/**
 * Policy conformance: every capture in WEFT_POLICY_CASES (default ../shared/conformance/policy) is
 * replayed through weft's policy engine and compared with what Tailscale's own control plane sent
 * each node: packet filter, SSH rules, peers with their AllowedIPs, nodeAttrs capabilities, and
 * auto-approved routes; refused policies must be refused with Tailscale's message.
 *
 * No case-specific code: any folder of captures in the same format runs the same way.
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
import type { FilterRule } from '../../src/tailcfg/index.ts';
import { firstLabel, loadPolicyCases, type PolicyCase } from './policy-cases.ts';

const REPO = resolve(import.meta.dirname, '../..');
const DIR = process.env.WEFT_POLICY_CASES ? resolve(REPO, process.env.WEFT_POLICY_CASES) : defaultCasesDir();

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
const cases = loadPolicyCases(DIR);

/** Order inside a rule does not matter to the client; rule order and grouping do. */
function normalize(rules: readonly FilterRule[] | null | undefined): unknown[] {
  const byIp = (a: { IP: string; Ports: { First: number; Last: number } }, b: typeof a) =>
    a.IP < b.IP ? -1 : a.IP > b.IP ? 1 : a.Ports.First - b.Ports.First || a.Ports.Last - b.Ports.Last;
  return (rules ?? []).map((rule) => ({
    SrcIPs: [...rule.SrcIPs].sort(),
    DstPorts: rule.DstPorts === undefined ? undefined : [...rule.DstPorts].sort(byIp),
    IPProto: rule.IPProto?.length ? [...rule.IPProto].sort((a, b) => a - b) : undefined,
    CapGrant: rule.CapGrant?.map((g) => ({ Dsts: [...g.Dsts].sort(), CapMap: g.CapMap })),
  }));
}

function short(value: unknown): string {
  const text = JSON.stringify(value);
  return text.length > 2000 ? `${text.slice(0, 2000)}…` : text;
}

function mismatch(problems: string[], what: string, got: unknown, want: unknown): void {
  try {
    assert.deepStrictEqual(got, want);
  } catch {
    problems.push(`${what}\n    got  ${short(got)}\n    want ${short(want)}`);
  }
}

function peersOf(c: PolicyCase, compiled: CompiledPolicy, id: number): Record<string, string[]> {
  const peers: Record<string, string[]> = {};
  for (const node of c.tailnet.nodes) {
    if (!compiled.canSee(id, node.id)) continue;
    const own = [node.ipv4 && `${node.ipv4}/32`, node.ipv6 && `${node.ipv6}/128`].filter(
      (a): a is string => typeof a === 'string',
    );
    peers[c.names.get(node.id) ?? ''] = [...own, ...compiled.peerRoutes(id, node.id)].sort();
  }
  return sortedObject(peers);
}

function sortedObject<T>(value: Record<string, T>): Record<string, T> {
  return Object.fromEntries(Object.entries(value).sort(([a], [b]) => a.localeCompare(b)));
}

function compareNode(c: PolicyCase, compiled: CompiledPolicy, name: string, problems: string[]): void {
  const captured = c.captures[name];
  const id = c.ids.get(name);
  if (captured === undefined || id === undefined) return;
  const view = compiled.forNode(id);
  mismatch(
    problems,
    `${name}: packet filter`,
    normalize(view.packetFilter),
    normalize(captured.packet_filter_rules),
  );
  if ('ssh_rules' in captured || /"ssh"\s*:/.test(c.policyText))
    mismatch(problems, `${name}: SSH rules`, view.sshPolicy?.rules ?? [], captured.ssh_rules ?? []);
  const netmap = captured.netmap;
  if (netmap === undefined || netmap === null) return;
  const want: Record<string, string[]> = {};
  for (const peer of netmap.Peers ?? []) want[firstLabel(peer.Name)] = [...(peer.AllowedIPs ?? [])].sort();
  mismatch(problems, `${name}: peers and AllowedIPs`, peersOf(c, compiled, id), sortedObject(want));
  const policy = parsePolicy(c.policyText);
  const keys = new Set(policy.nodeAttrs.flatMap((a) => [...a.attr, ...Object.keys(a.app ?? {})]));
  if (policy.randomizeClientPort) keys.add('randomize-client-port');
  for (const key of keys)
    mismatch(problems, `${name}: CapMap["${key}"]`, view.capMap[key], netmap.SelfNode?.CapMap?.[key]);
}

function compareApprovals(c: PolicyCase, problems: string[]): void {
  const policy = parsePolicy(c.policyText);
  for (const node of c.tailnet.nodes) {
    if (node.advertisedRoutes.length === 0) continue;
    const got = autoApprovedRoutes(policy, c.tailnet, { ...node, approvedRoutes: [] }).sort();
    mismatch(problems, `${c.names.get(node.id)}: auto-approved routes`, got, [...node.approvedRoutes].sort());
  }
}

function run(c: PolicyCase): string[] {
  const problems: string[] = [];
  let compiled: CompiledPolicy | undefined;
  try {
    compiled = checkPolicy(c.policyText, c.tailnet, { serverUrl: 'https://unused' }).compiled;
  } catch (err) {
    if (!(err instanceof PolicyError)) throw err;
    if (c.rejection === undefined) return [`refused a policy Tailscale accepted: ${err.describe()}`];
    if (!err.message.includes(c.rejection))
      problems.push(`message ${short(err.message)}, want ${short(c.rejection)}`);
    return problems;
  }
  if (c.rejection !== undefined) return [`accepted a policy Tailscale refused with ${short(c.rejection)}`];
  for (const name of Object.keys(c.captures)) compareNode(c, compiled, name, problems);
  if (c.category === 'routes') compareApprovals(c, problems);
  return problems;
}

describe(`policy conformance (${DIR})`, () => {
  test('the folder holds cases', () => {
    assert.ok(cases.length > 0, `no *.hujson captures under ${DIR}`);
  });
  const categories = [...new Set(cases.map((c) => c.category))].sort();
  for (const category of categories) {
    describe(category, () => {
      for (const c of cases.filter((k) => k.category === category)) {
        test(c.id, () => {
          const problems = run(c);
          assert.equal(problems.length, 0, `${c.id} (${c.file}):\n  ${problems.join('\n  ')}`);
        });
      }
    });
  }
});
