/**
 * `POST /api/v2/oauth/token`: the OAuth 2.0 client credentials grant (RFC 6749 §4.4), as Tailscale's
 * clients use it (golang.org/x/oauth2/clientcredentials: a form body; the client id and secret in
 * HTTP Basic first, then as form fields if that fails).
 *
 * The secret names its client (`weft-client-<client id>-…`), so `client_id` is optional, but when it
 * is sent it must be that client's. `scope` (space-separated) narrows the token to part of the
 * client's scopes, `tags` to part of its tags. Tokens last one hour, as Tailscale's do, and are
 * stored hashed in the database so that every replica accepts them. Errors are RFC 6749 §5.2 bodies
 * (`{"error", "error_description"}`), which the oauth2 library turns into its RetrieveError.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { tagProblem } from '../../types/names.ts';
import { addressKey, retryAfterSeconds } from '../../util/rate-limit.ts';
import type { V2Context } from './context.ts';
import { v2ErrorFor } from './errors.ts';
import { grants, isScope } from './scopes.ts';
import type { TokenJson } from './wire.ts';

export const ACCESS_TOKEN_LIFETIME_MS = 3_600_000;
/** A token request is a few short form fields. */
const TOKEN_BODY_LIMIT = 8 * 1024;

class OAuthError extends Error {
  readonly status: number;
  readonly error: string;
  /** For 429: seconds to wait, sent as Retry-After. */
  readonly retryAfterSeconds: number | undefined;

  constructor(status: number, error: string, description: string, retryAfterSeconds?: number) {
    super(description);
    this.status = status;
    this.error = error;
    this.retryAfterSeconds = retryAfterSeconds;
  }
}

function sendOAuthError(reply: FastifyReply, err: OAuthError, basic: boolean): FastifyReply {
  if (err.status === 401 && basic) void reply.header('www-authenticate', 'Basic realm="weft"');
  if (err.retryAfterSeconds !== undefined) void reply.header('retry-after', String(err.retryAfterSeconds));
  return reply
    .code(err.status)
    .header('cache-control', 'no-store')
    .type('application/json')
    .send({ error: err.error, error_description: err.message });
}

/** Form-encoding as x/oauth2 applies it to Basic credentials (url.QueryEscape). */
function formDecode(text: string): string {
  try {
    return decodeURIComponent(text.replace(/\+/g, ' '));
  } catch {
    return text;
  }
}

interface Credentials {
  clientId: string | undefined;
  secret: string | undefined;
  basic: boolean;
}

function credentialsOf(request: FastifyRequest, form: URLSearchParams): Credentials {
  const header = request.headers.authorization;
  const basic = header === undefined ? null : /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header);
  if (basic?.[1]) {
    const decoded = Buffer.from(basic[1], 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon >= 0) {
      return {
        clientId: formDecode(decoded.slice(0, colon)) || undefined,
        secret: formDecode(decoded.slice(colon + 1)) || undefined,
        basic: true,
      };
    }
  }
  return {
    clientId: form.get('client_id') ?? undefined,
    secret: form.get('client_secret') ?? undefined,
    basic: false,
  };
}

function narrowScopes(granted: readonly string[], requested: readonly string[]): string[] {
  if (requested.length === 0) return [...granted];
  for (const scope of requested) {
    if (!isScope(scope) || !grants(granted, scope)) {
      throw new OAuthError(
        400,
        'invalid_scope',
        `the scope ${scope.slice(0, 64)} is not granted to this client`,
      );
    }
  }
  return [...new Set(requested)].sort();
}

function narrowTags(
  granted: readonly string[],
  scopes: readonly string[],
  requested: readonly string[],
): string[] {
  if (requested.length === 0) return [...granted];
  for (const tag of requested) {
    const problem = tagProblem(tag);
    if (problem !== undefined) throw new OAuthError(400, 'invalid_target', `${tag.slice(0, 64)}: ${problem}`);
    if (!scopes.includes('all') && !granted.includes(tag)) {
      throw new OAuthError(400, 'invalid_target', `the tag ${tag} is not granted to this client`);
    }
  }
  return [...new Set(requested)].sort();
}

