/**
 * `/tailnet/-/keys`: auth keys (weft's pre-auth keys) and OAuth clients (`keyType: "client"`), one
 * resource as in Tailscale. Auth key ids are the pre-auth keys' numbers; OAuth client ids are the 12
 * hex digits inside their secret. The scope a request needs depends on which kind it names, so the
 * handlers check it: `auth_keys[:read]` for auth keys, `oauth_keys[:read]` for clients.
 *
 * Ownership follows Tailscale: a tagged key's devices belong to its tags; an untagged key's devices
 * belong to a user: weft's `userId` field, else the API key's own user (`weft apikeys create --user`).
 * An OAuth token may mint tagged keys only.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { OAuthClient, PreAuthKey } from '../../db/records.ts';
import { whyUnusable } from '../../db/repos/preauthkeys.ts';
import type { Store } from '../../db/store.ts';
import type { Policy } from '../../policy/index.ts';
import { WeftError } from '../../types/errors.ts';
import { allows, type Principal, requireScope } from './auth.ts';
import { parseBody } from './body.ts';
import { addRoute, type V2Context, type V2Route } from './context.ts';
import { grants, isScope, KNOWN_SCOPES, scopesNeedTags } from './scopes.ts';
import { checkTagsForPrincipal, requireTagsDefined } from './tags.ts';
import { createKeyBody, type KeyCapabilitiesJson, type KeyJson } from './wire.ts';

/** Tailscale's (and Terraform's) default auth key lifetime when `expirySeconds` is 0 or absent. */
const DEFAULT_EXPIRY_SECONDS = 90 * 24 * 3600;
const CLIENT_ID = /^[0-9a-f]{12}$/;
const KEY_ID = /^[1-9][0-9]{0,14}$/;

function capabilities(create: Partial<KeyCapabilitiesJson['devices']['create']> = {}): KeyCapabilitiesJson {
  return {
    devices: {
      create: {
        reusable: create.reusable ?? false,
        ephemeral: create.ephemeral ?? false,
        preauthorized: create.preauthorized ?? false,
        tags: create.tags ?? [],
      },
    },
  };
}

export function authKeyJson(key: PreAuthKey, now: Date, secret?: string): KeyJson {
  return {
    id: String(key.id),
    keyType: 'auth',
    ...(secret === undefined ? {} : { key: secret }),
    description: key.description,
    expirySeconds: Math.max(0, Math.round((key.expiration.getTime() - key.createdAt.getTime()) / 1000)),
    created: key.createdAt.toISOString(),
    expires: key.expiration.toISOString(),
    invalid: whyUnusable(key, now) !== undefined,
    capabilities: capabilities({
      reusable: key.reusable,
      ephemeral: key.ephemeral,
      preauthorized: key.preauthorized,
      tags: [...key.tags],
    }),
    ...(key.userId === null ? {} : { userId: String(key.userId) }),
  };
}

export function oauthClientJson(client: OAuthClient, secret?: string): KeyJson {
  return {
    id: client.clientId,
    keyType: 'client',
    ...(secret === undefined ? {} : { key: secret }),
    description: client.description,
    created: client.createdAt.toISOString(),
    invalid: false,
    capabilities: capabilities(),
    scopes: [...client.scopes],
    tags: [...client.tags],
  };
}

export interface NewClientRequest {
  scopes: readonly string[];
  tags: readonly string[];
  description: string;
}

/**
 * Checks and creates an OAuth client: known scopes, tags when the scopes mint keys or devices (as
 * Tailscale demands), and nothing beyond what the creator itself holds.
 */
export async function createOAuthClient(
  store: Store,
  principal: Principal,
  policy: Policy | undefined,
  request: NewClientRequest,
  now: Date,
): Promise<{ client: OAuthClient; secret: string }> {
  const scopes = [...new Set(request.scopes)].sort();
  if (scopes.length === 0) {
    throw new WeftError(
      'BAD_REQUEST',
      `an OAuth client needs at least one scope (known: ${KNOWN_SCOPES.join(', ')})`,
    );
  }
  const unknown = scopes.filter((s) => !isScope(s));
  if (unknown.length > 0) {
    throw new WeftError(
      'BAD_REQUEST',
      `unknown scopes ${unknown.join(', ')} (known: ${KNOWN_SCOPES.join(', ')})`,
    );
  }
  const tags = [...new Set(request.tags)].sort();
  if (tags.length === 0 && scopesNeedTags(scopes)) {
    throw new WeftError(
      'BAD_REQUEST',
      'an OAuth client with the auth_keys or devices:core scope needs tags: the keys and devices it makes belong to them',
    );
  }
  requireTagsDefined(policy, tags);
  if (principal.kind === 'oauth') {
    const beyond = scopes.filter((s) => !isScope(s) || !grants(principal.scopes, s));
    if (beyond.length > 0) {
      throw new WeftError(
        'FORBIDDEN',
        `this token cannot give scopes it does not hold: ${beyond.join(', ')}`,
      );
    }
    checkTagsForPrincipal(principal, policy, tags);
  }
  return store.oauth.createClient(
    { scopes, tags, description: request.description, createdBy: principal.caller },
    now,
  );
}

