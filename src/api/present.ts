/** Records → API JSON. */

import { tokenLabel } from '../crypto/tokens.ts';
import type { ApiKey, PreAuthKey, User } from '../db/records.ts';
import { isExitRoute } from '../policy/index.ts';
import { isExpired, type TailnetNode } from '../state/model.ts';
import { advertisedRoutes } from '../state/tailnet.ts';
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
  const hostinfo: Record<string, unknown> = node.hostinfo as Record<string, unknown>;
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
    os: typeof hostinfo.OS === 'string' ? hostinfo.OS : '',
    clientVersion: typeof hostinfo.IPNVersion === 'string' ? hostinfo.IPNVersion : '',
    availableRoutes: available,
    approvedRoutes: [...node.approvedRoutes],
    subnetRoutes: [...exits, ...primaryRoutes].sort(),
    authorized: node.authorized,
  };
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
