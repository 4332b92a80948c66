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
  UserProfile,
  Node as WireNode,
} from '../tailcfg/index.ts';
import { CAPVER_DERP_CERT_PIN, withoutCertPins } from '../tailcfg/index.ts';
import { peerView, selfView, userProfile, wireUserId } from './node-view.ts';

/** Tailnet-wide settings every map carries. */
export interface MapSettings {
  /** MagicDNS suffix: nodes are `<given name>.<baseDomain>.`. */
  baseDomain: string;
  /** The tailnet's name as clients display it. */
  domain: string;
  derpMap: DERPMap;
  dnsConfig: DNSConfig;
  packetFilter: readonly FilterRule[];
}

/** What one delta message says; empty parts are left out of the JSON. */
export interface Delta {
  self?: TailnetNode;
  changed: TailnetNode[];
  removed: number[];
  patches: PeerChange[];
  controlTime: Date;
}

const COMMA = Buffer.from(',');

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
  readonly #settings: MapSettings;
  /** The DERP map for clients older than certificate pins (the same object when nothing is pinned). */
  readonly #unpinnedDerpMap: DERPMap;
  readonly #fragments = new Map<number, { version: number; bytes: Buffer }>();

  constructor(tailnet: Tailnet, settings: MapSettings) {
    this.#tailnet = tailnet;
    this.#settings = settings;
    this.#unpinnedDerpMap = withoutCertPins(settings.derpMap);
  }

  get settings(): MapSettings {
    return this.#settings;
  }

  /** Whether `viewer` may know about `peer`. Everyone sees everyone until the policy engine decides. */
  canSee(viewer: TailnetNode, peer: TailnetNode): boolean {
    return viewer.id !== peer.id;
  }

  peers(viewer: TailnetNode): TailnetNode[] {
    const peers: TailnetNode[] = [];
    for (const node of this.#tailnet.nodes()) if (this.canSee(viewer, node)) peers.push(node);
    return peers.sort((a, b) => a.id - b.id);
  }

  /** The peer JSON of `node` at its current version, encoded at most once per version. */
  fragment(node: TailnetNode): Buffer {
    const cached = this.#fragments.get(node.id);
    if (cached !== undefined && cached.version === node.version) return cached.bytes;
    const bytes = ownBytes(JSON.stringify(peerView(node, this.#settings.baseDomain, this.#tailnet.now())));
    this.#fragments.set(node.id, { version: node.version, bytes });
    return bytes;
  }

  forget(nodeId: number): void {
    this.#fragments.delete(nodeId);
  }

  selfNode(node: TailnetNode): WireNode {
    return selfView(node, this.#settings.baseDomain, this.#tailnet.now());
  }

  profiles(nodes: Iterable<TailnetNode>): UserProfile[] {
    const ids = new Set<number>();
    for (const node of nodes) ids.add(wireUserId(node));
    return [...ids].sort((a, b) => a - b).map((id) => userProfile(id, this.#tailnet.user(id)));
  }

  /** The complete first message of a stream (or a one-shot map). */
  fullMap(node: TailnetNode): Buffer {
    const peers = this.peers(node);
    const now = this.#tailnet.now();
    const head: MapResponse = {
      Node: this.selfNode(node),
      DERPMap: node.capVersion < CAPVER_DERP_CERT_PIN ? this.#unpinnedDerpMap : this.#settings.derpMap,
      DNSConfig: this.#settings.dnsConfig,
      Domain: this.#settings.domain,
      CollectServices: false,
      PacketFilter: [...this.#settings.packetFilter],
      UserProfiles: this.profiles([node, ...peers]),
      ControlTime: now.toISOString(),
      Debug: { DisableLogTail: true },
    };
    return this.#withPeers(head, 'Peers', peers);
  }

  /** One delta message, or undefined when it would say nothing. */
  delta(delta: Delta): Buffer | undefined {
    const { self, changed, removed, patches } = delta;
    if (self === undefined && changed.length === 0 && removed.length === 0 && patches.length === 0)
      return undefined;
    const head: MapResponse = {};
    if (self !== undefined) head.Node = this.selfNode(self);
    if (removed.length > 0) head.PeersRemoved = removed;
    if (patches.length > 0) head.PeersChangedPatch = patches;
    // Presence also goes out in the dedicated field older tooling reads; the patch carries the same
    // value plus LastSeen in server time (PeerSeenChange would make the client use its own clock).
    const presence = patches.filter((p) => p.Online !== undefined);
    if (presence.length > 0)
      head.OnlineChange = Object.fromEntries(presence.map((p) => [p.NodeID, p.Online === true]));
    const profiled = self === undefined ? changed : [self, ...changed];
    if (profiled.length > 0) head.UserProfiles = this.profiles(profiled);
    head.ControlTime = delta.controlTime.toISOString();
    return this.#withPeers(head, 'PeersChanged', changed);
  }

  /** JSON of `head` with `field: [fragments…]` spliced in (left out when there are none). */
  #withPeers(head: MapResponse, field: 'Peers' | 'PeersChanged', peers: TailnetNode[]): Buffer {
    const json = JSON.stringify(head);
    if (peers.length === 0) return Buffer.from(json);
    const open = json === '{}' ? `{"${field}":[` : `${json.slice(0, -1)},"${field}":[`;
    const parts: Buffer[] = [Buffer.from(open)];
    for (const [i, peer] of peers.entries()) {
      if (i > 0) parts.push(COMMA);
      parts.push(this.fragment(peer));
    }
    parts.push(Buffer.from(']}'));
    return Buffer.concat(parts);
  }
}
