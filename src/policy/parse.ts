/**
 * The policy document: HuJSON text → a validated model. Every rejection uses Tailscale's own message
 * where one is known (docs/policy.md §1.3) and carries the line and column of the offending value.
 *
 * Order of checks, as Headscale runs them and the captured SaaS answers imply: the definitions
 * (groups, hosts, tagOwners) first, then the rules that use them in document section order.
 */

import { formatIp } from '../util/ip.ts';
import { PolicyError } from './api.ts';
import { formatGoDuration, parseGoDuration } from './godur.ts';
import { type JsonNode, locate, parseHujson } from './hujson.ts';
import { isWholeFamily, parseRange, prefixRange, type Range } from './ranges.ts';

// ---- the model ----

export const AUTOGROUPS = [
  'member',
  'tagged',
  'self',
  'internet',
  'nonroot',
  'danger-all',
  'admin',
  'owner',
  'it-admin',
  'network-admin',
  'billing-admin',
  'auditor',
  'shared',
] as const;
export type Autogroup = (typeof AUTOGROUPS)[number];

export type Alias =
  | { kind: 'wildcard' }
  | { kind: 'user'; login: string }
  | { kind: 'domain'; domain: string }
  | { kind: 'group'; name: string }
  | { kind: 'tag'; name: string }
  | { kind: 'autogroup'; name: Autogroup }
  | { kind: 'ip'; text: string; range: Range };

export interface PortRange {
  first: number;
  last: number;
}

export interface Destination {
  alias: Alias;
  ports: PortRange[];
}

/** An ACL entry or one `ip` entry of a grant: packets from src to dst ports. */
export interface PacketRule {
  kind: 'packet';
  src: Alias[];
  dst: Destination[];
  /** Undefined = Tailscale's default set (TCP, UDP, ICMP). */
  proto: number[] | undefined;
  /** Grant `via` tags: only routers with one of these tags carry the rule. */
  via: string[];
}

/** A grant's `app` part: capabilities the src nodes get on the dst nodes. */
export interface AppRule {
  kind: 'app';
  src: Alias[];
  dst: Alias[];
  caps: Record<string, unknown[]>;
}

export type Rule = PacketRule | AppRule;

export interface SshRuleDef {
  action: 'accept' | 'check';
  src: Alias[];
  dst: Alias[];
  users: string[];
  /** Nanoseconds; undefined = default; 'always' = re-check every session. */
  checkPeriod: bigint | 'always' | undefined;
  acceptEnv: string[] | undefined;
}

export interface NodeAttrDef {
  target: Alias[];
  attr: string[];
  app: Record<string, unknown[]> | undefined;
}

export interface TestDef {
  src: string;
  proto: string;
  accept: string[];
  deny: string[];
  /** Where the test is written, for failure reports. */
  line: number;
}

export interface SshTestDef {
  src: string;
  dst: string[];
  accept: string[];
  deny: string[];
  check: string[];
  line: number;
}

export interface AutoApprovers {
  routes: Array<{ prefix: Range; text: string; approvers: Alias[] }>;
  exitNode: Alias[];
}

export interface Policy {
  /** The admin's text, comments included. */
  readonly text: string;
  readonly groups: ReadonlyMap<string, readonly string[]>;
  readonly hosts: ReadonlyMap<string, { text: string; range: Range }>;
  readonly tagOwners: ReadonlyMap<string, readonly Alias[]>;
  readonly rules: readonly Rule[];
  readonly ssh: readonly SshRuleDef[];
  readonly nodeAttrs: readonly NodeAttrDef[];
  readonly autoApprovers: AutoApprovers;
  readonly tests: readonly TestDef[];
  readonly sshTests: readonly SshTestDef[];
  readonly randomizeClientPort: boolean;
}

// ---- protocol names (IANA numbers) ----

const PROTOCOLS: Record<string, number> = {
  icmp: 1,
  igmp: 2,
  ipv4: 4,
  'ip-in-ip': 4,
  tcp: 6,
  egp: 8,
  igp: 9,
  udp: 17,
  gre: 47,
  esp: 50,
  ah: 51,
  'ipv6-icmp': 58,
  sctp: 132,
};
/** Only these carry ports; rules for other protocols match whole packets. */
const PORTED = new Set([6, 17, 132]);

