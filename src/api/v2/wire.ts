/**
 * JSON shapes of API v2, as Tailscale's Go client (`tailscale.com/client/tailscale/v2`) declares them:
 * lowerCamelCase, ids as strings, RFC 3339 times ('' for "none" where the client's `Time` allows it).
 * Request bodies are loose objects: Tailscale's clients send fields weft does not use (e.g. `keyType`
 * "auth" with every key), and refusing them would break those clients.
 */
import { z } from 'zod';
import { tagProblem } from '../../types/names.ts';

export interface DeviceJson {
  id: string;
  /** Tailscale's preferred stable id; weft's stable id is the same number. */
  nodeId: string;
  /** The MagicDNS name (FQDN without the trailing dot): Terraform's device data source matches it. */
  name: string;
  hostname: string;
  addresses: string[];
  /** The owner's login name; `tagged-devices` for a tagged device, as in Tailscale. */
  user: string;
  authorized: boolean;
  tags: string[];
  keyExpiryDisabled: boolean;
  isEphemeral: boolean;
  isExternal: boolean;
  created: string;
  /** '' when the key never expires. */
  expires: string;
  lastSeen: string | null;
  connectedToControl: boolean;
  machineKey: string;
  nodeKey: string;
  os: string;
  clientVersion: string;
  updateAvailable: boolean;
  blocksIncomingConnections: boolean;
  tailnetLockKey: string;
  tailnetLockError: string;
  /** Only with `?fields=all`. */
  advertisedRoutes?: string[];
  enabledRoutes?: string[];
}

export interface DeviceRoutesJson {
  advertisedRoutes: string[];
  enabledRoutes: string[];
}

export interface KeyCapabilitiesJson {
  devices: { create: { reusable: boolean; ephemeral: boolean; preauthorized: boolean; tags: string[] } };
}

export interface KeyJson {
  id: string;
  keyType: 'auth' | 'client';
  /** The secret: only in the answer to the request that created it. */
  key?: string;
  description: string;
  /** Seconds (Tailscale's wire unit), the key's lifetime when it was created. */
  expirySeconds?: number;
  created: string;
  expires?: string;
  /** Expired or used up: it can no longer register a device. */
  invalid: boolean;
  capabilities: KeyCapabilitiesJson;
  /** OAuth clients only. */
  scopes?: string[];
  tags?: string[];
  userId?: string;
}

export interface UserJsonV2 {
  id: string;
  displayName: string;
  loginName: string;
  profilePicUrl: string;
  tailnetId: string;
  created: string;
  type: 'member';
  role: 'member';
  status: 'active' | 'idle';
  deviceCount: number;
  lastSeen?: string;
  currentlyConnected: boolean;
}

export interface TokenJson {
  access_token: string;
  token_type: 'Bearer';
  expires_in: number;
  scope: string;
}

// ---- request bodies ----

const tag = z.string().superRefine((value, ctx) => {
  const problem = tagProblem(value);
  if (problem) ctx.addIssue({ code: 'custom', message: problem });
});

/** Go marshals a nil slice as null; the clients send `"tags": null` for "no tags". */
const tagList = z
  .array(tag)
  .max(64)
  .nullish()
  .transform((tags) => [...new Set(tags ?? [])].sort());

export const authorizedBody = z.looseObject({ authorized: z.boolean() });
export const nameBody = z.looseObject({ name: z.string().max(253) });
export const tagsBody = z.looseObject({ tags: tagList });
export const keyBody = z.looseObject({ keyExpiryDisabled: z.boolean() });
export const routesBody = z.looseObject({
  routes: z
    .array(z.string().max(64))
    .max(1000)
    .nullish()
    .transform((routes) => routes ?? []),
});

/** Ten years: far beyond Tailscale's 90-day cap, short enough that a typo in units is caught. */
const MAX_EXPIRY_SECONDS = 10 * 365 * 24 * 3600;

export const createKeyBody = z.looseObject({
  keyType: z.enum(['auth', 'client']).optional(),
  capabilities: z
    .looseObject({
      devices: z
        .looseObject({
          create: z
            .looseObject({
              reusable: z.boolean().optional(),
              ephemeral: z.boolean().optional(),
              preauthorized: z.boolean().optional(),
              tags: tagList,
            })
            .optional(),
        })
        .optional(),
    })
    .nullish(),
  expirySeconds: z.number().int().min(0).max(MAX_EXPIRY_SECONDS).optional(),
  description: z.string().max(100).optional(),
  /** OAuth clients (`keyType: "client"`). */
  scopes: z.array(z.string().max(64)).max(64).nullish(),
  tags: tagList,
  /** weft's addition: the user an untagged auth key registers devices for (API keys belong to no user). */
  userId: z
    .string()
    .regex(/^[1-9][0-9]{0,14}$/, 'must be a user id')
    .optional(),
});

export const searchPathsBody = z.looseObject({
  searchPaths: z
    .array(z.string().max(253))
    .max(100)
    .nullish()
    .transform((paths) => paths ?? []),
});
export const nameserversBody = z.looseObject({
  dns: z
    .array(z.string().max(300))
    .max(100)
    .nullish()
    .transform((dns) => dns ?? []),
});
export const preferencesBody = z.looseObject({ magicDNS: z.boolean() });
/** PATCH: a null list removes the domain; PUT: the whole map. */
export const splitDnsBody = z.record(z.string().max(253), z.array(z.string().max(300)).max(100).nullable());

const resolver = z.looseObject({ address: z.string().max(300), useWithExitNode: z.boolean().optional() });
export const dnsConfigurationBody = z.looseObject({
  nameservers: z.array(resolver).max(100).nullish(),
  splitDNS: z.record(z.string().max(253), z.array(resolver).max(100).nullable()).nullish(),
  searchPaths: z.array(z.string().max(253)).max(100).nullish(),
  preferences: z
    .looseObject({ overrideLocalDNS: z.boolean().optional(), magicDNS: z.boolean().optional() })
    .nullish(),
});
