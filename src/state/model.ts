/**
 * The in-memory tailnet model: every node with its stored fields plus what only a running server knows
 * (online, the client's capability version), and the changes the model announces to the mapper.
 *
 * Every mutation of a node bumps its `version`. The mapper caches each node's encoded peer JSON under
 * (id, version), so an unchanged node is never encoded twice no matter how many maps include it.
 */
import type { Node } from '../db/records.ts';
import type { Hostinfo } from '../tailcfg/index.ts';
import type { DiscoPublic, NodePublic } from '../types/keys.ts';

export interface TailnetNode extends Omit<Node, 'updatedAt' | 'hostinfo'> {
  /** What the client last reported about itself (Hostinfo as sent, NetInfo kept when a request omits it). */
  hostinfo: Hostinfo;
  /** Bumped on every change that a peer or the node itself could see. */
  version: number;
  /** True while the node holds at least one streaming map request (after the offline grace period ends: false). */
  online: boolean;
  /** Open streaming map sessions. */
  sessions: number;
  /** Capability version from the node's last map request; 0 until it sent one since weft started. */
  capVersion: number;
}

/** The fields a `PeersChangedPatch` can carry; absent = unchanged. */
export interface PeerPatch {
  endpoints?: string[];
  derpRegion?: number;
  discoKey?: DiscoPublic;
  key?: NodePublic;
  online?: boolean;
  lastSeen?: Date;
  cap?: number;
}

/**
 * What changed, for whom:
 *  - added:   a new node; peers need it whole (PeersChanged) and its user's profile.
 *  - updated: something only a whole node can express changed (name, hostinfo, expiry, key, tags);
 *             peers get it whole, and `self` says whether the node's own view (MapResponse.Node) changed.
 *  - patched: only PeersChangedPatch fields changed.
 *  - removed: the node is gone; peers get PeersRemoved and its own sessions end.
 */
export type NodeChange =
  | { kind: 'added'; node: TailnetNode }
  | { kind: 'updated'; node: TailnetNode; self: boolean }
  | { kind: 'patched'; node: TailnetNode; patch: PeerPatch }
  | { kind: 'removed'; node: TailnetNode };

export type ChangeListener = (change: NodeChange) => void;

export function isExpired(node: Pick<TailnetNode, 'expiry'>, now: Date): boolean {
  return node.expiry !== null && node.expiry.getTime() <= now.getTime();
}