const ALL_PORTS: PortRange = { first: 0, last: 65535 };
const ALLOW_ALL_RULE: PacketRule = {
  kind: 'packet',
  src: [{ kind: 'wildcard' }],
  dst: [{ alias: { kind: 'wildcard' }, ports: [ALL_PORTS] }],
  proto: undefined,
  via: [],
};
const MAX_CHECK_PERIOD_NS = 168n * 3_600_000_000_000n;

/** `tailscale.com` capabilities a policy may grant; the rest of that domain is Tailscale's own. */
const ALLOWED_TAILSCALE_CAPS = new Set([
  'tailscale.com/cap/drive',
  'tailscale.com/cap/drive-sharer',
  'tailscale.com/cap/kubernetes',
  'tailscale.com/cap/tsidp',
  'tailscale.com/cap/webui',
  'tailscale.com/cap/relay',
  'tailscale.com/cap/golink',
  'tailscale.com/cap/tailsql',
  'tailscale.com/cap/setec',
]);

const TOP_LEVEL = new Set([
  'acls',
  'grants',
  'groups',
  'hosts',
  'tagOwners',
  'autoApprovers',
  'ssh',
  'tests',
  'sshTests',
  'nodeAttrs',
  'postures',
  'defaultSrcPosture',
  'ipsets',
  'derpMap',
  'disableIPv4',
  'randomizeClientPort',
  'OneCGNATRoute',
  'attrConfig',
]);

// ---- reading the tree ----

class Reader {
  readonly text: string;

  constructor(text: string) {
    this.text = text;
  }

  fail(message: string, at?: JsonNode): never {
    throw new PolicyError(message, at === undefined ? undefined : locate(this.text, at.offset));
  }

  /** An object's members in order; throws on anything else. */
  members(node: JsonNode, what: string, allowed?: ReadonlySet<string>): Map<string, JsonNode> {
    if (node.type !== 'object') this.fail(`${what} must be an object`, node);
    const out = new Map<string, JsonNode>();
    for (const property of node.children ?? []) {
      const [key, value] = property.children ?? [];
      if (key === undefined || value === undefined) continue;
      const name = String(key.value);
      if (allowed !== undefined && !allowed.has(name)) this.fail(`unknown field "${name}"`, key);
      out.set(name, value);
    }
    return out;
  }

  string(node: JsonNode, what: string): string {
    if (node.type !== 'string') this.fail(`${what} must be a string`, node);
    return node.value as string;
  }

  /** A list of strings; null reads as empty, as Go's decoder does. */
  strings(node: JsonNode | undefined, what: string): Array<{ value: string; node: JsonNode }> {
    if (node === undefined || node.type === 'null') return [];
    if (node.type !== 'array') this.fail(`${what} must be a list of strings`, node);
    return (node.children ?? []).map((item) => ({ value: this.string(item, `${what} entries`), node: item }));
  }

  bool(node: JsonNode | undefined, what: string): boolean {
    if (node === undefined || node.type === 'null') return false;
    if (node.type !== 'boolean') this.fail(`${what} must be true or false`, node);
    return node.value as boolean;
  }

  array(node: JsonNode | undefined, what: string): JsonNode[] {
    if (node === undefined || node.type === 'null') return [];
    if (node.type !== 'array') this.fail(`${what} must be a list`, node);
    return node.children ?? [];
  }

  /** The plain JSON value under a node (capability values are passed through untouched). */
  value(node: JsonNode): unknown {
    switch (node.type) {
      case 'object':
        return Object.fromEntries(
          (node.children ?? []).map((p) => [
            String(p.children?.[0]?.value),
            this.value(p.children?.[1] as JsonNode),
          ]),
        );
      case 'array':
        return (node.children ?? []).map((item) => this.value(item));
      default:
        return node.value;
    }
  }
}

// ---- entry point ----

