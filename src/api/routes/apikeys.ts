/** `/api/v1/apikey`: create, list and expire API keys. */
import type { FastifyInstance } from 'fastify';
import { WeftError } from '../../types/errors.ts';
import type { RouteContext } from '../app.ts';
import { apiKeyJson } from '../present.ts';
import { parseInput } from '../problems.ts';
import { createApiKeyBody, expireKeyBody } from '../wire.ts';

export function registerApiKeyRoutes(api: FastifyInstance, { store, now }: RouteContext): void {
  api.get('/apikey', async () => ({ apiKeys: (await store.apiKeys.list()).map(apiKeyJson) }));

  api.post('/apikey', async (request) => {
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
