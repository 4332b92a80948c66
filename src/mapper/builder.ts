/**
 * Builds MapResponse JSON from the tailnet model.
 *
 * Peers dominate a map's size, and a peer looks the same to every viewer, so each node's peer JSON is
 * encoded once per node version and cached as bytes; a full map is a per-viewer head (self node, DNS,
 * DERP map, filter, profiles) with the cached peer fragments spliced in by Buffer.concat. With 10 000
 * nodes that is a few milliseconds per map instead of tens for a fresh JSON.stringify.
 */
import type { TailnetNode } from '../state/model.ts';
import type { Tailnet } from '../state/tailnet.ts';
import type {
  DERPMap,
  DNSConfig,
  FilterRule,
  MapResponse,
  PeerChange,
  SSHPolicy,
  UserProfile,
  Node as WireNode,
} from '../tailcfg/index.ts';
import { CAPVER_DERP_CERT_PIN, withoutCertPins } from '../tailcfg/index.ts';
import type { IdSet } from '../util/id-set.ts';
import { type Compression, frame, frameFromZstdFrames, zstdFrame } from './frame.ts';
import { peerView, selfView, userProfile, wireUserId } from './node-view.ts';
import { PeerBlocks } from './peer-blocks.ts';
import { PeerSet } from './peer-set.ts';
import type { PolicyView } from './policy-view.ts';

/** SaaS always grants this; tailscaled checks it before running its SSH server (rules still decide who). */
const SSH_CAPABILITY = 'https://tailscale.com/cap/ssh';

/** Tailnet-wide settings every map carries. */
export interface MapSettings {
  /** MagicDNS suffix: nodes are `<given name>.<baseDomain>.`. */
  baseDomain: string;
  /** The tailnet's name as clients display it. */
  domain: string;
  derpMap: DERPMap;
  dnsConfig: DNSConfig;
}

/** A peer as one viewer sees it: the node plus the routes the viewer may use through it. */
export interface PeerEntry {
  node: TailnetNode;
  routes: string[];
}

/** What a viewer was last told: its peers (with their routes) and its policy parts, as comparable keys. */
export interface ViewerState {
  peers: PeerSet;
  filter: string;
  ssh: string;
  caps: string;
}

/** What one delta message says; empty parts are left out of the JSON. */
export interface Delta {
  self?: TailnetNode;
  changed: PeerEntry[];
  removed: number[];
  patches: PeerChange[];
  packetFilter?: FilterRule[];
  /** `null` withdraws every SSH rule (sent as an empty policy; absent would mean "unchanged"). */
  sshPolicy?: SSHPolicy | null;
  /** The tailnet's new DNS settings; the client replaces its whole DNS configuration with it. */
  dnsConfig?: DNSConfig;
  controlTime: Date;
}

const COMMA = Buffer.from(',');
const CLOSE = Buffer.from(']}');
const CLOSE_PEERS = zstdFrame(CLOSE);

/**
 * The UTF-8 bytes of `text` in memory of their own. Buffer.from() would slice small strings out of
 * Node's shared pool, and a cached fragment would then keep a whole pool slab (tens of KiB) alive.
 */
function ownBytes(text: string): Buffer {
  const bytes = Buffer.allocUnsafeSlow(Buffer.byteLength(text));
  bytes.write(text);
  return bytes;
}

export class MapBuilder {
  readonly #tailnet: Tailnet;
  /** Replaced whole (never mutated) when the DNS settings change. */
  #settings: MapSettings;
  readonly #policy: PolicyView;
  /** The DERP map for clients older than certificate pins (the same object when nothing is pinned). */
  readonly #unpinnedDerpMap: DERPMap;
  /** Encoded peer JSON per node version; a router has one variant per set of routes shown with it. */
  readonly #fragments = new Map<number, { version: number; variants: Map<string, Buffer> }>();
  readonly #jsonTexts = new WeakMap<object, string>();
  readonly #blocks = new PeerBlocks((entry) => this.fragment(entry.node, entry.routes));

  constructor(tailnet: Tailnet, settings: MapSettings, policy: PolicyView) {
    this.#tailnet = tailnet;
    this.#settings = settings;
    this.#policy = policy;
    this.#unpinnedDerpMap = withoutCertPins(settings.derpMap);
  }

  get settings(): MapSettings {
    return this.#settings;
  }

  get policy(): PolicyView {
    return this.#policy;
  }