export function parsePolicy(text: string): Policy {
  const r = new Reader(text);
  const top = r.members(parseHujson(text), 'the policy', TOP_LEVEL);
  rejectUnsupported(r, top);
  const groups = parseGroups(r, top.get('groups'));
  const hosts = parseHosts(r, top.get('hosts'));
  const tagOwners = parseTagOwnerNames(r, top.get('tagOwners'));
  const scope = new Scope(r, groups, hosts, tagOwners);
  const owners = parseTagOwners(r, scope, top.get('tagOwners'));
  const rules = [...parseAcls(r, scope, top.get('acls')), ...parseGrants(r, scope, top.get('grants'))];
  // A policy with neither section gets Tailscale's default rule (capture nodeattrs-target-a2-user:
  // a file of only nodeAttrs still connects everyone). An empty `acls: []` is what denies everything.
  if (!top.has('acls') && !top.has('grants')) rules.push(ALLOW_ALL_RULE);
  return {
    text,
    groups,
    hosts,
    tagOwners: owners,
    rules,
    ssh: parseSsh(r, scope, top.get('ssh')),
    nodeAttrs: parseNodeAttrs(r, scope, top.get('nodeAttrs')),
    autoApprovers: parseAutoApprovers(r, scope, top.get('autoApprovers')),
    tests: parseTests(r, top.get('tests')),
    sshTests: parseSshTests(r, scope, top.get('sshTests')),
    randomizeClientPort: r.bool(top.get('randomizeClientPort'), 'randomizeClientPort'),
  };
}

/** Features weft does not implement are refused rather than silently ignored. */
function rejectUnsupported(r: Reader, top: Map<string, JsonNode>): void {
  for (const key of ['postures', 'defaultSrcPosture', 'ipsets', 'derpMap']) {
    const node = top.get(key);
    if (node === undefined || node.type === 'null') continue;
    const empty = (node.type === 'object' || node.type === 'array') && (node.children ?? []).length === 0;
    if (!empty) r.fail(`"${key}" is not supported by weft`, node);
  }
  if (r.bool(top.get('disableIPv4'), 'disableIPv4'))
    r.fail('"disableIPv4" is not supported by weft', top.get('disableIPv4'));
}

// ---- definitions ----

function parseGroups(r: Reader, node: JsonNode | undefined): Map<string, string[]> {
  const groups = new Map<string, string[]>();
  if (node === undefined || node.type === 'null') return groups;
  for (const [name, value] of r.members(node, 'groups')) {
    if (!name.startsWith('group:')) r.fail(`groups["${name}"]: group names must start with "group:"`, value);
    const members: string[] = [];
    for (const member of r.strings(value, `groups["${name}"]`)) {
      if (member.value.startsWith('group:'))
        r.fail(`groups["${name}"]: "${member.value}": group members cannot be recursive`, member.node);
      if (member.value.startsWith('tag:') || member.value.startsWith('autogroup:'))
        r.fail(`groups["${name}"]: "${member.value}": group members must be users`, member.node);
      members.push(member.value);
    }
    groups.set(name, members);
  }
  return groups;
}

function parseHosts(r: Reader, node: JsonNode | undefined): Map<string, { text: string; range: Range }> {
  const hosts = new Map<string, { text: string; range: Range }>();
  if (node === undefined || node.type === 'null') return hosts;
  for (const [name, value] of r.members(node, 'hosts')) {
    if (name.includes(':') || name.includes('@') || name === '*' || name === '')
      r.fail(`hosts["${name}"]: host names cannot contain ':' or '@'`, value);
    const text = r.string(value, `hosts["${name}"]`);
    const range = text.includes('-') ? undefined : parseRange(text);
    if (range === undefined) r.fail(`hosts["${name}"]: "${text}": invalid IP address or CIDR prefix`, value);
    hosts.set(name, { text: canonicalAddress(text, range), range });
  }
  return hosts;
}

/** How an IP or prefix literal is sent: a bare IP stays a bare IP, a prefix is written masked (Go form). */
function canonicalAddress(text: string, range: Range): string {
  const start = formatIp(range.family, range.first);
  return text.includes('/') ? `${start}/${text.slice(text.indexOf('/') + 1)}` : start;
}

const TAG_NAME = /^tag:[A-Za-z]/;

function parseTagOwnerNames(r: Reader, node: JsonNode | undefined): Set<string> {
  const tags = new Set<string>();
  if (node === undefined || node.type === 'null') return tags;
  for (const [name, value] of r.members(node, 'tagOwners')) {
    if (!name.startsWith('tag:')) r.fail(`tagOwners["${name}"]: tag names must start with "tag:"`, value);
    if (!TAG_NAME.test(name))
      r.fail(`tagOwners["${name}"]: tag names must start with a letter, after 'tag:'`, value);
    tags.add(name);
  }
  return tags;
}

