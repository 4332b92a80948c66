/**
 * JSON shapes of weft's REST API (`/api/v1`), shared by the server routes and the CLI's client.
 *
 * Conventions follow Headscale's API so its users and scripts feel at home: lowerCamelCase keys, ids as
 * strings, RFC 3339 timestamps, single objects wrapped by their name (`{"user": {...}}`) and lists by
 * the plural (`{"users": [...]}`). Errors are RFC 7807 problem documents with a stable `code`.
 */
import { z } from 'zod';
import { dnsSettingsSchema } from '../config/index.ts';
import type { ErrorCode } from '../types/errors.ts';
import { tagProblem, userNameProblem } from '../types/names.ts';

export interface UserJson {
  id: string;
  name: string;
  displayName: string;
  email: string;
  provider: string;
  providerId: string;
  profilePicUrl: string;
  createdAt: string;
}

export interface PreAuthKeyJson {
  id: string;
  /** The listed label `weft-auth-<prefix>`: enough to name the key, useless to register with. */
  prefix: string;
  /** The whole key: only in the response that created it. */
  key?: string;
  user: UserJson | null;
  reusable: boolean;
  ephemeral: boolean;
  used: boolean;
  expiration: string;
  createdAt: string;
  aclTags: string[];
}

export interface NodeJson {
  id: string;
  machineKey: string;
  nodeKey: string;
  discoKey: string;
  /** The node's tailnet addresses: IPv4 first, then IPv6. */
  ipAddresses: string[];
  /** The node's DNS label in the tailnet (same as `givenName`; Headscale's field name). */
  name: string;
  givenName: string;
  /** The host name the client reported. */
  hostname: string;
  /** The MagicDNS name: `<givenName>.<dns.base_domain>`. */
  fqdn: string;
  /** The owner; null for a tagged node. */
  user: UserJson | null;
  tags: string[];
  online: boolean;
  lastSeen: string | null;
  /** Node key expiry; null = never. */
  expiry: string | null;
  expired: boolean;
  ephemeral: boolean;
  registerMethod: string;
  createdAt: string;
  /** The client's OS (Hostinfo.OS), '' when unknown. */
  os: string;
  /** The client's Tailscale version (Hostinfo.IPNVersion), '' when unknown. */
  clientVersion: string;
  /** Routes the client advertises (`--advertise-routes`, `--advertise-exit-node`); pending until approved. */
  availableRoutes: string[];
  /** Routes an admin or an autoApprover approved. */
  approvedRoutes: string[];
  /** Routes the node serves now: approved and advertised exit routes, and subnets it is primary for. */
  subnetRoutes: string[];
  /** False while the node waits for device approval (`node.device_approval`). */
  authorized: boolean;
}

export interface ApiKeyJson {
  id: string;
  prefix: string;
  /** Whose untagged auth keys it mints through API v2; null: nobody's (it can mint tagged keys only). */
  user: UserJson | null;
  expiration: string;
  createdAt: string;
  lastSeen: string | null;
}

export interface ProblemJson {
  status: number;
  code: ErrorCode;
  title: string;
  detail: string;
  /** POLICY_INVALID: where in the policy text the problem is (1-based). */
  line?: number;
  column?: number;
  /** POLICY_TESTS_FAILED: one line per failing test. */
  failures?: string[];
}

/** `GET /api/v1/policy`, and the answer to a `PUT`. */
export interface PolicyJson {
  /** The policy text exactly as set (HuJSON). */
  policy: string;
  /** Database: the version number (0 = nothing set yet: the built-in allow-all). File: reloads so far. */
  version: number;
  /** When this version was set or read from the file; null for the built-in default. */
  updatedAt: string | null;
  /** Who set it: `local admin` (the admin socket) or `apikey:<prefix>`. */
  author: string | null;
  mode: 'database' | 'file';
}

/** `POST /api/v1/policy/check`: the policy compiled and its tests passed against the live tailnet. */
export interface PolicyCheckJson {
  ok: true;
  /** How many tests and sshTests ran (and passed). */
  tests: number;
}

export const policyBody = z.strictObject({
  policy: z.string().min(1, 'the policy text is empty'),
});

/** `GET /api/v1/dns`, and the answer to a `PUT`. */
export interface DnsJson {
  /** Config-only (`dns.magic_dns`). */
  magicDns: boolean;
  /** Config-only (`dns.base_domain`): nodes are `<name>.<baseDomain>`. */
  baseDomain: string;
  nameservers: {
    /** Resolvers for every query: IP addresses or https:// DoH URLs, in preference order. */
    global: string[];
    /** Split DNS: domain → its resolvers. */
    split: Record<string, string[]>;
  };
  searchDomains: string[];
  extraRecords: DnsRecordJson[];
}

export interface DnsRecordJson {
  name: string;
  type: 'A' | 'AAAA';
  value: string;
}

