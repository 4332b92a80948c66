/** `/api/v1/apikey`: create, list and expire API keys. */
import type { FastifyInstance } from 'fastify';
import type { ApiKey } from '../../db/records.ts';
import { WeftError } from '../../types/errors.ts';
import type { RouteContext } from '../app.ts';
import { pageJson, pageQuery, paginate } from '../paging.ts';
import { apiKeyJson } from '../present.ts';
import { parseInput } from '../problems.ts';
import { type ApiKeyJson, createApiKeyBody, expireKeyBody } from '../wire.ts';

export function registerApiKeyRoutes(
  api: FastifyInstance,
  { store, now, limitKeyCreation }: RouteContext,
): void {
  /** Each key with its owner (one query for all users; keys with an owner are few). */
  const present = async (keys: ApiKey[]): Promise<ApiKeyJson[]> => {
    const owners = new Map((await store.users.list()).map((user) => [user.id, user]));
    return keys.map((key) => apiKeyJson(key, key.userId === null ? undefined : owners.get(key.userId)));
  };

  api.get('/apikey', async (request) => {
    const page = paginate(await store.apiKeys.list(), parseInput(pageQuery, request.query, 'query'));
    return pageJson('apiKeys', { ...page, items: await present(page.items) });
  });

  api.post('/apikey', async (request) => {
    const { expiration, user } = parseInput(createApiKeyBody, request.body, 'body');
    if (expiration <= now()) {
      throw new WeftError(
        'BAD_REQUEST',
        'invalid request body.expiration: the expiration must be in the future',
      );
    }
    // Counted once the request is well-formed: a malformed one should not use up the budget.
    limitKeyCreation(request);
    const { text } = await store.transaction(async (repos) => {
      const owner = user === undefined ? null : (await repos.users.getById(user)).id;
      return repos.apiKeys.create(expiration, now(), owner);
    });
    return { apiKey: text };
  });

  api.post('/apikey/expire', async (request) => {
    const { prefix } = parseInput(expireKeyBody, request.body, 'body');
    const key = await store.transaction(async (repos) =>
      repos.apiKeys.expire((await repos.apiKeys.resolve(prefix)).id, now()),
    );
    return { apiKey: (await present([key]))[0] };
  });
}