function parseTagOwners(r: Reader, scope: Scope, node: JsonNode | undefined): Map<string, Alias[]> {
  const owners = new Map<string, Alias[]>();
  if (node === undefined || node.type === 'null') return owners;
  for (const [name, value] of r.members(node, 'tagOwners')) {
    const list = r.strings(value, `tagOwners["${name}"]`).map(({ value: owner, node: at }) => {
      const alias = scope.alias(owner, at, 'owner');
      if (alias.kind === 'ip' || alias.kind === 'wildcard')
        r.fail(`tagOwners["${name}"]: "${owner}": tag owners must be users, groups, tags or autogroups`, at);
      return alias;
    });
    owners.set(name, list);
  }
  return owners;
}

// ---- aliases ----

type Side = 'src' | 'dst' | 'owner' | 'target' | 'sshSrc' | 'sshDst' | 'approver';

class Scope {
  readonly #r: Reader;
  readonly groups: ReadonlyMap<string, readonly string[]>;
  readonly hosts: ReadonlyMap<string, { text: string; range: Range }>;
  readonly tags: ReadonlySet<string>;

  constructor(
    r: Reader,
    groups: ReadonlyMap<string, readonly string[]>,
    hosts: ReadonlyMap<string, { text: string; range: Range }>,
    tags: ReadonlySet<string>,
  ) {
    this.#r = r;
    this.groups = groups;
    this.hosts = hosts;
    this.tags = tags;
  }

  /** Parses one alias; `label` prefixes messages the way Tailscale does for the side it is on. */
  alias(text: string, at: JsonNode, side: Side, label = text): Alias {
    const r = this.#r;
    if (text === '*') return { kind: 'wildcard' };
    if (text.startsWith('tag:')) {
      if (!this.tags.has(text)) r.fail(tagNotFound(side, label, text), at);
      return { kind: 'tag', name: text };
    }
    if (text.startsWith('group:')) {
      if (!this.groups.has(text)) r.fail(`group not defined in policy: "${text}"`, at);
      return { kind: 'group', name: text };
    }
    if (text.startsWith('autogroup:')) {
      const name = text.slice('autogroup:'.length);
      if (!(AUTOGROUPS as readonly string[]).includes(name)) r.fail(`"${text}" is not a valid autogroup`, at);
      return { kind: 'autogroup', name: name as Autogroup };
    }
    if (text.startsWith('user:*@')) return { kind: 'domain', domain: text.slice('user:*@'.length) };
    if (text.includes('@')) return { kind: 'user', login: text };
    const host = this.hosts.get(text);
    if (host !== undefined) return { kind: 'ip', text: host.text, range: host.range };
    const range = text.includes('-') ? undefined : parseRange(text);
    if (range !== undefined) return { kind: 'ip', text: canonicalAddress(text, range), range };
    if (side === 'target') r.fail(`"${text}": invalid address`, at);
    return r.fail(`host not defined in policy: "${text}"`, at);
  }
}

function tagNotFound(side: Side, label: string, tag: string): string {
  if (side === 'src') return `src=tag not found: "${tag}"`;
  if (side === 'dst') return `dst="${label}": tag not found: "${tag}"`;
  return `tag not found: "${tag}"`;
}

// ---- ports and protocols ----

function parsePortRanges(text: string): PortRange[] | string {
  if (text === '*') return [ALL_PORTS];
  const ranges: PortRange[] = [];
  for (const part of text.split(',')) {
    const dash = part.indexOf('-');
    const firstText = dash < 0 ? part : part.slice(0, dash);
    const lastText = dash < 0 ? part : part.slice(dash + 1);
    const first = portNumber(firstText);
    if (first === undefined) return `port range "${part}": invalid first integer`;
    const last = portNumber(lastText);
    if (last === undefined) return `port range "${part}": invalid last integer`;
    if (first === 0) return `port range "${part}": first port must be >0, or use '*' for wildcard`;
    if (first > last) return `port range "${part}": first port must be <= last port`;
    ranges.push({ first, last });
  }
  return ranges;
}

function portNumber(text: string): number | undefined {
  if (!/^[0-9]{1,5}$/.test(text)) return undefined;
  const value = Number(text);
  return value <= 65535 ? value : undefined;
}