  /** New DNS settings: full maps from now on carry them (the broadcaster tells connected clients). */
  setDnsConfig(dnsConfig: DNSConfig): void {
    this.#settings = { ...this.#settings, dnsConfig };
  }

  /** Whether `viewer` may know about `peer`: the policy relates them in either direction. */
  canSee(viewer: TailnetNode, peer: TailnetNode): boolean {
    return viewer.id !== peer.id && this.#policy.compiled.canSee(viewer.id, peer.id);
  }

  /** The routes (subnets, exit) `viewer` may use through `peer`. */
  routes(viewer: TailnetNode, peer: TailnetNode): string[] {
    return this.#policy.compiled.peerRoutes(viewer.id, peer.id);
  }

  entry(viewer: TailnetNode, peer: TailnetNode): PeerEntry {
    return { node: peer, routes: this.routes(viewer, peer) };
  }

  /** The ids of every node `viewer` may see. */
  visiblePeers(viewer: TailnetNode): IdSet {
    return this.#policy.compiled.peersOf(viewer.id);
  }

  /** The nodes whose routes as shown can differ between viewers (subnet routers, exit nodes). */
  routeCarriers(): readonly number[] {
    return this.#policy.compiled.routeCarriers();
  }

  /** The peers of `viewer`, ascending by id. */
  peers(viewer: TailnetNode): PeerEntry[] {
    const peers: PeerEntry[] = [];
    for (const id of this.visiblePeers(viewer)) {
      const node = this.#tailnet.node(id);
      if (node !== undefined) peers.push(this.entry(viewer, node));
    }
    return peers;
  }

