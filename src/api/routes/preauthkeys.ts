/** `/api/v1/preauthkey`: create, list and expire pre-auth keys. */
import type { FastifyInstance } from 'fastify';
import type { User } from '../../db/records.ts';
import { WeftError } from '../../types/errors.ts';
import type { RouteContext } from '../app.ts';
import { pageJson, paginate, withPaging } from '../paging.ts';
import { preAuthKeyJson } from '../present.ts';
import { parseInput } from '../problems.ts';
import { createPreAuthKeyBody, expireKeyBody, preAuthKeyFilterQuery } from '../wire.ts';

export function registerPreAuthKeyRoutes(
  api: FastifyInstance,
  { store, now, limitKeyCreation }: RouteContext,
): void {
  api.get('/preauthkey', async (request) => {
    const { user, ...paging } = parseInput(withPaging(preAuthKeyFilterQuery), request.query, 'query');
    const owners = new Map<number, User>();
    if (user !== undefined) owners.set(user, await store.users.getById(user));
    else for (const u of await store.users.list()) owners.set(u.id, u);
    const page = paginate(await store.preAuthKeys.list(user === undefined ? {} : { userId: user }), paging);
    const items = page.items.map((k) =>
      preAuthKeyJson(k, k.userId === null ? undefined : owners.get(k.userId)),
    );
    return pageJson('preAuthKeys', { ...page, items });
  });

  api.post('/preauthkey', async (request) => {
    const body = parseInput(createPreAuthKeyBody, request.body, 'body');
    if (body.expiration <= now()) {
      throw new WeftError(
        'BAD_REQUEST',
        'invalid request body.expiration: the expiration must be in the future',
      );
    }
    // Counted once the request is well-formed: a malformed one should not use up the budget.
    limitKeyCreation(request);
    const [owner, created] = await store.transaction(async (repos) => {
      const owner = await repos.users.getById(body.user);
      const created = await repos.preAuthKeys.create(
        {
          userId: owner.id,
          reusable: body.reusable,
          ephemeral: body.ephemeral,
          tags: [...new Set(body.aclTags)],
          expiration: body.expiration,
        },
        now(),
      );
      return [owner, created] as const;
    });
    return { preAuthKey: preAuthKeyJson(created.key, owner, created.text) };
  });

  api.post('/preauthkey/expire', async (request) => {
    const { prefix } = parseInput(expireKeyBody, request.body, 'body');
    const [key, owner] = await store.transaction(async (repos) => {
      const found = await repos.preAuthKeys.resolve(prefix);
      const key = await repos.preAuthKeys.expire(found.id, now());
      return [key, key.userId === null ? undefined : await repos.users.findById(key.userId)] as const;
    });
    return { preAuthKey: preAuthKeyJson(key, owner) };
  });
}