function parseProto(text: string): number | undefined {
  if (text in PROTOCOLS) return PROTOCOLS[text];
  if (/^(0|[1-9][0-9]{0,2})$/.test(text) && Number(text) <= 255) return Number(text);
  return undefined;
}

/** `alias:ports`, split at the last colon; `[v6]:port` also works. */
function splitDestination(text: string): { host: string; ports: string } | undefined {
  const colon = text.lastIndexOf(':');
  if (colon < 0) return undefined;
  let host = text.slice(0, colon);
  if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
  return { host, ports: text.slice(colon + 1) };
}

// ---- acls ----

const ACL_FIELDS = new Set(['action', 'src', 'dst', 'proto', 'users', 'ports', 'srcPosture']);

function parseAcls(r: Reader, scope: Scope, node: JsonNode | undefined): PacketRule[] {
  return r.array(node, 'acls').map((entry) => {
    const fields = r.members(entry, 'an acls entry', ACL_FIELDS);
    const actionNode = fields.get('action');
    const action = actionNode === undefined ? '' : r.string(actionNode, 'action');
    if (action !== 'accept') r.fail(`action="${action}" is not supported`, actionNode ?? entry);
    if (fields.has('srcPosture')) r.fail('"srcPosture" is not supported by weft', fields.get('srcPosture'));
    const srcNode = fields.get('src') ?? fields.get('users');
    const dstNode = fields.get('dst') ?? fields.get('ports');
    const src = r
      .strings(srcNode, 'src')
      .map(({ value, node: at }) => sourceAlias(r, scope, value, at, 'src'));
    const protoNode = fields.get('proto');
    let proto: number[] | undefined;
    if (protoNode !== undefined && protoNode.type !== 'null') {
      const text = r.string(protoNode, 'proto');
      if (text !== '') {
        const number = parseProto(text);
        if (number === undefined) r.fail(`proto="${text}": unknown protocol`, protoNode);
        proto = [number];
      }
    }
    const dst = r
      .strings(dstNode, 'dst')
      .map(({ value, node: at }) => aclDestination(r, scope, value, at, proto));
    checkSelfSources(r, src, dst, entry, false);
    return { kind: 'packet', src, dst, proto, via: [] } satisfies PacketRule;
  });
}

function sourceAlias(r: Reader, scope: Scope, text: string, at: JsonNode, side: Side): Alias {
  const alias = scope.alias(text, at, side);
  if (alias.kind === 'autogroup') {
    if (alias.name === 'self') r.fail('"autogroup:self" not valid on the src side of a rule', at);
    if (alias.name === 'internet') r.fail('"autogroup:internet" not valid on the src side of a rule', at);
    if (alias.name === 'nonroot') r.fail('"autogroup:nonroot" is only valid for SSH users', at);
  }
  return alias;
}

function aclDestination(
  r: Reader,
  scope: Scope,
  text: string,
  at: JsonNode,
  proto: number[] | undefined,
): Destination {
  const split = splitDestination(text);
  if (split === undefined) r.fail(`dst="${text}": port range "${text}": invalid first integer`, at);
  const ports = parsePortRanges(split.ports);
  if (typeof ports === 'string') r.fail(`dst="${text}": ${ports}`, at);
  const alias = destinationAlias(r, scope, split.host, at);
  if (proto !== undefined && !proto.some((p) => PORTED.has(p)) && split.ports !== '*')
    r.fail(`dst="${text}": protocol ${proto[0]} has no ports, use "*"`, at);
  return { alias, ports };
}

function destinationAlias(r: Reader, scope: Scope, host: string, at: JsonNode): Alias {
  const alias = scope.alias(host, at, 'dst', host);
  if (alias.kind === 'autogroup' && alias.name === 'danger-all')
    r.fail('cannot use autogroup:danger-all as a dst', at);
  if (alias.kind === 'autogroup' && alias.name === 'nonroot')
    r.fail('"autogroup:nonroot" is only valid for SSH users', at);
  return alias;
}

