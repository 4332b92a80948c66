/**
 * The policy's own `tests` and `sshTests` (docs/policy.md §8), evaluated against the compiled result
 * the way the client would enforce it: a packet test asks each destination node's filter, an SSH test
 * walks each destination's SSH rules in order. Any failure rejects the whole policy.
 */
import type { FilterRule, SSHRule } from '../tailcfg/index.ts';
import type { CompiledPolicy } from './api.ts';
import type { Alias, Policy, SshTestDef, TestDef } from './parse.ts';
import { covers, parseRange, type Range } from './ranges.ts';
import { type IndexedNode, Resolver, type TailnetIndex } from './resolve.ts';

/** Protocols a rule without IPProto allows. */
const DEFAULT_PROTOS = [6, 17, 1, 58];
const TEST_PROTOS: Record<string, number> = { '': 6, tcp: 6, udp: 17, sctp: 132 };

/** The compiled policy as tests read it: per-node filters, and the rules toward addresses no node holds. */
export interface TestablePolicy extends CompiledPolicy {
  unownedFilter(): FilterRule[];
}

export function runPolicyTests(policy: Policy, index: TailnetIndex, compiled: TestablePolicy): string[] {
  const resolver = new Resolver(policy, index);
  const failures: string[] = [];
  for (const test of policy.tests) failures.push(...packetTest(test, policy, resolver, index, compiled));
  for (const test of policy.sshTests) failures.push(...sshTest(test, policy, resolver, index, compiled));
  return failures;
}

// ---- aliases in tests ----

/** A test's alias, or undefined when it names nothing the policy defines. */
function testAlias(text: string, policy: Policy, dst: boolean): Alias | undefined {
  if (text === '') return undefined;
  if (text === '*') return dst ? undefined : { kind: 'wildcard' };
  if (text.startsWith('tag:')) return policy.tagOwners.has(text) ? { kind: 'tag', name: text } : undefined;
  if (text.startsWith('group:')) return policy.groups.has(text) ? { kind: 'group', name: text } : undefined;
  if (text === 'autogroup:member' || text === 'autogroup:tagged')
    return { kind: 'autogroup', name: text === 'autogroup:member' ? 'member' : 'tagged' };
  if (text.startsWith('autogroup:')) return undefined;
  if (text.includes('@')) return { kind: 'user', login: text };
  const host = policy.hosts.get(text);
  const literal = host ?? (text.includes('-') ? undefined : { text, range: parseRange(text) });
  if (literal?.range === undefined) return undefined;
  // A test destination is one host, never a network.
  if (dst && literal.range.first !== literal.range.last) return undefined;
  return { kind: 'ip', text: literal.text, range: literal.range };
}

/** The addresses an alias stands for in a test: node addresses, or the literal itself. */
function addresses(alias: Alias, resolver: Resolver): Range[] {
  if (alias.kind === 'ip') return [alias.range];
  return resolver.nodesOf(alias).flatMap((n) => n.ips);
}

// ---- packet tests ----

function packetTest(
  test: TestDef,
  policy: Policy,
  resolver: Resolver,
  index: TailnetIndex,
  compiled: TestablePolicy,
): string[] {
  const where = `test at line ${test.line}`;
  const srcAlias = testAlias(test.src, policy, false);
  if (srcAlias === undefined) return [`${where}: src "${test.src}" is not defined or names nothing`];
  const sources = addresses(srcAlias, resolver);
  if (sources.length === 0) return [`${where}: src "${test.src}" has no addresses`];
  const proto = TEST_PROTOS[test.proto];
  if (proto === undefined) return [`${where}: proto "${test.proto}" cannot be tested (use tcp, udp or sctp)`];
  if (test.accept.length === 0 && test.deny.length === 0) return [`${where}: has neither accept nor deny`];
  const failures: string[] = [];
  const check = (entry: string, want: boolean) => {
    const target = parseTarget(entry, policy, resolver);
    if (typeof target === 'string') {
      failures.push(`${where}: ${want ? 'accept' : 'deny'} "${entry}": ${target}`);
      return;
    }
    const results = sources.flatMap((src) =>
      target.ips
        .filter((dst) => dst.family === src.family)
        .map((dst) => allowed(compiled, index, src, dst, target.port, proto)),
    );
    if (results.length === 0) failures.push(`${where}: "${entry}": no address of the same family as the src`);
    else if (want && !results.every(Boolean)) failures.push(`${where}: ${test.src} cannot reach ${entry}`);
    else if (!want && results.some(Boolean)) failures.push(`${where}: ${test.src} can reach ${entry}`);
  };
  for (const entry of test.accept) check(entry, true);
  for (const entry of test.deny) check(entry, false);
  return failures;
}

