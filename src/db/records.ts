/**
 * What the repositories return: plain records with JS types, the same whichever dialect stored them.
 */
import type { DiscoPublic, MachinePublic, NodePublic } from '../types/keys.ts';

export interface User {
  id: number;
  name: string;
  displayName: string;
  email: string;
  provider: string;
  providerId: string | null;
  profilePicUrl: string;
  createdAt: Date;
  updatedAt: Date;
  /** The identity provider's groups (oidc.policy_groups), policy groups' extra members; [] otherwise. */
  groups: string[];
}

export type RegisterMethod = 'authkey' | 'cli' | 'oidc';

export interface Node {
  id: number;
  machineKey: MachinePublic;
  nodeKey: NodePublic;
  discoKey: DiscoPublic;
  ipv4: string | null;
  ipv6: string | null;
  hostname: string;
  givenName: string;
  userId: number | null;
  tags: string[];
  registerMethod: RegisterMethod;
  authKeyId: number | null;
  ephemeral: boolean;
  /** Node key expiry; null = never. */
  expiry: Date | null;
  lastSeen: Date | null;
  endpoints: string[];
  hostinfo: Record<string, unknown>;
  approvedRoutes: string[];
  createdAt: Date;
  updatedAt: Date;
  /** An admin let the node in; false only while it waits for device approval. */
  authorized: boolean;
}

export interface PreAuthKey {
  id: number;
  prefix: string;
  userId: number | null;
  reusable: boolean;
  ephemeral: boolean;
  used: boolean;
  tags: string[];
  expiration: Date;
  createdAt: Date;
  /** Free text given when the key was created through API v2; '' otherwise. */
  description: string;
  /** Nodes registered with this key skip device approval (Tailscale's `preauthorized`). */
  preauthorized: boolean;
}

export interface ApiKey {
  id: number;
  prefix: string;
  /** Whose untagged auth keys it mints through API v2 (Tailscale's keys belong to a user); null: nobody's. */
  userId: number | null;
  expiration: Date;
  lastSeen: Date | null;
  createdAt: Date;
}

export interface PolicyVersion {
  id: number;
  data: string;
  /** Who set it; null for versions written before authors were recorded. */
  author: string | null;
  createdAt: Date;
}

export interface OAuthClient {
  id: number;
  /** The public client id (`client_id` in the token request; also inside the secret's text). */
  clientId: string;
  scopes: string[];
  /** Tags the client's tokens may put on the auth keys they create. */
  tags: string[];
  description: string;
  createdBy: string | null;
  createdAt: Date;
}

/** A valid access token and what it grants (narrowed from its client's grant when it was minted). */
export interface OAuthToken {
  id: number;
  prefix: string;
  /** The client's public id. */
  clientId: string;
  scopes: string[];
  tags: string[];
  expiresAt: Date;
  createdAt: Date;
}

// ---- dialect normalisation (SQLite gives text/0-1/JSON text; PostgreSQL gives Date/boolean/objects) ----

export function toDate(value: Date | string): Date {
  return value instanceof Date ? value : new Date(value);
}

export function toDateOrNull(value: Date | string | null): Date | null {
  return value === null ? null : toDate(value);
}

export function toBool(value: boolean | number): boolean {
  return value === true || value === 1;
}

export function fromJson<T>(value: unknown): T {
  return (typeof value === 'string' ? JSON.parse(value) : value) as T;
}