  /** The peer JSON of `node` at its current version with `routes`, encoded at most once per variant. */
  fragment(node: TailnetNode, routes: readonly string[] = []): Buffer {
    let cached = this.#fragments.get(node.id);
    if (cached === undefined || cached.version !== node.version) {
      cached = { version: node.version, variants: new Map() };
      this.#fragments.set(node.id, cached);
    }
    const key = routes.join(',');
    let bytes = cached.variants.get(key);
    if (bytes === undefined) {
      const view = peerView(node, this.#settings.baseDomain, this.#tailnet.now(), routes);
      bytes = ownBytes(JSON.stringify(view));
      cached.variants.set(key, bytes);
    }
    return bytes;
  }

  forget(nodeId: number): void {
    this.#fragments.delete(nodeId);
  }

  selfNode(node: TailnetNode): WireNode {
    const wire = selfView(node, this.#settings.baseDomain, this.#tailnet.now());
    wire.CapMap = { [SSH_CAPABILITY]: null, ...this.#policy.compiled.forNode(node.id).capMap };
    return wire;
  }

  profiles(nodes: Iterable<TailnetNode>): UserProfile[] {
    const ids = new Set<number>();
    for (const node of nodes) ids.add(wireUserId(node));
    return [...ids].sort((a, b) => a - b).map((id) => userProfile(id, this.#tailnet.user(id)));
  }

  /** The complete first message of a stream (or a one-shot map), as plain JSON. */
  fullMap(node: TailnetNode): Buffer {
    const { head, peers } = this.#fullMapParts(node);
    return this.#withPeers(head, 'Peers', peers);
  }

  /**
   * A full map framed for the wire, plus what it told the viewer. With zstd the peers come from
   * blocks compressed once for every map that holds them (peer-blocks.ts), so a map costs the
   * compression of its head and of the viewer's own block, not of all n peers.
   */
  fullMapFrame(
    node: TailnetNode,
    compression: Compression,
  ): { frame: Buffer | Promise<Buffer>; state: ViewerState } {
    const { head, peers } = this.#fullMapParts(node);
    const state = this.viewerState(node, peers);
    if (compression === 'none' || peers.length === 0)
      return { frame: frame(this.#withPeers(head, 'Peers', peers), compression), state };
    const open = zstdFrame(Buffer.from(this.#opening(head, 'Peers')));
    return { frame: frameFromZstdFrames([open, ...this.#blocks.frames(peers, node.id), CLOSE_PEERS]), state };
  }

  #fullMapParts(node: TailnetNode): { head: MapResponse; peers: PeerEntry[] } {
    const peers = this.peers(node);
    const nodePolicy = this.#policy.compiled.forNode(node.id);
    const head: MapResponse = {
      Node: this.selfNode(node),
      DERPMap: node.capVersion < CAPVER_DERP_CERT_PIN ? this.#unpinnedDerpMap : this.#settings.derpMap,
      DNSConfig: this.#settings.dnsConfig,
      Domain: this.#settings.domain,
      CollectServices: false,
      // Never absent: a missing filter means "unchanged", and an empty one denies everything.
      PacketFilter: nodePolicy.packetFilter,
      UserProfiles: this.profiles([node, ...peers.map((p) => p.node)]),
      ControlTime: this.#tailnet.now().toISOString(),
      Debug: { DisableLogTail: true },
    };
    if (nodePolicy.sshPolicy !== undefined) head.SSHPolicy = nodePolicy.sshPolicy;
    return { head, peers };
  }

  /** The comparable form of what `node` is entitled to now. */
  viewerState(node: TailnetNode, peers: readonly PeerEntry[]): ViewerState {
    const nodePolicy = this.#policy.compiled.forNode(node.id);
    return {
      peers: PeerSet.from(peers.map((p) => [p.node.id, p.routes.join(',')] as const)),
      filter: this.jsonText(nodePolicy.packetFilter),
      ssh: this.jsonText(nodePolicy.sshPolicy),
      caps: this.jsonText(nodePolicy.capMap),
    };
  }

  /**
   * JSON text of a compiled policy part, encoded once per object: nodes with the same filter share
   * one object (compile.ts), so comparing every session's filter after a change costs one encoding
   * per distinct filter, and the sessions' states share one string. The parts are never mutated.
   */
  jsonText(part: object | undefined): string {
    if (part === undefined) return 'null';
    let text = this.#jsonTexts.get(part);
    if (text === undefined) {
      text = JSON.stringify(part);
      this.#jsonTexts.set(part, text);
    }
    return text;
  }

  /** One delta message, or undefined when it would say nothing. */
  delta(delta: Delta): Buffer | undefined {
    const { self, changed, removed, patches, packetFilter, sshPolicy, dnsConfig } = delta;
    const tailnetParts = packetFilter !== undefined || sshPolicy !== undefined || dnsConfig !== undefined;
    if (self === undefined && changed.length + removed.length + patches.length === 0 && !tailnetParts)
      return undefined;
    const head: MapResponse = {};
    if (self !== undefined) head.Node = this.selfNode(self);
    if (packetFilter !== undefined) head.PacketFilter = packetFilter;
    if (sshPolicy !== undefined) head.SSHPolicy = sshPolicy ?? { rules: [] };
    if (dnsConfig !== undefined) head.DNSConfig = dnsConfig;
    if (removed.length > 0) head.PeersRemoved = removed;
    if (patches.length > 0) head.PeersChangedPatch = patches;
    // Presence also goes out in the dedicated field older tooling reads; the patch carries the same
    // value plus LastSeen in server time (PeerSeenChange would make the client use its own clock).
    const presence = patches.filter((p) => p.Online !== undefined);
    if (presence.length > 0)
      head.OnlineChange = Object.fromEntries(presence.map((p) => [p.NodeID, p.Online === true]));
    const profiled = changed.map((p) => p.node);
    if (self !== undefined) profiled.unshift(self);
    if (profiled.length > 0) head.UserProfiles = this.profiles(profiled);
    head.ControlTime = delta.controlTime.toISOString();
    return this.#withPeers(head, 'PeersChanged', changed);
  }

  /** JSON of `head` with `field: [fragments…]` spliced in (left out when there are none). */
  #withPeers(head: MapResponse, field: 'Peers' | 'PeersChanged', peers: readonly PeerEntry[]): Buffer {
    if (peers.length === 0) return Buffer.from(JSON.stringify(head));
    const parts: Buffer[] = [Buffer.from(this.#opening(head, field))];
    for (const [i, peer] of peers.entries()) {
      if (i > 0) parts.push(COMMA);
      parts.push(this.fragment(peer.node, peer.routes));
    }
    parts.push(CLOSE);
    return Buffer.concat(parts);
  }

  /** `head`'s JSON opened up to the first element of `field`: `{…,"field":[`. */
  #opening(head: MapResponse, field: 'Peers' | 'PeersChanged'): string {
    const json = JSON.stringify(head);
    return json === '{}' ? `{"${field}":[` : `${json.slice(0, -1)},"${field}":[`;
  }
}
