/**
 * Compiling a policy against the tailnet: every ACL and grant becomes a global rule with its sources
 * and destinations resolved to addresses and node sets; each node then receives only the rules where
 * it is a destination (docs/policy.md §3.2), and peer visibility is read off the same rules (§4).
 *
 * The global step runs once per (policy, tailnet) snapshot; the per-node views are computed on demand
 * and memoised, so a node that never connects costs nothing and a map rebuild is a lookup.
 */
import type { CapGrant, FilterRule, NetPortRange } from '../tailcfg/index.ts';
import { IdSet } from '../util/id-set.ts';
import {
  type CompiledPolicy,
  type CompileOptions,
  type NodePolicy,
  PolicyError,
  type PolicyNode,
  type PolicyTailnet,
} from './api.ts';
import { nodeCapMap } from './nodeattrs.ts';
import type { Alias, AppRule, PacketRule, Policy, PortRange } from './parse.ts';
import { parsePolicy } from './parse.ts';
import {
  anyOverlap,
  EXIT_ROUTES,
  INTERNET_RANGES,
  INTERNET_TEXT,
  insideInternet,
  isExitRoute,
  overlaps,
  type Range,
} from './ranges.ts';
import { type IndexedNode, indexTailnet, type Resolved, Resolver, type TailnetIndex } from './resolve.ts';
import { compileSsh } from './ssh.ts';
import { withTestDevices } from './test-devices.ts';
import { runPolicyTests } from './tests.ts';

/** One DstPorts entry before reduction: its wire text plus the range it covers (`all` for "*"). */
interface Dst {
  ip: string;
  range: Range | 'all';
  ports: PortRange;
}

/** A packet or app rule with everything resolved. */
interface GlobalRule {
  kind: 'packet' | 'app';
  src: Resolved;
  /** Nodes whose traffic the rule lets out: by address, or routers whose subnets are a source. */
  srcNodes: ReadonlySet<number>;
  dsts: Dst[];
  /** Nodes the rule reaches: by address, through their subnet routes, or as exit nodes. */
  dstNodes: ReadonlySet<number>;
  proto: number[] | undefined;
  via: string[];
  caps: Record<string, unknown[]> | undefined;
  /** Whether a destination is the internet (autogroup:internet or `*`), i.e. usable through exit nodes. */
  internet: boolean;
}

/** The autogroup:self part of a rule: compiled per destination user. */
interface SelfRule {
  kind: 'packet' | 'app';
  /** Nodes in the rule's sources (only those of the destination's own user count). */
  srcNodes: ReadonlySet<number>;
  ports: PortRange[];
  proto: number[] | undefined;
  caps: Record<string, unknown[]> | undefined;
}

type CompiledRule = { self: false; rule: GlobalRule } | { self: true; rule: SelfRule };

const ALL_RANGE = 'all' as const;
const ALL_PORTS: PortRange = { first: 0, last: 65535 };

function isSelf(alias: Alias | undefined): boolean {
  return alias?.kind === 'autogroup' && alias.name === 'self';
}

export function electPrimaries(nodes: readonly PolicyNode[]): Map<string, number> {
  const primaries = new Map<string, number>();
  for (const node of [...nodes].sort((a, b) => a.id - b.id)) {
    for (const route of node.approvedRoutes) {
      if (isExitRoute(route) || !node.advertisedRoutes.includes(route)) continue;
      if (!primaries.has(route)) primaries.set(route, node.id);
    }
  }
  return primaries;
}

export function compilePolicy(
  policy: Policy,
  tailnet: PolicyTailnet,
  options: CompileOptions,
): CompiledPolicy {
  return new Compiled(policy, tailnet, options);
}

/** Parse, compile and run the policy's own tests; throws PolicyError for any of the three. */
export function checkPolicy(
  text: string,
  tailnet: PolicyTailnet,
  options: CompileOptions,
): { policy: Policy; compiled: CompiledPolicy } {
  const policy = parsePolicy(text);
  const compiled = new Compiled(policy, tailnet, options);
  const testTailnet = withTestDevices(policy, tailnet);
  const tested = testTailnet === tailnet ? compiled : new Compiled(policy, testTailnet, options);
  const failures = runPolicyTests(policy, tested.index, tested);
  if (failures.length > 0) throw new PolicyError('test(s) failed', undefined, failures);
  return { policy, compiled };
}

