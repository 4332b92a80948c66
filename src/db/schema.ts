/**
 * Table types for Kysely, shared by both dialects.
 *
 * Column values differ by dialect on the way out, and the repositories normalise them:
 *  - timestamps: SQLite stores ISO-8601 text, PostgreSQL `timestamptz` (returned as Date);
 *  - booleans: SQLite 0/1, PostgreSQL boolean;
 *  - JSON: SQLite text, PostgreSQL jsonb (returned parsed). JSON is always written as a JSON string.
 */
import type { ColumnType, Generated } from 'kysely';

export type Timestamp = ColumnType<Date | string, Date, Date>;
export type NullableTimestamp = ColumnType<Date | string | null, Date | null, Date | null>;
export type Bool = ColumnType<boolean | number, boolean, boolean>;
/** A boolean column with a default: may be left out on insert. */
export type DefaultedBool = ColumnType<boolean | number, boolean | undefined, boolean>;
export type Json = ColumnType<unknown, string, string>;

export interface UsersTable {
  id: Generated<number>;
  name: string;
  display_name: string;
  email: string;
  /** '' for users made by an admin, 'oidc' for users made by an OIDC login. */
  provider: string;
  /** The identity provider's stable subject (issuer + sub) for OIDC users. */
  provider_id: string | null;
  profile_pic_url: string;
  created_at: Timestamp;
  updated_at: Timestamp;
  /** JSON array: the OIDC `groups` claim with oidc.policy_groups, else `[]`. */
  groups: Generated<string>;
}

export interface NodesTable {
  id: Generated<number>;
  machine_key: string;
  node_key: string;
  disco_key: string;
  ipv4: string | null;
  ipv6: string | null;
  /** What the client calls itself (Hostinfo.Hostname). */
  hostname: string;
  /** The DNS label weft gives the node, unique in the tailnet. */
  given_name: string;
  /** Owner of a user-owned node; null for tagged nodes, which tags own. */
  user_id: number | null;
  tags: Json;
  register_method: string;
  auth_key_id: number | null;
  ephemeral: Bool;
  expiry: NullableTimestamp;
  last_seen: NullableTimestamp;
  endpoints: Json;
  hostinfo: Json;
  approved_routes: Json;
  created_at: Timestamp;
  updated_at: Timestamp;
  /** An admin let the node in (always true unless node.device_approval is on). */
  authorized: DefaultedBool;
}

export interface PreAuthKeysTable {
  id: Generated<number>;
  prefix: string;
  hash: string;
  user_id: number | null;
  reusable: Bool;
  ephemeral: Bool;
  used: Bool;
  tags: Json;
  expiration: Timestamp;
  created_at: Timestamp;
  /** Free text from API v2 (`description`); '' otherwise. */
  description: Generated<string>;
  /** Nodes registered with this key skip device approval. */
  preauthorized: DefaultedBool;
}

export interface ApiKeysTable {
  id: Generated<number>;
  prefix: string;
  hash: string;
  /** The user untagged auth keys minted with this key (API v2) belong to; null: none. */
  user_id: number | null;
  expiration: Timestamp;
  last_seen: NullableTimestamp;
  created_at: Timestamp;
}

export interface PoliciesTable {
  id: Generated<number>;
  data: string;
  author: string | null;
  created_at: Timestamp;
}

/** One run-time setting per key; `value` is JSON text (the same in both dialects). */
export interface SettingsTable {
  key: string;
  value: string;
  updated_at: Timestamp;
}

/** An OAuth client: `client_id` is public (in the secret's text too), `hash` the secret's SHA-256. */
export interface OAuthClientsTable {
  id: Generated<number>;
  client_id: string;
  hash: string;
  scopes: Json;
  tags: Json;
  description: string;
  /** Who created it: `local admin`, `apikey:<prefix>` or `oauth:<client id>`. */
  created_by: string | null;
  created_at: Timestamp;
}

/** An access token minted by an OAuth client (client credentials grant); `hash` of its secret part. */
export interface OAuthTokensTable {
  id: Generated<number>;
  prefix: string;
  hash: string;
  client_id: number;
  scopes: Json;
  tags: Json;
  expires_at: Timestamp;
  created_at: Timestamp;
}

export interface Database {
  users: UsersTable;
  nodes: NodesTable;
  pre_auth_keys: PreAuthKeysTable;
  api_keys: ApiKeysTable;
  policies: PoliciesTable;
  settings: SettingsTable;
  oauth_clients: OAuthClientsTable;
  oauth_tokens: OAuthTokensTable;
}