/** autogroup:self as a destination needs sources that are people, not tags or addresses. */
function checkSelfSources(
  r: Reader,
  src: Alias[],
  dst: Destination[] | Alias[],
  at: JsonNode,
  grant: boolean,
): void {
  const hasSelf = dst.some((d) => {
    const alias = 'alias' in d ? d.alias : d;
    return alias.kind === 'autogroup' && alias.name === 'self';
  });
  if (!hasSelf) return;
  const bad = src.some(
    (a) =>
      a.kind === 'tag' ||
      a.kind === 'ip' ||
      (a.kind === 'autogroup' && a.name !== 'member' && a.name !== 'admin' && a.name !== 'owner') ||
      (grant && a.kind === 'wildcard'),
  );
  if (bad) r.fail('autogroup:self can only be used with users, groups, or supported autogroups', at);
}

// ---- grants ----

const GRANT_FIELDS = new Set(['src', 'dst', 'ip', 'app', 'via', 'srcPosture']);

function parseGrants(r: Reader, scope: Scope, node: JsonNode | undefined): Rule[] {
  const rules: Rule[] = [];
  for (const entry of r.array(node, 'grants')) {
    const fields = r.members(entry, 'a grants entry', GRANT_FIELDS);
    if (fields.has('srcPosture')) r.fail('"srcPosture" is not supported by weft', fields.get('srcPosture'));
    const src = r.strings(fields.get('src'), 'src').map(({ value, node: at }) => {
      const alias = sourceAlias(r, scope, value, at, 'src');
      return alias;
    });
    const dst = r.strings(fields.get('dst'), 'dst').map(({ value, node: at }) => {
      const alias = destinationAlias(r, scope, value, at);
      if (alias.kind === 'ip' && isWholeFamily(alias.range))
        r.fail(`dst "${value}": to allow all IP addresses, use "*" or "autogroup:internet"`, at);
      return alias;
    });
    const ipEntries = r.strings(fields.get('ip'), 'ip');
    const appNode = fields.get('app');
    const caps = appNode === undefined || appNode.type === 'null' ? undefined : parseCaps(r, appNode, 'app');
    if (ipEntries.length === 0 && (caps === undefined || Object.keys(caps).length === 0))
      r.fail('ip and app can not both be empty', entry);
    const via = r.strings(fields.get('via'), 'via').map(({ value, node: at }) => {
      if (!value.startsWith('tag:')) r.fail('via can only be a tag', at);
      if (!scope.tags.has(value)) r.fail(`tag "${value}" not found`, at);
      return value;
    });
    checkSelfSources(r, src, dst, entry, true);
    if (caps !== undefined && dst.some((d) => d.kind === 'autogroup' && d.name === 'internet'))
      r.fail('cannot use app grants with autogroup:internet', appNode);
    for (const { value, node: at } of ipEntries) {
      const spec = parseIpSpec(value);
      if (typeof spec === 'string') r.fail(spec, at);
      rules.push({
        kind: 'packet',
        src,
        dst: dst.map((alias) => ({ alias, ports: spec.ports })),
        proto: spec.proto,
        via,
      });
    }
    if (caps !== undefined && Object.keys(caps).length > 0) rules.push({ kind: 'app', src, dst, caps });
  }
  return rules;
}

/** A grant `ip` entry: `*`, `22`, `80-443`, `tcp:443`, `icmp:*`. */
function parseIpSpec(text: string): { proto: number[] | undefined; ports: PortRange[] } | string {
  if (text === '*') return { proto: undefined, ports: [ALL_PORTS] };
  const colon = text.indexOf(':');
  if (colon < 0) {
    const ports = parsePortRanges(text);
    return typeof ports === 'string' ? ports : { proto: undefined, ports };
  }
  const protoText = text.slice(0, colon);
  const proto = parseProto(protoText);
  if (proto === undefined) return `ip="${text}": unknown protocol "${protoText}"`;
  const portText = text.slice(colon + 1);
  if (!PORTED.has(proto) && portText !== '*')
    return `ip="${text}": protocol ${protoText} has no ports, use "*"`;
  const ports = parsePortRanges(portText);
  return typeof ports === 'string' ? ports : { proto: [proto], ports };
}

