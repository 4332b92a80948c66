/**
 * `/api/v1/oauthclient`: create, list and delete OAuth clients (`weft oauthclients`). They are the
 * same clients API v2 makes with `keyType: "client"`, checked by the same rules (v2/keys.ts); their
 * tokens come from `POST /api/v2/oauth/token`. Deleting a client ends its tokens at once.
 */
import type { FastifyInstance } from 'fastify';
import type { OAuthClient } from '../../db/records.ts';
import type { PolicyStore } from '../../state/policy.ts';
import type { RouteContext } from '../app.ts';
import { parseInput } from '../problems.ts';
import { createOAuthClient } from '../v2/keys.ts';
import { clientIdParams, createOAuthClientBody, type OAuthClientJson } from '../wire.ts';

export function oauthClientJson(client: OAuthClient): OAuthClientJson {
  return {
    id: client.clientId,
    scopes: [...client.scopes],
    tags: [...client.tags],
    description: client.description,
    createdAt: client.createdAt.toISOString(),
    createdBy: client.createdBy,
  };
}

export function registerOAuthClientRoutes(
  api: FastifyInstance,
  context: RouteContext,
  policy: PolicyStore | undefined,
): void {
  const { store, now } = context;

  api.get('/oauthclient', async () => ({
    oauthClients: (await store.oauth.listClients()).map(oauthClientJson),
  }));

  api.post('/oauthclient', async (request) => {
    const body = parseInput(createOAuthClientBody, request.body, 'body');
    context.limitKeyCreation(request);
    const principal = { kind: 'admin' as const, caller: context.callerOf(request), owner: null };
    const { client, secret } = await createOAuthClient(store, principal, policy?.current.policy, body, now());
    return { oauthClient: oauthClientJson(client), secret };
  });

  api.delete('/oauthclient/:id', async (request) => {
    const { id } = parseInput(clientIdParams, request.params, 'path');
    await store.oauth.deleteClient(id);
    return {};
  });
}
