/** `/api/v1/apikey`: create, list and expire API keys. */
import type { FastifyInstance } from 'fastify';
import { WeftError } from '../../types/errors.ts';
import type { RouteContext } from '../app.ts';
import { pageJson, pageQuery, paginate } from '../paging.ts';
import { apiKeyJson } from '../present.ts';
import { parseInput } from '../problems.ts';
import { createApiKeyBody, expireKeyBody } from '../wire.ts';

export function registerApiKeyRoutes(
  api: FastifyInstance,
  { store, now, limitKeyCreation }: RouteContext,
): void {
  api.get('/apikey', async (request) => {
    const page = paginate(await store.apiKeys.list(), parseInput(pageQuery, request.query, 'query'));
    return pageJson('apiKeys', { ...page, items: page.items.map(apiKeyJson) });
  });

  api.post('/apikey', async (request) => {
    limitKeyCreation(request);
    const { expiration } = parseInput(createApiKeyBody, request.body, 'body');
    if (expiration <= now()) {
      throw new WeftError(
        'BAD_REQUEST',
        'invalid request body.expiration: the expiration must be in the future',
      );
    }
    const { text } = await store.apiKeys.create(expiration, now());
    return { apiKey: text };
  });

  api.post('/apikey/expire', async (request) => {
    const { prefix } = parseInput(expireKeyBody, request.body, 'body');
    const key = await store.transaction(async (repos) =>
      repos.apiKeys.expire((await repos.apiKeys.resolve(prefix)).id, now()),
    );
    return { apiKey: apiKeyJson(key) };
  });
}
