/**
 * Who calls API v2, and what they may do.
 *
 * Credentials arrive the two ways Tailscale's clients send them: `Authorization: Bearer <credential>`
 * (OAuth access tokens, curl) or HTTP Basic with the credential as the user name and any password
 * (the Go client's `SetBasicAuth(apiKey, "")`). A credential is a weft API key (all-access, like a
 * Tailscale admin's key) or an OAuth access token (`weft-oauth-…`, limited to its scopes and tags).
 * Requests on the local admin socket are the server's own admin, as for `/api/v1`.
 */
import type { IncomingMessage } from 'node:http';
import type { FastifyRequest } from 'fastify';
import type { Store } from '../../db/store.ts';
import { WeftError } from '../../types/errors.ts';
import { authenticateCredential } from '../credentials.ts';
import { type ApiRateLimits, LOCAL_ADMIN } from '../rate-limits.ts';
import { grants, type Scope } from './scopes.ts';

export type Principal =
  /** `owner`: the API key's user, whose untagged auth keys it mints (null: the key has none). */
  | { kind: 'admin'; caller: string; owner: number | null }
  | { kind: 'oauth'; caller: string; clientId: string; scopes: string[]; tags: string[] };

const OAUTH_TOKEN_START = 'weft-oauth-';

export interface AuthContext {
  store: Store;
  now: () => Date;
  isLocalAdmin: (request: IncomingMessage) => boolean;
  /** Shared with /api/v1: failed authentications are counted per address. */
  rateLimits: ApiRateLimits;
}

export async function authenticate(context: AuthContext, request: FastifyRequest): Promise<Principal> {
  if (context.isLocalAdmin(request.raw)) return { kind: 'admin', caller: LOCAL_ADMIN, owner: null };
  return authenticateCredential(
    request,
    context.rateLimits.authFailures,
    (credential) => principalFor(context, credential),
    {
      missing:
        'API v2 needs credentials: an API key as "Authorization: Bearer <key>" or as the Basic user name, or an OAuth access token',
      unknown: 'the API key or OAuth access token is unknown, malformed or expired',
    },
  );
}

async function principalFor(context: AuthContext, credential: string): Promise<Principal | undefined> {
  const now = context.now();
  if (credential.startsWith(OAUTH_TOKEN_START)) {
    const token = await context.store.oauth.authenticateToken(credential, now);
    if (token === undefined) return undefined;
    return {
      kind: 'oauth',
      caller: `oauth:${token.clientId}`,
      clientId: token.clientId,
      scopes: token.scopes,
      tags: token.tags,
    };
  }
  const key = await context.store.apiKeys.authenticate(credential, now);
  return key === undefined ? undefined : { kind: 'admin', caller: `apikey:${key.prefix}`, owner: key.userId };
}

/** True when the principal may use an endpoint that needs `scope`. */
export function allows(principal: Principal, scope: Scope): boolean {
  return principal.kind === 'admin' || grants(principal.scopes, scope);
}

/** Throws FORBIDDEN (403) naming the missing scope unless the principal holds it. */
export function requireScope(principal: Principal, scope: Scope): void {
  if (!allows(principal, scope)) {
    throw new WeftError(
      'FORBIDDEN',
      `this token lacks the scope ${scope} (it has: ${principal.kind === 'oauth' ? principal.scopes.join(', ') || 'none' : 'all'})`,
    );
  }
}