/** `host:port` with one host and one port. */
function parseTarget(
  entry: string,
  policy: Policy,
  resolver: Resolver,
): { ips: Range[]; port: number } | string {
  const colon = entry.lastIndexOf(':');
  if (colon < 0) return 'needs a port';
  let host = entry.slice(0, colon);
  if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
  const portText = entry.slice(colon + 1);
  if (!/^[0-9]{1,5}$/.test(portText) || Number(portText) < 1 || Number(portText) > 65535)
    return `port "${portText}" must be one port number`;
  const alias = testAlias(host, policy, true);
  if (alias === undefined) return `"${host}" is not defined or is not a single host`;
  const ips = addresses(alias, resolver);
  if (ips.length === 0) return `"${host}" has no addresses`;
  return { ips, port: Number(portText) };
}

/** Whether a packet from `src` to `dst:port` passes the filter of whoever receives it. */
function allowed(
  compiled: TestablePolicy,
  index: TailnetIndex,
  src: Range,
  dst: Range,
  port: number,
  proto: number,
): boolean {
  const owner = index.nodes.find((n) => n.ips.some((ip) => covers(ip, dst)));
  const receivers: IndexedNode[] =
    owner !== undefined
      ? [owner]
      : index.nodes.filter((n) => n.subnets.some((s) => covers(s, dst)) || n.exit);
  const filters =
    receivers.length > 0
      ? receivers.map((node) => compiled.forNode(node.id).packetFilter)
      : [compiled.unownedFilter()];
  return filters.some((filter) => filter.some((rule) => ruleAllows(rule, src, dst, port, proto)));
}

function ruleAllows(rule: FilterRule, src: Range, dst: Range, port: number, proto: number): boolean {
  if (!(rule.IPProto ?? DEFAULT_PROTOS).includes(proto)) return false;
  if (!rule.SrcIPs.some((text) => text === '*' || contains(text, src))) return false;
  return (rule.DstPorts ?? []).some(
    (d) => (d.IP === '*' || contains(d.IP, dst)) && d.Ports.First <= port && port <= d.Ports.Last,
  );
}

function contains(text: string, ip: Range): boolean {
  const range = parseRange(text);
  return range !== undefined && covers(range, ip);
}

// ---- ssh tests ----

function sshTest(
  test: SshTestDef,
  policy: Policy,
  resolver: Resolver,
  index: TailnetIndex,
  compiled: TestablePolicy,
): string[] {
  const where = `sshTest at line ${test.line}`;
  const srcAlias = testAlias(test.src, policy, false);
  const sources = srcAlias === undefined ? [] : sourceNodes(srcAlias, resolver, index);
  if (sources.length === 0) return [`${where}: src "${test.src}" names no node`];
  if (test.accept.length + test.deny.length + test.check.length === 0)
    return [`${where}: has no accept, deny or check`];
  const failures: string[] = [];
  for (const dstText of test.dst) {
    const alias = testAlias(dstText, policy, true);
    const targets = alias === undefined ? [] : sourceNodes(alias, resolver, index);
    if (targets.length === 0) {
      failures.push(`${where}: dst "${dstText}" names no node`);
      continue;
    }
    const verdicts = (user: string) =>
      targets.flatMap((dst) =>
        sources.map((src) => sshVerdict(compiled.forNode(dst.id).sshPolicy?.rules ?? [], src, user)),
      );
    for (const user of test.accept)
      if (!verdicts(user).every((v) => v !== 'none'))
        failures.push(`${where}: ${test.src} cannot ssh to ${dstText} as ${user}`);
    for (const user of test.check)
      if (!verdicts(user).every((v) => v === 'check'))
        failures.push(`${where}: ${test.src} to ${dstText} as ${user} is not a check`);
    for (const user of test.deny)
      if (verdicts(user).some((v) => v !== 'none'))
        failures.push(`${where}: ${test.src} can ssh to ${dstText} as ${user}`);
  }
  return failures;
}

function sourceNodes(alias: Alias, resolver: Resolver, index: TailnetIndex): IndexedNode[] {
  if (alias.kind !== 'ip') return resolver.nodesOf(alias);
  return index.nodes.filter((n) => n.ips.some((ip) => covers(alias.range, ip)));
}

/** What tailscaled decides: the first rule whose principal and user mapping match. */
function sshVerdict(rules: readonly SSHRule[], src: IndexedNode, user: string): 'accept' | 'check' | 'none' {
  for (const rule of rules) {
    if (
      !rule.principals.some(
        (p) => p.any === true || (p.nodeIP !== undefined && src.ipTexts.includes(p.nodeIP)),
      )
    )
      continue;
    const users = rule.sshUsers ?? {};
    const local = user in users ? users[user] : users['*'];
    if (local === undefined || local === '') continue;
    if (rule.action?.holdAndDelegate !== undefined) return 'check';
    if (rule.action?.accept === true) return 'accept';
    return 'none';
  }
  return 'none';
}