/** What `PUT /api/v1/dns` takes: the editable fields of DnsJson, all of them, checked by the config's rules. */
export type DnsSettingsJson = Omit<DnsJson, 'magicDns' | 'baseDomain'>;

export const dnsBody = dnsSettingsSchema;

export interface HealthJson {
  status: 'pass' | 'fail';
  checks: Record<string, { status: 'pass' | 'fail'; output?: string }>;
}

// ---- request bodies (strict: an unknown field is a mistake worth reporting) ----

/** A string checked by one of the `…Problem` rules in src/types/names.ts. */
function checked(problemOf: (value: string) => string | undefined) {
  return z.string().superRefine((value, ctx) => {
    const problem = problemOf(value);
    if (problem) ctx.addIssue({ code: 'custom', message: problem });
  });
}

const userName = checked(userNameProblem);
const tag = checked(tagProblem);

/** Ids travel as decimal strings (Headscale's protojson habit); numbers are accepted too. */
export const idSchema = z
  .union([
    z.string().regex(/^[1-9][0-9]{0,14}$/, 'must be a positive integer id'),
    z.number().int().positive(),
  ])
  .transform(Number)
  .refine(Number.isSafeInteger, 'must be a positive integer id');

const timestamp = z.iso.datetime({ offset: true }).transform((text) => new Date(text));

export const createUserBody = z.strictObject({
  name: userName,
  displayName: z.string().max(256).optional(),
  email: z.union([z.email(), z.literal('')]).optional(),
  pictureUrl: z.union([z.url(), z.literal('')]).optional(),
});

export const userFilterQuery = z.strictObject({
  id: idSchema.optional(),
  name: z.string().optional(),
  email: z.string().optional(),
});

export const renameUserParams = z.strictObject({ id: idSchema, newName: userName });
export const idParams = z.strictObject({ id: idSchema });

export const createPreAuthKeyBody = z.strictObject({
  user: idSchema,
  reusable: z.boolean().default(false),
  ephemeral: z.boolean().default(false),
  expiration: timestamp,
  aclTags: z.array(tag).max(64).default([]),
});

export const preAuthKeyFilterQuery = z.strictObject({ user: idSchema.optional() });

/** Names a key by what an admin typed: the key, its `weft-…-<prefix>` label or a hex start of the prefix. */
export const expireKeyBody = z.strictObject({ prefix: z.string().min(1).max(200) });

export const nodeFilterQuery = z.strictObject({ user: z.string().min(1).optional() });

/** The routes are checked by the tailnet (canonical prefixes the node advertises), which says why not. */
export const approveRoutesBody = z.strictObject({ routes: z.array(z.string().max(64)).max(1000) });

export const setTagsBody = z.strictObject({ tags: z.array(tag).max(64) });

/** No body: expire now. `expiry`: that time (future = extend); null: the key never expires. */
export const expireNodeBody = z.strictObject({ expiry: z.union([timestamp, z.null()]) }).optional();

/** The new name is checked by the tailnet (DNS label rules, uniqueness), so it gives the one message. */
export const renameNodeParams = z.strictObject({ id: idSchema, newName: z.string().min(1) });

export const createApiKeyBody = z.strictObject({ expiration: timestamp, user: idSchema.optional() });

// ---- interactive logins ----

/** A login waiting to be completed (`GET /api/v1/auth/pending`); nothing in it is a secret. */
export interface PendingLoginJson {
  /** The id in the AuthURL (`/register/<id>`), for `weft auth register --auth-id`. */
  id: string;
  /** What the device calls itself (Hostinfo.Hostname). */
  hostname: string;
  os: string;
  machineKey: string;
  nodeKey: string;
  createdAt: string;
  expiresAt: string;
}

const loginId = z.string().min(1).max(200);

/** Headscale's `POST /api/v1/auth/register`: the login id and the user's name. */
export const authRegisterBody = z.strictObject({ authId: loginId, user: z.string().min(1).max(200) });

/** Headscale's older `POST /api/v1/node/register?user=&key=`. */
export const nodeRegisterQuery = z.strictObject({ user: z.string().min(1).max(200), key: loginId });

export const authRejectBody = z.strictObject({ authId: loginId });

/** An OAuth client as `/api/v1/oauthclient` lists it; the secret only in the answer that created it. */
export interface OAuthClientJson {
  /** The client id (the 12 hex digits inside its secret). */
  id: string;
  scopes: string[];
  tags: string[];
  description: string;
  createdAt: string;
  /** Who created it: `local admin`, `apikey:<prefix>` or `oauth:<client id>`. */
  createdBy: string | null;
}

export const createOAuthClientBody = z.strictObject({
  scopes: z.array(z.string().max(64)).min(1, 'give at least one scope').max(64),
  tags: z.array(tag).max(64).default([]),
  description: z.string().max(100).default(''),
});

export const clientIdParams = z.strictObject({
  id: z.string().regex(/^[0-9a-f]{12}$/, 'must be an OAuth client id (12 hex digits)'),
});
