/** Records → API JSON. */

import { tokenLabel } from '../crypto/tokens.ts';
import type { ApiKey, PreAuthKey, User } from '../db/records.ts';
import type { ApiKeyJson, PreAuthKeyJson, UserJson } from './wire.ts';

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

export function apiKeyJson(key: ApiKey): ApiKeyJson {
  return {
    id: String(key.id),
    prefix: tokenLabel('api', key.prefix),
    expiration: key.expiration.toISOString(),
    createdAt: key.createdAt.toISOString(),
    lastSeen: key.lastSeen?.toISOString() ?? null,
  };
}