/** RFC 6749 has no rate-limit error; 429 with `slow_down` (RFC 8628's word) and Retry-After is what clients handle. */
function slowDown(what: string, decision: { retryAfterMs: number }): OAuthError {
  const seconds = retryAfterSeconds(decision);
  return new OAuthError(429, 'slow_down', `too many ${what}; retry in ${seconds} s`, seconds);
}

async function issueToken(
  context: V2Context,
  request: FastifyRequest,
  credentials: Credentials,
): Promise<TokenJson> {
  const form = request.body;
  if (!(form instanceof URLSearchParams)) {
    throw new OAuthError(
      400,
      'invalid_request',
      'send the token request as application/x-www-form-urlencoded',
    );
  }
  const grantType = form.get('grant_type');
  // Tailscale's documented curl leaves grant_type out; the oauth2 library always sends it.
  if (grantType !== null && grantType !== 'client_credentials') {
    throw new OAuthError(400, 'unsupported_grant_type', 'only the client_credentials grant is supported');
  }
  if (credentials.secret === undefined) {
    throw new OAuthError(401, 'invalid_client', 'send the client secret (client_secret, or HTTP Basic)');
  }
  const client = await context.store.oauth.authenticateClient(credentials.secret);
  if (
    client === undefined ||
    (credentials.clientId !== undefined && credentials.clientId !== client.clientId)
  ) {
    // As for API keys: a good secret always works, failures are charged as they happen (per address).
    const limited = context.rateLimits.authFailures.countFailure(addressKey(request.ip));
    if (!limited.ok) throw slowDown('failed authentications from this address', limited);
    throw new OAuthError(
      401,
      'invalid_client',
      'the client id or secret is wrong, or the client was deleted',
    );
  }
  // Each token is a row valid for an hour: a client minting them in a loop is slowed like key creation.
  const minted = context.rateLimits.keyCreation.take(`oauth:${client.clientId}`);
  if (!minted.ok) throw slowDown('tokens requested by this client', minted);
  const scopes = narrowScopes(client.scopes, (form.get('scope') ?? '').split(/\s+/).filter(Boolean));
  const tags = narrowTags(client.tags, client.scopes, (form.get('tags') ?? '').split(/\s+/).filter(Boolean));
  const now = context.now();
  const { text } = await context.store.oauth.mintToken(
    client,
    { scopes, tags, expiresAt: new Date(now.getTime() + ACCESS_TOKEN_LIFETIME_MS) },
    now,
  );
  return {
    access_token: text,
    token_type: 'Bearer',
    expires_in: ACCESS_TOKEN_LIFETIME_MS / 1000,
    scope: scopes.join(' '),
  };
}

export function registerOAuthTokenRoute(api: FastifyInstance, context: V2Context): void {
  api.route({
    method: 'POST',
    url: '/oauth/token',
    bodyLimit: TOKEN_BODY_LIMIT,
    // A client that puts its secret in the query string must not find it in the log.
    config: { logWithoutQuery: true },
    // Parsing and size errors answer in RFC 6749's shape too: the caller is an OAuth library.
    errorHandler: (err, request, reply) => {
      const { message, status } = v2ErrorFor(err);
      if (status >= 500) request.log.error({ err }, 'token request failed');
      return sendOAuthError(
        reply,
        new OAuthError(status, status >= 500 ? 'server_error' : 'invalid_request', message),
        false,
      );
    },
    handler: async (request, reply) => {
      const form = request.body instanceof URLSearchParams ? request.body : new URLSearchParams();
      const credentials = credentialsOf(request, form);
      try {
        const token = await issueToken(context, request, credentials);
        return reply.header('cache-control', 'no-store').header('pragma', 'no-cache').send(token);
      } catch (err) {
        if (err instanceof OAuthError) return sendOAuthError(reply, err, credentials.basic);
        throw err;
      }
    },
  });
}
