/** `/api/v1/user`: create, list, rename, delete users. */
import type { FastifyInstance } from 'fastify';
import type { RouteContext } from '../app.ts';
import { pageJson, paginate, withPaging } from '../paging.ts';
import { userJson } from '../present.ts';
import { parseInput } from '../problems.ts';
import { createUserBody, idParams, renameUserParams, userFilterQuery } from '../wire.ts';

export function registerUserRoutes(api: FastifyInstance, { store, tailnet, now }: RouteContext): void {
  api.get('/user', async (request) => {
    const { pageSize, pageToken, ...filter } = parseInput(
      withPaging(userFilterQuery),
      request.query,
      'query',
    );
    const page = paginate(await store.users.list(filter), { pageSize, pageToken });
    return pageJson('users', { ...page, items: page.items.map(userJson) });
  });

  api.post('/user', async (request) => {
    const body = parseInput(createUserBody, request.body, 'body');
    const user = await store.transaction((repos) =>
      repos.users.create(
        {
          name: body.name,
          displayName: body.displayName ?? '',
          email: body.email ?? '',
          profilePicUrl: body.pictureUrl ?? '',
        },
        now(),
      ),
    );
    return { user: userJson(user) };
  });

  api.post('/user/:id/rename/:newName', async (request) => {
    const { id, newName } = parseInput(renameUserParams, request.params, 'path');
    const user = await store.transaction((repos) => repos.users.rename(id, newName, now()));
    await tailnet.refreshUser(id); // peers show the new login name without a reconnect
    return { user: userJson(user) };
  });

  api.delete('/user/:id', async (request) => {
    const { id } = parseInput(idParams, request.params, 'path');
    await store.transaction((repos) => repos.users.delete(id));
    return {};
  });
}
