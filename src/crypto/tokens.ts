/**
 * Bearer secrets weft hands out: pre-auth keys and API keys.
 *
 *   weft-auth-<prefix>-<secret>     pre-auth key (`tailscale up --auth-key`)
 *   weft-api-<prefix>-<secret>      API key (`Authorization: Bearer`)
 *   weft-client-<prefix>-<secret>   OAuth client secret (the prefix is the client id)
 *   weft-oauth-<prefix>-<secret>    OAuth access token (API v2 `Authorization: Bearer`, 1 h)
 *
 * prefix: 12 lowercase hex digits, stored in clear and shown in listings so admins can name a key;
 * secret: 64 lowercase hex digits (256 random bits), stored only as its SHA-256. A slow password hash
 * would add nothing: the secret is random, not chosen by a person, so it cannot be guessed offline.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

export type TokenKind = 'auth' | 'api' | 'client' | 'oauth';

const PREFIX_BYTES = 6;
const SECRET_BYTES = 32;
const TOKEN_PATTERN = /^weft-(auth|api|client|oauth)-([0-9a-f]{12})-([0-9a-f]{64})$/;

export interface MintedToken {
  /** The whole secret text, shown to the admin once and never stored. */
  text: string;
  prefix: string;
  hash: string;
}

export function tokenLabel(kind: TokenKind, prefix: string): string {
  return `weft-${kind}-${prefix}`;
}

export function hashSecret(secret: string): string {
  return createHash('sha256').update(secret).digest('hex');
}

export function mintToken(kind: TokenKind): MintedToken {
  const prefix = randomBytes(PREFIX_BYTES).toString('hex');
  const secret = randomBytes(SECRET_BYTES).toString('hex');
  return { text: `${tokenLabel(kind, prefix)}-${secret}`, prefix, hash: hashSecret(secret) };
}

/** Splits a token of the given kind into prefix and secret; undefined when it is not one. */
export function parseToken(kind: TokenKind, text: string): { prefix: string; secret: string } | undefined {
  const match = TOKEN_PATTERN.exec(text.trim());
  if (!match || match[1] !== kind || match[2] === undefined || match[3] === undefined) return undefined;
  return { prefix: match[2], secret: match[3] };
}

/** Constant-time check of a presented secret against the stored hash. */
export function secretMatches(secret: string, storedHash: string): boolean {
  const presented = Buffer.from(hashSecret(secret), 'hex');
  const stored = Buffer.from(storedHash, 'hex');
  return presented.length === stored.length && timingSafeEqual(presented, stored);
}

/**
 * Reduces what an admin typed to name a key — the whole key, its listed label (`weft-auth-0a1b…`) or
 * the bare hex prefix, possibly shortened — to the lowercase hex start of a prefix. Undefined when the
 * text cannot be a key of this kind.
 */
export function prefixQuery(kind: TokenKind, text: string): string | undefined {
  let rest = text.trim().toLowerCase();
  const label = `weft-${kind}-`;
  if (rest.startsWith(label)) rest = rest.slice(label.length);
  const prefix = rest.split('-', 1)[0] ?? '';
  return /^[0-9a-f]{1,12}$/.test(prefix) ? prefix : undefined;
}