class Compiled implements CompiledPolicy {
  readonly policy: Policy;
  readonly index: TailnetIndex;
  readonly #options: CompileOptions;
  readonly #rules: CompiledRule[] = [];
  readonly #views = new Map<number, NodePolicy>();
  readonly #primaries: ReadonlyMap<string, number>;
  #unowned: FilterRule[] | undefined;
  /** Each global rule's node sets as bit sets, for peersOf. */
  readonly #ruleBits = new Map<GlobalRule, { src: IdSet; dst: IdSet }>();
  #carriers: number[] | undefined;
  /** Per global rule, its reduced form per set of destinations kept (see #reduce). */
  readonly #reduced = new Map<GlobalRule, Map<string, FilterRule>>();
  /** Per-node filters by the identities of their rules (see #filterFor). */
  readonly #filters = new Map<string, FilterRule[]>();
  readonly #ruleIds = new Map<FilterRule, number>();

  constructor(policy: Policy, tailnet: PolicyTailnet, options: CompileOptions) {
    this.policy = policy;
    this.#options = options;
    this.index = indexTailnet(tailnet);
    this.#primaries = tailnet.primaries ?? electPrimaries(tailnet.nodes);
    const resolver = new Resolver(policy, this.index);
    for (const rule of policy.rules) this.#rules.push(...this.#compileRule(rule, resolver));
  }

  // ---- global compile ----

