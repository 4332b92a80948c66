/**
 * The tailnet as the compiler looks at it (addresses parsed once, subnet routes and exit status
 * derived, nodes grouped by owner) and alias resolution against it: an alias becomes the addresses a
 * filter will list and the set of nodes it names.
 */
import type { PolicyNode, PolicyTailnet, PolicyUser } from './api.ts';
import type { Alias, Policy } from './parse.ts';
import {
  ipRange,
  isExitRoute,
  parseRange,
  prefixRange,
  type Range,
  TAILNET_SOURCE_RANGES,
  TAILNET_SOURCE_TEXT,
} from './ranges.ts';

export interface IndexedNode {
  id: number;
  userId: number | null;
  /** Tagged nodes belong to their tags, never to a user (docs/policy.md §7). */
  tagged: boolean;
  tags: readonly string[];
  /** The node's own addresses as ranges and as the bare text filters carry. */
  ips: Range[];
  ipTexts: string[];
  /** `ip/32` and `ip/128`: how CapGrant names the node. */
  hostPrefixes: string[];
  /** Approved (and still advertised) subnet routes, exit routes excluded. */
  subnets: Range[];
  subnetTexts: string[];
  /** Both exit routes advertised and approved. */
  exit: boolean;
}

export interface TailnetIndex {
  nodes: IndexedNode[];
  byId: Map<number, IndexedNode>;
  /** Nodes with at least one subnet route. */
  routers: IndexedNode[];
  /** Untagged nodes per owner, by id. */
  userNodes: Map<number, IndexedNode[]>;
  users: readonly PolicyUser[];
  /** Every approved subnet route once, in node order: what `*` adds to sources. */
  subnetTexts: string[];
  subnetRanges: Range[];
}

export function indexTailnet(tailnet: PolicyTailnet): TailnetIndex {
  const nodes = [...tailnet.nodes].sort((a, b) => a.id - b.id).map(indexNode);
  const userNodes = new Map<number, IndexedNode[]>();
  const subnetTexts: string[] = [];
  const subnetRanges: Range[] = [];
  for (const node of nodes) {
    if (!node.tagged && node.userId !== null) {
      const list = userNodes.get(node.userId) ?? [];
      list.push(node);
      userNodes.set(node.userId, list);
    }
    for (const [i, text] of node.subnetTexts.entries()) {
      if (subnetTexts.includes(text)) continue;
      subnetTexts.push(text);
      subnetRanges.push(node.subnets[i] as Range);
    }
  }
  return {
    nodes,
    byId: new Map(nodes.map((n) => [n.id, n])),
    routers: nodes.filter((n) => n.subnets.length > 0),
    userNodes,
    users: [...tailnet.users].sort((a, b) => a.id - b.id),
    subnetTexts,
    subnetRanges,
  };
}

/**
 * Parsed node addresses. The tailnet is indexed again on every change that can move visibility (a
 * join storm does so every batch), and parsing each node's two addresses was most of that work. The
 * result depends only on the text, so a memo is safe; it is emptied when it grows past any real
 * tailnet, so addresses that are gone cannot pile up.
 */
const ADDRESS_RANGES = new Map<string, Range | undefined>();
const ADDRESS_RANGES_MAX = 200_000;

function addressRange(ip: string): Range | undefined {
  if (ADDRESS_RANGES.has(ip)) return ADDRESS_RANGES.get(ip);
  if (ADDRESS_RANGES.size >= ADDRESS_RANGES_MAX) ADDRESS_RANGES.clear();
  const range = parseRange(ip);
  ADDRESS_RANGES.set(ip, range);
  return range;
}

function indexNode(node: PolicyNode): IndexedNode {
  const ips: Range[] = [];
  const ipTexts: string[] = [];
  const hostPrefixes: string[] = [];
  for (const [ip, bits] of [
    [node.ipv4, 32],
    [node.ipv6, 128],
  ] as const) {
    const range = ip === null ? undefined : addressRange(ip);
    if (ip === null || range === undefined) continue;
    ips.push(ipRange(range.family, range.first));
    ipTexts.push(ip);
    hostPrefixes.push(`${ip}/${bits}`);
  }
  const approved = node.approvedRoutes.filter((r) => node.advertisedRoutes.includes(r));
  const subnetTexts = approved.filter((r) => !isExitRoute(r) && prefixRange(r) !== undefined);
  const exitApproved = approved.filter(isExitRoute);
  return {
    id: node.id,
    userId: node.tags.length > 0 ? null : node.userId,
    tagged: node.tags.length > 0,
    tags: node.tags,
    ips,
    ipTexts,
    hostPrefixes,
    subnets: subnetTexts.map((r) => prefixRange(r) as Range),
    subnetTexts,
    exit: exitApproved.length === 2,
  };
}

/** What an alias stands for: wire texts (with their ranges), and the nodes it names. */
export interface Resolved {
  texts: string[];
  textRanges: Range[];
  /** Ranges of addresses that are not node addresses (literals, `*`): routers whose subnets meet them are sources too. */
  ranges: Range[];
  nodes: Set<number>;
}

