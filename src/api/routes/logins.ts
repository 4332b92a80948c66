/**
 * Interactive logins from the admin's side: list the devices waiting, complete a login for a user
 * (the waiting client then proceeds) or reject it (the client shows why). Headscale's paths, so its
 * scripts keep working: `POST /auth/register {authId, user}` and the older `POST /node/register?user=&key=`.
 */
import type { FastifyInstance } from 'fastify';
import { loginNotFound, type PendingLogin, type PendingLogins } from '../../state/logins.ts';
import { WeftError } from '../../types/errors.ts';
import type { RouteContext } from '../app.ts';
import { nodeJson } from '../present.ts';
import { parseInput } from '../problems.ts';
import { authRegisterBody, authRejectBody, nodeRegisterQuery, type PendingLoginJson } from '../wire.ts';

/** What the client reads when an admin rejects its login. */
export const LOGIN_REJECTED_MESSAGE = 'an administrator rejected this login';

export function pendingLoginJson(login: PendingLogin): PendingLoginJson {
  const { Hostname, OS } = login.hostinfo;
  return {
    id: login.id,
    hostname: typeof Hostname === 'string' ? Hostname : '',
    os: typeof OS === 'string' ? OS : '',
    machineKey: login.machineKey,
    nodeKey: login.nodeKey,
    createdAt: login.createdAt.toISOString(),
    expiresAt: login.expiresAt.toISOString(),
  };
}

export function registerLoginRoutes(
  api: FastifyInstance,
  { store, tailnet, now, baseDomain }: RouteContext,
  logins: PendingLogins,
): void {
  const complete = async (authId: string, userName: string) => {
    const user = await store.users.findByName(userName);
    if (user === undefined) throw new WeftError('USER_NOT_FOUND', `there is no user named "${userName}"`);
    const node = await logins.complete(authId, { userId: user.id, method: 'cli' });
    const owner = node.userId === null ? undefined : tailnet.user(node.userId);
    return { node: nodeJson(node, owner, baseDomain, now(), tailnet.primaryRoutesOf(node.id)) };
  };

  api.get('/auth/pending', async () => ({ logins: logins.list().map(pendingLoginJson) }));

  api.post('/auth/register', async (request) => {
    const { authId, user } = parseInput(authRegisterBody, request.body, 'body');
    return complete(authId, user);
  });

  api.post('/node/register', async (request) => {
    const { key, user } = parseInput(nodeRegisterQuery, request.query, 'query');
    return complete(key, user);
  });

  api.post('/auth/reject', async (request) => {
    const { authId } = parseInput(authRejectBody, request.body, 'body');
    if (!logins.reject(authId, LOGIN_REJECTED_MESSAGE)) throw loginNotFound(authId);
    return {};
  });
}