  #compileRule(rule: PacketRule | AppRule, resolver: Resolver): CompiledRule[] {
    const src = resolver.resolveAll(rule.src);
    const srcNodes = this.#sourceNodes(src);
    const aliases = rule.kind === 'packet' ? rule.dst.map((d) => d.alias) : rule.dst;
    const plain =
      rule.kind === 'packet'
        ? this.#packetPart(rule, src, srcNodes, resolver)
        : this.#appPart(rule, src, srcNodes, resolver);
    const self = this.#selfPart(rule, src);
    const parts: CompiledRule[] = [];
    if (plain !== undefined) parts.push({ self: false, rule: plain });
    if (self !== undefined) parts.push({ self: true, rule: self });
    // Tailscale keeps the order the destinations are written in (capture acl-s08).
    return isSelf(aliases[0]) ? parts.reverse() : parts;
  }

  #packetPart(
    rule: PacketRule,
    src: Resolved,
    srcNodes: Set<number>,
    resolver: Resolver,
  ): GlobalRule | undefined {
    const plain = rule.dst.filter((d) => !isSelf(d.alias));
    if (plain.length === 0) return undefined;
    const dsts: Dst[] = [];
    let internet = false;
    for (const d of plain) {
      const targets = this.#destinations(d.alias, resolver);
      internet ||= targets.internet;
      for (const port of d.ports) for (const t of targets.list) dsts.push({ ...t, ports: port });
    }
    const dstNodes = this.#destinationNodes(dsts, rule.via, internet);
    const { proto, via } = rule;
    return { kind: 'packet', src, srcNodes, dsts, dstNodes, proto, via, caps: undefined, internet };
  }

  #appPart(rule: AppRule, src: Resolved, srcNodes: Set<number>, resolver: Resolver): GlobalRule | undefined {
    const plain = rule.dst.filter((a) => !isSelf(a));
    if (plain.length === 0) return undefined;
    const dsts: Dst[] = [];
    for (const alias of plain)
      for (const t of this.#destinations(alias, resolver).list) dsts.push({ ...t, ports: ALL_PORTS });
    const dstNodes = new Set<number>();
    for (const node of this.index.nodes)
      if (dsts.some((d) => d.range === ALL_RANGE || anyOverlap([d.range], node.ips))) dstNodes.add(node.id);
    return {
      kind: 'app',
      src,
      srcNodes,
      dsts,
      dstNodes,
      proto: undefined,
      via: [],
      caps: rule.caps,
      internet: false,
    };
  }

  #selfPart(rule: PacketRule | AppRule, src: Resolved): SelfRule | undefined {
    if (rule.kind === 'app')
      return rule.dst.some(isSelf)
        ? { kind: 'app', srcNodes: src.nodes, ports: [], proto: undefined, caps: rule.caps }
        : undefined;
    const ports = rule.dst.filter((d) => isSelf(d.alias)).flatMap((d) => d.ports);
    if (ports.length === 0) return undefined;
    return { kind: 'packet', srcNodes: src.nodes, ports, proto: rule.proto, caps: undefined };
  }

  /** Source nodes: those addressed directly, plus routers whose approved subnets lie in the sources. */
  #sourceNodes(src: Resolved): Set<number> {
    const nodes = new Set(src.nodes);
    if (src.ranges.length === 0) return nodes;
    for (const node of this.index.routers) if (anyOverlap(node.subnets, src.ranges)) nodes.add(node.id);
    return nodes;
  }

  #destinations(alias: Alias, resolver: Resolver): { list: Array<Omit<Dst, 'ports'>>; internet: boolean } {
    if (alias.kind === 'wildcard') return { list: [{ ip: '*', range: ALL_RANGE }], internet: true };
    if (alias.kind === 'autogroup' && alias.name === 'internet')
      return {
        list: INTERNET_TEXT.map((ip, i) => ({ ip, range: INTERNET_RANGES[i] as Range })),
        internet: true,
      };
    const resolved = resolver.resolve(alias, 'dst');
    return {
      list: resolved.texts.map((ip, i) => ({ ip, range: resolved.textRanges[i] as Range })),
      internet: false,
    };
  }

  #destinationNodes(dsts: Dst[], via: string[], internet: boolean): Set<number> {
    const nodes = new Set<number>();
    for (const node of this.index.nodes) {
      if (via.length > 0 && !node.tags.some((t) => via.includes(t))) continue;
      const direct =
        via.length === 0 && dsts.some((d) => d.range === ALL_RANGE || anyOverlap([d.range], node.ips));
      const routed = dsts.some((d) => d.range === ALL_RANGE || anyOverlap([d.range], node.subnets));
      if (direct || routed || (internet && node.exit)) nodes.add(node.id);
    }
    return nodes;
  }

  // ---- per node ----

  forNode(nodeId: number): NodePolicy {
    const cached = this.#views.get(nodeId);
    if (cached !== undefined) return cached;
    const node = this.index.byId.get(nodeId);
    const view: NodePolicy =
      node === undefined
        ? { packetFilter: [], sshPolicy: undefined, capMap: {} }
        : {
            packetFilter: this.#filterFor(node),
            sshPolicy: compileSsh(this.policy, this.index, node, this.#options.serverUrl),
            capMap: nodeCapMap(this.policy, this.index, node),
          };
    this.#views.set(nodeId, view);
    return view;
  }

  /**
   * What the rules allow toward an address no node holds (a test's IP literal, or any address while
   * the tailnet is empty): every direct rule with its destinations as written, so a policy's tests can
   * be checked before the nodes they talk about exist.
   */
  unownedFilter(): FilterRule[] {
    this.#unowned ??= mergeRules(
      this.#rules.flatMap((compiled) => {
        const rule = compiled.rule;
        if (compiled.self || compiled.rule.kind !== 'packet') return [];
        const global = rule as GlobalRule;
        if (global.src.texts.length === 0 || global.via.length > 0 || global.dsts.length === 0) return [];
        return [packetRule(global.src.texts, global.dsts, global.proto)];
      }),
    );
    return this.#unowned;
  }

  /**
   * The node's filter. Nodes whose rules come out as the same objects in the same order share one
   * filter array: in a tailnet where a rule's sources list n addresses and every node gets that rule,
   * that is one copy of the list instead of n (and the map builder encodes it once, not n times).
   */
  #filterFor(node: IndexedNode): FilterRule[] {
    const rules: FilterRule[] = [];
    for (const compiled of this.#rules) {
      const rule = compiled.self ? this.#selfRule(compiled.rule, node) : this.#reduce(compiled.rule, node);
      if (rule !== undefined) rules.push(rule);
    }
    const key = rules.map((rule) => this.#ruleId(rule)).join(',');
    let filter = this.#filters.get(key);
    if (filter === undefined) {
      filter = mergeRules(rules);
      this.#filters.set(key, filter);
    }
    return filter;
  }

  #ruleId(rule: FilterRule): number {
    let id = this.#ruleIds.get(rule);
    if (id === undefined) {
      id = this.#ruleIds.size;
      this.#ruleIds.set(rule, id);
    }
    return id;
  }

  #reduce(rule: GlobalRule, node: IndexedNode): FilterRule | undefined {
    if (rule.src.texts.length === 0) return undefined;
    if (rule.kind === 'app') {
      if (!rule.dstNodes.has(node.id)) return undefined;
      return capRule(rule.src.texts, node, rule.caps ?? {});
    }
    const viaOk = rule.via.length === 0 || node.tags.some((t) => rule.via.includes(t));
    if (!viaOk) return undefined;
    const kept: number[] = [];
    for (const [i, d] of rule.dsts.entries()) {
      const keep =
        d.range === ALL_RANGE
          ? rule.via.length === 0 || node.subnets.length > 0 || node.exit
          : (rule.via.length === 0 && anyOverlap([d.range], node.ips)) ||
            anyOverlap([d.range], node.subnets) ||
            (node.exit && insideInternet(d.range));
      if (keep) kept.push(i);
    }
    if (kept.length === 0) return undefined;
    // Every node that keeps the same destinations of this rule gets the same rule object.
    const variants = this.#reduced.get(rule) ?? new Map<string, FilterRule>();
    this.#reduced.set(rule, variants);
    const key = kept.join(',');
    let reduced = variants.get(key);
    if (reduced === undefined) {
      reduced = packetRule(
        rule.src.texts,
        kept.map((i) => rule.dsts[i] as Dst),
        rule.proto,
      );
      variants.set(key, reduced);
    }
    return reduced;
  }

  /** autogroup:self for one destination: only its own user's nodes, and only toward this node. */
  #selfRule(rule: SelfRule, node: IndexedNode): FilterRule | undefined {
    if (node.tagged || node.userId === null) return undefined;
    const mates = this.index.userNodes.get(node.userId) ?? [];
    const sources = mates.filter((mate) => rule.srcNodes.has(mate.id));
    if (sources.length === 0) return undefined;
    const srcTexts = sources.flatMap((s) => s.ipTexts);
    if (rule.kind === 'app') return capRule(srcTexts, node, rule.caps ?? {});
    const dsts: Dst[] = [];
    for (const ports of rule.ports)
      for (const [i, ip] of node.ipTexts.entries()) dsts.push({ ip, range: node.ips[i] as Range, ports });
    return packetRule(srcTexts, dsts, rule.proto);
  }

  // ---- visibility ----

  canSee(a: number, b: number): boolean {
    if (a === b) return false;
    for (const compiled of this.#rules) {
      if (compiled.self) {
        if (this.#selfRelated(compiled.rule, a, b)) return true;
        continue;
      }
      const { srcNodes, dstNodes } = compiled.rule;
      if ((srcNodes.has(a) && dstNodes.has(b)) || (srcNodes.has(b) && dstNodes.has(a))) return true;
    }
    return false;
  }

  peersOf(viewer: number): IdSet {
    const peers = new IdSet();
    for (const compiled of this.#rules) {
      if (compiled.self) {
        this.#addMates(compiled.rule, viewer, peers);
        continue;
      }
      const { srcNodes, dstNodes } = compiled.rule;
      const bits = this.#bitsOf(compiled.rule);
      if (srcNodes.has(viewer)) peers.addAll(bits.dst);
      if (dstNodes.has(viewer)) peers.addAll(bits.src);
    }
    peers.delete(viewer);
    return peers;
  }

  routeCarriers(): readonly number[] {
    this.#carriers ??= this.index.nodes.filter((n) => n.subnets.length > 0 || n.exit).map((n) => n.id);
    return this.#carriers;
  }

  #bitsOf(rule: GlobalRule): { src: IdSet; dst: IdSet } {
    let bits = this.#ruleBits.get(rule);
    if (bits === undefined) {
      bits = { src: IdSet.of(rule.srcNodes), dst: IdSet.of(rule.dstNodes) };
      this.#ruleBits.set(rule, bits);
    }
    return bits;
  }

  /** autogroup:self's share of peersOf: the viewer's own user's untagged nodes the rule relates it to. */
  #addMates(rule: SelfRule, viewer: number, peers: IdSet): void {
    const node = this.index.byId.get(viewer);
    if (node === undefined || node.tagged || node.userId === null) return;
    const all = rule.srcNodes.has(viewer);
    for (const mate of this.index.userNodes.get(node.userId) ?? [])
      if (all || rule.srcNodes.has(mate.id)) peers.add(mate.id);
  }

  #selfRelated(rule: SelfRule, a: number, b: number): boolean {
    const na = this.index.byId.get(a);
    const nb = this.index.byId.get(b);
    if (na === undefined || nb === undefined || na.tagged || nb.tagged) return false;
    if (na.userId === null || na.userId !== nb.userId) return false;
    return rule.srcNodes.has(a) || rule.srcNodes.has(b);
  }

  peerRoutes(viewer: number, peer: number): string[] {
    const v = this.index.byId.get(viewer);
    const p = this.index.byId.get(peer);
    if (v === undefined || p === undefined) return [];
    const routes: string[] = [];
    for (const [i, route] of p.subnetTexts.entries()) {
      if (this.#primaries.get(route) !== p.id) continue;
      const range = p.subnets[i] as Range;
      if (this.#mayUseRoute(v, p, range)) routes.push(route);
    }
    if (p.exit && this.#mayUseInternet(v, p)) routes.push(...EXIT_ROUTES);
    return routes;
  }

  #packetRulesThrough(peer: IndexedNode): GlobalRule[] {
    const out: GlobalRule[] = [];
    for (const compiled of this.#rules) {
      if (compiled.self || compiled.rule.kind !== 'packet') continue;
      const rule = compiled.rule;
      if (rule.via.length > 0 && !peer.tags.some((t) => rule.via.includes(t))) continue;
      out.push(rule);
    }
    return out;
  }

  #mayUseRoute(viewer: IndexedNode, peer: IndexedNode, route: Range): boolean {
    return this.#packetRulesThrough(peer).some((rule) => {
      const reaches = rule.dsts.some((d) => d.range === ALL_RANGE || overlaps(d.range, route));
      if (rule.srcNodes.has(viewer.id) && reaches) return true;
      // Return traffic: the subnet may reach the viewer (or the viewer's own subnets, which it routes
      // for), so the viewer needs the route back.
      if (!anyOverlap(rule.src.ranges, [route])) return false;
      const local = [...viewer.ips, ...viewer.subnets];
      return rule.dsts.some((d) => d.range === ALL_RANGE || anyOverlap([d.range], local));
    });
  }

  #mayUseInternet(viewer: IndexedNode, peer: IndexedNode): boolean {
    return this.#packetRulesThrough(peer).some((rule) => rule.internet && rule.srcNodes.has(viewer.id));
  }
}