function parseCaps(r: Reader, node: JsonNode, what: string): Record<string, unknown[]> {
  const caps: Record<string, unknown[]> = {};
  for (const [name, value] of r.members(node, what)) {
    if (!name.includes('/')) r.fail('capability name must have the form {domain}/{path}', value);
    const domain = name.replace(/^https?:\/\//, '').split('/')[0];
    if (domain === 'tailscale.com' && !ALLOWED_TAILSCALE_CAPS.has(name.replace(/^https?:\/\//, '')))
      r.fail('capability name must not be in the tailscale.com domain', value);
    const values = value.type === 'null' ? [] : r.array(value, `${what}["${name}"]`);
    caps[name] = values.map((item) => r.value(item));
  }
  return caps;
}

// ---- ssh ----

const SSH_FIELDS = new Set(['action', 'src', 'dst', 'users', 'checkPeriod', 'acceptEnv', 'srcPosture']);

function parseSsh(r: Reader, scope: Scope, node: JsonNode | undefined): SshRuleDef[] {
  return r.array(node, 'ssh').map((entry) => {
    const fields = r.members(entry, 'an ssh entry', SSH_FIELDS);
    if (fields.has('srcPosture')) r.fail('"srcPosture" is not supported by weft', fields.get('srcPosture'));
    const actionNode = fields.get('action');
    const actionText =
      actionNode === undefined || actionNode.type === 'null' ? '' : r.string(actionNode, 'action');
    if (actionText === '') r.fail('action must be specified', actionNode ?? entry);
    const action = actionText.trim();
    if (action !== 'accept' && action !== 'check')
      r.fail(`"${actionText}" is not a valid action`, actionNode);
    const src = r.strings(fields.get('src'), 'src').map(({ value, node: at }) => {
      const alias = sourceAlias(r, scope, value, at, 'src');
      return alias;
    });
    const dst = r
      .strings(fields.get('dst'), 'dst')
      .map(({ value, node: at }) => sshDestination(r, scope, value, at));
    const usersNode = fields.get('users');
    const users = r.strings(usersNode, 'users').map(({ value, node: at }) => {
      if (value === '' || value === '*') r.fail(`user "${value}" is not valid`, at);
      return value;
    });
    if (users.length === 0) r.fail('users must be specified', usersNode ?? entry);
    const acceptEnvNode = fields.get('acceptEnv');
    const acceptEnv =
      acceptEnvNode === undefined
        ? undefined
        : r.strings(acceptEnvNode, 'acceptEnv').map(({ value, node: at }) => {
            if (value === '') r.fail('acceptEnv values cannot be empty', at);
            return value;
          });
    const checkPeriod = parseCheckPeriod(r, fields.get('checkPeriod'));
    return { action, src, dst, users, checkPeriod, acceptEnv } satisfies SshRuleDef;
  });
}

function sshDestination(r: Reader, scope: Scope, text: string, at: JsonNode): Alias {
  if (text === '*' || scope.hosts.has(text)) r.fail(`invalid dst "${text}"`, at);
  const alias = scope.alias(text, at, 'sshDst');
  if (alias.kind === 'ip') r.fail(`invalid dst "${text}"`, at);
  if (alias.kind === 'autogroup' && !['self', 'member', 'tagged', 'admin', 'owner'].includes(alias.name))
    r.fail(`invalid dst "${text}"`, at);
  return alias;
}

function parseCheckPeriod(r: Reader, node: JsonNode | undefined): bigint | 'always' | undefined {
  if (node === undefined || node.type === 'null') return undefined;
  const text = r.string(node, 'checkPeriod');
  if (text === 'always') return 'always';
  const ns = parseGoDuration(text);
  if (ns === undefined) r.fail(`time: invalid duration "${text}"`, node);
  if (ns < 0n) r.fail(`checkPeriod ${formatGoDuration(ns)} must be a positive duration`, node);
  if (ns > MAX_CHECK_PERIOD_NS) r.fail(`checkPeriod ${formatGoDuration(ns)} is above the max (168h)`, node);
  return ns;
}

// ---- nodeAttrs ----

const NODE_ATTR_FIELDS = new Set(['target', 'attr', 'app', 'ipPool']);
const RESERVED_POOL = prefixRange('100.100.0.0/15');

function parseNodeAttrs(r: Reader, scope: Scope, node: JsonNode | undefined): NodeAttrDef[] {
  return r.array(node, 'nodeAttrs').map((entry) => {
    const fields = r.members(entry, 'a nodeAttrs entry', NODE_ATTR_FIELDS);
    const target = r
      .strings(fields.get('target'), 'target')
      .map(({ value, node: at }) => scope.alias(value, at, 'target'));
    const attr = r.strings(fields.get('attr'), 'attr').map(({ value }) => value);
    const appNode = fields.get('app');
    const app = appNode === undefined || appNode.type === 'null' ? undefined : parseCaps(r, appNode, 'app');
    for (const { value, node: at } of r.strings(fields.get('ipPool'), 'ipPool')) {
      const pool = prefixRange(value);
      if (pool === undefined) r.fail(`IPPool(${value}): invalid prefix`, at);
      if (RESERVED_POOL !== undefined && pool.first >= RESERVED_POOL.first && pool.last <= RESERVED_POOL.last)
        r.fail(`IPPool(${value}): network within reserved range`, at);
      r.fail('"ipPool" is not supported by weft', at);
    }
    return { target, attr, app };
  });
}

// ---- autoApprovers ----

function parseAutoApprovers(r: Reader, scope: Scope, node: JsonNode | undefined): AutoApprovers {
  const result: AutoApprovers = { routes: [], exitNode: [] };
  if (node === undefined || node.type === 'null') return result;
  const fields = r.members(node, 'autoApprovers', new Set(['routes', 'exitNode', 'services']));
  const approvers = (list: JsonNode | undefined, what: string) =>
    r.strings(list, what).map(({ value, node: at }) => {
      const alias = scope.alias(value, at, 'approver');
      if (alias.kind === 'ip' || alias.kind === 'wildcard')
        r.fail(`${what}: "${value}": approvers must be users, groups, tags or autogroups`, at);
      return alias;
    });
  const routes = fields.get('routes');
  if (routes !== undefined && routes.type !== 'null') {
    for (const [text, value] of r.members(routes, 'autoApprovers.routes')) {
      const prefix = prefixRange(text);
      if (prefix === undefined) r.fail(`autoApprovers.routes: "${text}" is not a CIDR prefix`, value);
      result.routes.push({ prefix, text, approvers: approvers(value, `autoApprovers.routes["${text}"]`) });
    }
  }
  result.exitNode = approvers(fields.get('exitNode'), 'autoApprovers.exitNode');
  return result;
}

// ---- tests ----

const TEST_FIELDS = new Set(['src', 'srcPostureAttrs', 'proto', 'accept', 'deny']);
const SSH_TEST_FIELDS = new Set(['src', 'srcPostureAttrs', 'dst', 'accept', 'deny', 'check']);

/** Tests are read leniently: a malformed assertion fails as a test, the way Tailscale reports it. */
function parseTests(r: Reader, node: JsonNode | undefined): TestDef[] {
  return r.array(node, 'tests').map((entry) => {
    const fields = r.members(entry, 'a tests entry', TEST_FIELDS);
    const srcNode = fields.get('src');
    const protoNode = fields.get('proto');
    return {
      src: srcNode === undefined ? '' : r.string(srcNode, 'src'),
      proto: protoNode === undefined || protoNode.type === 'null' ? '' : r.string(protoNode, 'proto'),
      accept: r.strings(fields.get('accept'), 'accept').map(({ value }) => value),
      deny: r.strings(fields.get('deny'), 'deny').map(({ value }) => value),
      line: locate(r.text, entry.offset).line,
    };
  });
}

function parseSshTests(r: Reader, scope: Scope, node: JsonNode | undefined): SshTestDef[] {
  return r.array(node, 'sshTests').map((entry) => {
    const fields = r.members(entry, 'an sshTests entry', SSH_TEST_FIELDS);
    const srcNode = fields.get('src');
    const dst = r.strings(fields.get('dst'), 'dst').map(({ value, node: at }) => {
      if (value === 'autogroup:internet' || prefixRange(value) !== undefined)
        r.fail(`SSH tests dst contains disallowed element "${value}"`, at);
      if (value.startsWith('tag:') && !scope.tags.has(value))
        r.fail(`SSH tests dst contains unknown tag "${value}"`, at);
      return value;
    });
    const list = (key: string) => r.strings(fields.get(key), key).map(({ value }) => value);
    return {
      src: srcNode === undefined ? '' : r.string(srcNode, 'src'),
      dst,
      accept: list('accept'),
      deny: list('deny'),
      check: list('check'),
      line: locate(r.text, entry.offset).line,
    };
  });
}
