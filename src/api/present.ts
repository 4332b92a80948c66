/** Records → API JSON. */

import { tokenLabel } from '../crypto/tokens.ts';
import type { ApiKey, PreAuthKey, User } from '../db/records.ts';
import type { Store } from '../db/store.ts';
import { isExitRoute } from '../policy/index.ts';
import { isExpired, type TailnetNode } from '../state/model.ts';
import { advertisedRoutes, type Tailnet } from '../state/tailnet.ts';
import type { ApiKeyJson, NodeJson, PreAuthKeyJson, UserJson } from './wire.ts';

export function userJson(user: User): UserJson {
  return {
    id: String(user.id),
    name: user.name,
    displayName: user.displayName,
    email: user.email,
    provider: user.provider,
    providerId: user.providerId ?? '',
    profilePicUrl: user.profilePicUrl,
    createdAt: user.createdAt.toISOString(),
  };
}

export function preAuthKeyJson(key: PreAuthKey, owner: User | undefined, fullKey?: string): PreAuthKeyJson {
  return {
    id: String(key.id),
    prefix: tokenLabel('auth', key.prefix),
    ...(fullKey === undefined ? {} : { key: fullKey }),
    user: owner ? userJson(owner) : null,
    reusable: key.reusable,
    ephemeral: key.ephemeral,
    used: key.used,
    expiration: key.expiration.toISOString(),
    createdAt: key.createdAt.toISOString(),
    aclTags: key.tags,
  };
}

/**
 * A node as the API shows it; `owner` is its user (undefined for a tagged node), `primaryRoutes` the
 * subnet routes it is the HA primary for.
 */
export function nodeJson(
  node: TailnetNode,
  owner: User | undefined,
  baseDomain: string,
  now: Date,
  primaryRoutes: readonly string[] = [],
): NodeJson {
  const available = advertisedRoutes(node.hostinfo);
  const exits = node.approvedRoutes.filter((r) => isExitRoute(r) && available.includes(r));
  return {
    id: String(node.id),
    machineKey: node.machineKey,
    nodeKey: node.nodeKey,
    discoKey: node.discoKey,
    ipAddresses: [node.ipv4, node.ipv6].filter((ip): ip is string => ip !== null),
    name: node.givenName,
    givenName: node.givenName,
    hostname: node.hostname,
    fqdn: `${node.givenName}.${baseDomain}`,
    user: owner ? userJson(owner) : null,
    tags: node.tags,
    online: node.online,
    lastSeen: node.lastSeen?.toISOString() ?? null,
    expiry: node.expiry?.toISOString() ?? null,
    expired: isExpired(node, now),
    ephemeral: node.ephemeral,
    registerMethod: node.registerMethod,
    createdAt: node.createdAt.toISOString(),
    ...clientOf(node),
    availableRoutes: available,
    approvedRoutes: [...node.approvedRoutes],
    subnetRoutes: [...exits, ...primaryRoutes].sort(),
    authorized: node.authorized,
  };
}

/** The client's OS and Tailscale version as it reported them ('' when unknown). */
export function clientOf(node: TailnetNode): { os: string; clientVersion: string } {
  const { OS, IPNVersion } = node.hostinfo as Record<string, unknown>;
  return {
    os: typeof OS === 'string' ? OS : '',
    clientVersion: typeof IPNVersion === 'string' ? IPNVersion : '',
  };
}

/** A node's owner: the tailnet knows every user that owns a node; the store is the fallback. */
export async function ownerOf(tailnet: Tailnet, store: Store, node: TailnetNode): Promise<User | undefined> {
  if (node.userId === null) return undefined;
  return tailnet.user(node.userId) ?? (await store.users.findById(node.userId));
}

export function apiKeyJson(key: ApiKey, owner: User | undefined): ApiKeyJson {
  return {
    id: String(key.id),
    prefix: tokenLabel('api', key.prefix),
    user: owner ? userJson(owner) : null,
    expiration: key.expiration.toISOString(),
    createdAt: key.createdAt.toISOString(),
    lastSeen: key.lastSeen?.toISOString() ?? null,
  };
}
