/**
 * Users: `GET /tailnet/-/users[?type=&role=]` and `GET /users/{id}` in Tailscale's User shape. weft's
 * users are all plain members of the one tailnet (no roles, no shared users), so the filters match
 * `member` and nothing else; a value Tailscale does not know is refused.
 */
import type { FastifyInstance } from 'fastify';
import type { User } from '../../db/records.ts';
import type { Tailnet } from '../../state/tailnet.ts';
import { WeftError } from '../../types/errors.ts';
import { addRoute, type V2Context } from './context.ts';
import type { UserJsonV2 } from './wire.ts';

const USER_TYPES = ['member', 'shared'];
const USER_ROLES = ['owner', 'member', 'admin', 'it-admin', 'network-admin', 'billing-admin', 'auditor'];

/** A user's login name as Tailscale shows it: the e-mail when known, else the user name. */
export function tailscaleLoginName(user: User): string {
  return user.email !== '' ? user.email : user.name;
}

export function userJsonV2(user: User, tailnet: Tailnet): UserJsonV2 {
  let deviceCount = 0;
  let online = false;
  let lastSeen: Date | null = null;
  for (const node of tailnet.nodes()) {
    if (node.userId !== user.id) continue;
    deviceCount += 1;
    online ||= node.online;
    if (node.lastSeen !== null && (lastSeen === null || node.lastSeen > lastSeen)) lastSeen = node.lastSeen;
  }
  return {
    id: String(user.id),
    displayName: user.displayName !== '' ? user.displayName : user.name,
    loginName: tailscaleLoginName(user),
    profilePicUrl: user.profilePicUrl,
    tailnetId: '-',
    created: user.createdAt.toISOString(),
    type: 'member',
    role: 'member',
    status: online || deviceCount > 0 ? 'active' : 'idle',
    deviceCount,
    ...(lastSeen === null ? {} : { lastSeen: lastSeen.toISOString() }),
    currentlyConnected: online,
  };
}

function filterValue(query: unknown, name: 'type' | 'role', known: readonly string[]): string | undefined {
  const value = (query as Record<string, unknown>)[name];
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || !known.includes(value)) {
    throw new WeftError('BAD_REQUEST', `invalid request query.${name}: expected one of ${known.join(', ')}`);
  }
  return value;
}

export function registerUserRoutes(api: FastifyInstance, context: V2Context): void {
  const { store, tailnet } = context;

  addRoute(api, context, {
    method: 'GET',
    url: '/tailnet/:tailnet/users',
    scope: 'users:read',
    handler: async (request) => {
      const type = filterValue(request.query, 'type', USER_TYPES);
      const role = filterValue(request.query, 'role', USER_ROLES);
      const matches = (type === undefined || type === 'member') && (role === undefined || role === 'member');
      const users = matches ? await store.users.list() : [];
      return { users: users.map((user) => userJsonV2(user, tailnet)) };
    },
  });

  addRoute(api, context, {
    method: 'GET',
    url: '/users/:id',
    scope: 'users:read',
    handler: async (request) => {
      const { id } = request.params as { id: string };
      const user = /^[1-9][0-9]{0,14}$/.test(id) ? await store.users.findById(Number(id)) : undefined;
      if (user === undefined)
        throw new WeftError('USER_NOT_FOUND', `there is no user with id ${id.slice(0, 40)}`);
      return userJsonV2(user, tailnet);
    },
  });
}
