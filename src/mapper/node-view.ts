/**
 * How a tailnet node looks on the wire (tailcfg.Node), to itself and to its peers, and the user
 * profiles that go with it.
 */
import type { User } from '../db/records.ts';
import type { PeerPatch, TailnetNode } from '../state/model.ts';
import { isExpired } from '../state/model.ts';
import { homeDerpOf, hostinfoForPeers } from '../state/tailnet.ts';
import type { PeerChange, UserProfile, Node as WireNode } from '../tailcfg/index.ts';

/**
 * Tagged nodes are owned by their tags, not a person; they all appear as this one user, the way
 * Tailscale and Headscale show them.
 */
export const TAGGED_DEVICES_USER_ID = 2147455555;
const TAGGED_DEVICES_PROFILE: UserProfile = {
  ID: TAGGED_DEVICES_USER_ID,
  LoginName: 'tagged-devices',
  DisplayName: 'Tagged Devices',
};

export function wireUserId(node: Pick<TailnetNode, 'userId'>): number {
  return node.userId ?? TAGGED_DEVICES_USER_ID;
}

/** A user's login name: the email when there is one, else `name@` (how policies refer to such users). */
export function loginName(user: User): string {
  return user.email !== '' ? user.email : `${user.name}@`;
}

export function userProfile(id: number, user: User | undefined): UserProfile {
  if (id === TAGGED_DEVICES_USER_ID) return TAGGED_DEVICES_PROFILE;
  // A user the model does not know (should not happen) still needs a profile under its own id, or
  // the client would show the peer without an owner.
  if (user === undefined) return { ID: id, LoginName: `user-${id}`, DisplayName: `user ${id}` };
  const profile: UserProfile = {
    ID: user.id,
    LoginName: loginName(user),
    DisplayName: user.displayName || user.name,
  };
  if (user.profilePicUrl !== '') profile.ProfilePicURL = user.profilePicUrl;
  return profile;
}

export function fqdn(node: Pick<TailnetNode, 'givenName'>, baseDomain: string): string {
  return `${node.givenName}.${baseDomain}.`;
}

function addresses(node: TailnetNode): string[] {
  const list: string[] = [];
  if (node.ipv4 !== null) list.push(`${node.ipv4}/32`);
  if (node.ipv6 !== null) list.push(`${node.ipv6}/128`);
  return list;
}

/** The fields self and peer views share. */
function baseNode(node: TailnetNode, baseDomain: string, now: Date): WireNode {
  const ips = addresses(node);
  const wire: WireNode = {
    ID: node.id,
    StableID: String(node.id),
    Name: fqdn(node, baseDomain),
    User: wireUserId(node),
    Key: node.nodeKey,
    Machine: node.machineKey,
    Addresses: ips,
    AllowedIPs: ips,
    HomeDERP: homeDerpOf(node.hostinfo),
    Created: node.createdAt.toISOString(),
    // False while the node waits for device approval: its client shows that it needs approval.
    MachineAuthorized: node.authorized,
  };
  if (node.discoKey !== '') wire.DiscoKey = node.discoKey;
  if (node.expiry !== null) wire.KeyExpiry = node.expiry.toISOString();
  if (isExpired(node, now)) wire.Expired = true;
  if (node.capVersion > 0) wire.Cap = node.capVersion;
  if (node.tags.length > 0) wire.Tags = node.tags;
  return wire;
}

/** The node as its peers see it; only the routes depend on the viewer, so it is encoded once per variant. */
export function peerView(
  node: TailnetNode,
  baseDomain: string,
  now: Date,
  routes: readonly string[] = [],
): WireNode {
  const wire = baseNode(node, baseDomain, now);
  if (routes.length > 0) {
    // Routes the viewer may use through this peer; exit routes are never "primary" (HA is per subnet).
    wire.AllowedIPs = [...(wire.AllowedIPs ?? []), ...routes];
    const primary = routes.filter((r) => r !== '0.0.0.0/0' && r !== '::/0');
    if (primary.length > 0) wire.PrimaryRoutes = primary;
  }
  wire.Endpoints = node.endpoints;
  wire.Hostinfo = hostinfoForPeers(node.hostinfo);
  wire.Online = node.online;
  // Headscale's lesson: LastSeen on an online peer confuses clients; send it only for offline ones.
  if (!node.online && node.lastSeen !== null) wire.LastSeen = node.lastSeen.toISOString();
  return wire;
}

/** The node as it sees itself (MapResponse.Node). */
export function selfView(node: TailnetNode, baseDomain: string, now: Date): WireNode {
  const wire = baseNode(node, baseDomain, now);
  wire.Hostinfo = node.hostinfo;
  return wire;
}

export function peerChange(nodeId: number, patch: PeerPatch): PeerChange {
  const change: PeerChange = { NodeID: nodeId };
  if (patch.derpRegion !== undefined) change.DERPRegion = patch.derpRegion;
  if (patch.cap !== undefined) change.Cap = patch.cap;
  if (patch.endpoints !== undefined) change.Endpoints = patch.endpoints;
  if (patch.key !== undefined) change.Key = patch.key;
  if (patch.discoKey !== undefined) change.DiscoKey = patch.discoKey;
  if (patch.online !== undefined) change.Online = patch.online;
  if (patch.lastSeen !== undefined) change.LastSeen = patch.lastSeen.toISOString();
  return change;
}