const EVERYTHING: Range[] = [prefixRange('0.0.0.0/0') as Range, prefixRange('::/0') as Range];

export class Resolver {
  readonly #policy: Policy;
  readonly #index: TailnetIndex;

  constructor(policy: Policy, index: TailnetIndex) {
    this.#policy = policy;
    this.#index = index;
  }

  resolveAll(aliases: readonly Alias[]): Resolved {
    const out: Resolved = { texts: [], textRanges: [], ranges: [], nodes: new Set() };
    const seen = new Set<string>();
    for (const alias of aliases) {
      const one = this.resolve(alias, 'src');
      for (const [i, text] of one.texts.entries()) {
        if (seen.has(text)) continue;
        seen.add(text);
        out.texts.push(text);
        out.textRanges.push(one.textRanges[i] as Range);
      }
      out.ranges.push(...one.ranges);
      for (const id of one.nodes) out.nodes.add(id);
    }
    return out;
  }

  resolve(alias: Alias, _side: 'src' | 'dst'): Resolved {
    switch (alias.kind) {
      case 'wildcard': {
        const texts = [...TAILNET_SOURCE_TEXT, ...this.#index.subnetTexts];
        const ranges = [...TAILNET_SOURCE_RANGES, ...this.#index.subnetRanges];
        return { texts, textRanges: ranges, ranges, nodes: new Set(this.#index.byId.keys()) };
      }
      case 'ip': {
        const nodes = this.#index.nodes.filter((n) => n.ips.some((ip) => covers(alias.range, ip)));
        return { texts: [alias.text], textRanges: [alias.range], ranges: [alias.range], nodes: ids(nodes) };
      }
      case 'autogroup':
        return this.#autogroup(alias.name);
      default:
        return nodesResolved(this.nodesOf(alias));
    }
  }

  #autogroup(name: string): Resolved {
    switch (name) {
      case 'member':
        return nodesResolved(this.#index.nodes.filter((n) => !n.tagged && n.userId !== null));
      case 'tagged':
        return nodesResolved(this.#index.nodes.filter((n) => n.tagged));
      case 'danger-all':
        return {
          texts: ['*'],
          textRanges: [EVERYTHING[0] as Range],
          ranges: EVERYTHING,
          nodes: new Set(this.#index.byId.keys()),
        };
      default:
        // Admin roles do not exist in weft; self and internet are expanded by the compiler.
        return nodesResolved([]);
    }
  }

  /** The nodes a user-, group- or tag-like alias names. */
  nodesOf(alias: Alias): IndexedNode[] {
    switch (alias.kind) {
      case 'tag':
        return this.#index.nodes.filter((n) => n.tags.includes(alias.name));
      case 'user':
        return this.usersMatching(alias.login).flatMap((u) => this.#index.userNodes.get(u.id) ?? []);
      case 'domain':
        return this.#index.users
          .filter((u) => u.email.endsWith(`@${alias.domain}`))
          .flatMap((u) => this.#index.userNodes.get(u.id) ?? []);
      case 'group':
        return this.groupMembers(alias.name)
          .flatMap((u) => this.#index.userNodes.get(u.id) ?? [])
          .sort((a, b) => a.id - b.id);
      case 'autogroup':
        return this.#index.nodes.filter((n) => this.#autogroup(alias.name).nodes.has(n.id));
      case 'wildcard':
        return this.#index.nodes;
      case 'ip':
        return this.#index.nodes.filter((n) => n.ips.some((ip) => covers(alias.range, ip)));
    }
  }

  /**
   * The users in a declared group: those its policy entry lists, plus those an identity provider
   * placed in a group of the same name (`group:eng` ← IdP group `eng`). Undeclared groups have none.
   */
  groupMembers(group: string): PolicyUser[] {
    const listed = this.#policy.groups.get(group);
    if (listed === undefined) return [];
    const idpName = group.slice('group:'.length);
    const members = new Set(listed.flatMap((login) => this.usersMatching(login)));
    for (const user of this.#index.users) if (user.groups?.includes(idpName)) members.add(user);
    return [...members];
  }

  /** Users an email-like alias names: by email, or `name@` for users without one. */
  usersMatching(login: string): PolicyUser[] {
    return this.#index.users.filter((u) => (u.email !== '' && u.email === login) || `${u.name}@` === login);
  }
}

function covers(outer: Range, ip: Range): boolean {
  return outer.family === ip.family && outer.first <= ip.first && ip.last <= outer.last;
}

function ids(nodes: readonly IndexedNode[]): Set<number> {
  return new Set(nodes.map((n) => n.id));
}

function nodesResolved(nodes: readonly IndexedNode[]): Resolved {
  const texts: string[] = [];
  const textRanges: Range[] = [];
  for (const node of nodes) {
    texts.push(...node.ipTexts);
    textRanges.push(...node.ips);
  }
  return { texts, textRanges, ranges: [], nodes: ids(nodes) };
}