function packetRule(srcIps: string[], dsts: Dst[], proto: number[] | undefined): FilterRule {
  const rule: FilterRule = {
    SrcIPs: [...srcIps],
    DstPorts: dsts.map(
      (d): NetPortRange => ({ IP: d.ip, Ports: { First: d.ports.first, Last: d.ports.last } }),
    ),
  };
  if (proto !== undefined) rule.IPProto = [...proto];
  return rule;
}

function capRule(srcIps: string[], node: IndexedNode, caps: Record<string, unknown[]>): FilterRule {
  const grant: CapGrant = { Dsts: node.hostPrefixes, CapMap: caps };
  return { SrcIPs: [...srcIps], CapGrant: [grant] };
}

/**
 * Rules with the same sources and protocols become one rule with their destinations concatenated,
 * as Tailscale's control plane sends them (capture acl-ar02). App (CapGrant) rules stay separate.
 * The input rules are shared between nodes, so a merge makes a new rule instead of changing one.
 */
function mergeRules(rules: readonly FilterRule[]): FilterRule[] {
  const out: FilterRule[] = [];
  const byKey = new Map<string, number>();
  for (const rule of rules) {
    if (rule.CapGrant !== undefined) {
      out.push(rule);
      continue;
    }
    const key = `${[...rule.SrcIPs].sort().join(',')}|${[...(rule.IPProto ?? [])].sort().join(',')}`;
    const at = byKey.get(key);
    if (at === undefined) {
      byKey.set(key, out.length);
      out.push(rule);
      continue;
    }
    const existing = out[at] as FilterRule;
    out[at] = { ...existing, DstPorts: [...(existing.DstPorts ?? []), ...(rule.DstPorts ?? [])] };
  }
  return out;
}