export function registerKeyRoutes(api: FastifyInstance, context: V2Context): void {
  const { store } = context;
  const policyNow = () => context.policy?.current.policy;
  const keyIdOf = (request: FastifyRequest) => (request.params as { keyId: string }).keyId;

  /** The OAuth client `id` names, if the caller may see clients and there is one. */
  const clientNamed = async (principal: Principal, id: string, scope: 'oauth_keys' | 'oauth_keys:read') => {
    if (!CLIENT_ID.test(id) || !allows(principal, scope)) return undefined;
    return store.oauth.findClient(id);
  };

  const preAuthKeyNamed = async (id: string): Promise<PreAuthKey> => {
    const key = KEY_ID.test(id) ? await store.preAuthKeys.findById(Number(id)) : undefined;
    if (key === undefined)
      throw new WeftError('PREAUTHKEY_NOT_FOUND', `there is no key with id ${id.slice(0, 40)}`);
    return key;
  };

  /**
   * A keys route: the scope it needs depends on the kind of key the request names, so `handle` checks
   * it for the caller.
   */
  const keysRoute = (
    method: V2Route['method'],
    url: string,
    handle: (principal: Principal, request: FastifyRequest) => Promise<unknown>,
  ) =>
    addRoute(api, context, {
      method,
      url,
      scope: 'checked-in-handler',
      handler: async (request) => handle(context.principalOf(request), request),
    });

  keysRoute('GET', '/tailnet/:tailnet/keys', async (principal) => {
    const seesKeys = allows(principal, 'auth_keys:read');
    const seesClients = allows(principal, 'oauth_keys:read');
    if (!seesKeys && !seesClients) requireScope(principal, 'auth_keys:read');
    const now = context.now();
    const keys: KeyJson[] = [];
    if (seesKeys) for (const key of await store.preAuthKeys.list()) keys.push(authKeyJson(key, now));
    if (seesClients) for (const client of await store.oauth.listClients()) keys.push(oauthClientJson(client));
    return { keys };
  });

  keysRoute('POST', '/tailnet/:tailnet/keys', async (principal, request) => {
    const body = parseBody(request, createKeyBody);
    if (body.keyType === 'client') {
      requireScope(principal, 'oauth_keys');
      context.limitKeyCreation(request);
      const { client, secret } = await createOAuthClient(
        store,
        principal,
        policyNow(),
        { scopes: body.scopes ?? [], tags: body.tags, description: body.description ?? '' },
        context.now(),
      );
      return oauthClientJson(client, secret);
    }
    requireScope(principal, 'auth_keys');
    context.limitKeyCreation(request);
    return createAuthKey(context, principal, body);
  });

  keysRoute('GET', '/tailnet/:tailnet/keys/:keyId', async (principal, request) => {
    const id = keyIdOf(request);
    const client = await clientNamed(principal, id, 'oauth_keys:read');
    if (client !== undefined) return oauthClientJson(client);
    requireScope(principal, 'auth_keys:read');
    return authKeyJson(await preAuthKeyNamed(id), context.now());
  });

  keysRoute('DELETE', '/tailnet/:tailnet/keys/:keyId', async (principal, request) => {
    const id = keyIdOf(request);
    const client = await clientNamed(principal, id, 'oauth_keys');
    if (client !== undefined) {
      await store.oauth.deleteClient(client.clientId);
      return {};
    }
    requireScope(principal, 'auth_keys');
    await store.preAuthKeys.delete((await preAuthKeyNamed(id)).id);
    return {};
  });
}

type CreateKeyBody = ReturnType<typeof createKeyBody.parse>;

async function createAuthKey(
  context: V2Context,
  principal: Principal,
  body: CreateKeyBody,
): Promise<KeyJson> {
  const create = body.capabilities?.devices?.create;
  const tags = create?.tags ?? [];
  const policy = context.policy?.current.policy;
  if (principal.kind === 'oauth' && tags.length === 0) {
    throw new WeftError(
      'BAD_REQUEST',
      'keys made with an OAuth client must have tags (capabilities.devices.create.tags)',
    );
  }
  if (tags.length > 0 && body.userId !== undefined) {
    throw new WeftError('BAD_REQUEST', 'a tagged key belongs to its tags; leave out userId');
  }
  // As in Tailscale, an untagged key is its creator's: the API key's user (weft apikeys create --user).
  const ownerId =
    tags.length > 0 ? null : (body.userId ?? (principal.kind === 'admin' ? principal.owner : null));
  if (tags.length === 0 && ownerId === null) {
    throw new WeftError(
      'BAD_REQUEST',
      'an untagged key registers devices for a user, and this API key belongs to no user: create the API key with `weft apikeys create --user NAME`, or give the key tags (capabilities.devices.create.tags)',
    );
  }
  requireTagsDefined(policy, tags);
  checkTagsForPrincipal(principal, policy, tags);
  const now = context.now();
  const seconds =
    body.expirySeconds === undefined || body.expirySeconds === 0
      ? DEFAULT_EXPIRY_SECONDS
      : body.expirySeconds;
  const created = await context.store.transaction(async (repos) => {
    const userId = ownerId === null ? null : (await repos.users.getById(Number(ownerId))).id;
    const fields = {
      userId,
      reusable: create?.reusable ?? false,
      ephemeral: create?.ephemeral ?? false,
      tags,
      expiration: new Date(now.getTime() + seconds * 1000),
      description: body.description ?? '',
      // Devices that join with it skip device approval.
      preauthorized: create?.preauthorized ?? false,
    };
    return repos.preAuthKeys.create(fields, now);
  });
  return authKeyJson(created.key, now, created.text);
}
