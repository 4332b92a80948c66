/** What the API v2 routes share: their dependencies, the caller, and how a route is added. */
import type { IncomingMessage } from 'node:http';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Store } from '../../db/store.ts';
import type { DnsSettingsStore } from '../../state/dns.ts';
import type { PolicyStore } from '../../state/policy.ts';
import type { Tailnet } from '../../state/tailnet.ts';
import { WeftError } from '../../types/errors.ts';
import type { ApiRateLimits } from '../rate-limits.ts';
import { type Principal, requireScope } from './auth.ts';
import type { Scope } from './scopes.ts';

export interface ApiV2Dependencies {
  store: Store;
  tailnet: Tailnet;
  policy?: PolicyStore;
  dns?: DnsSettingsStore;
  /** `dns.base_domain`: a device's `name` is its MagicDNS name `<given name>.<base domain>`. */
  baseDomain: string;
  now: () => Date;
  /** `node.expiry`: the key lifetime given when a device's key expiry is enabled again; 0 = Tailscale's 180 days. */
  nodeKeyExpiryMs?: number;
  isLocalAdmin: (request: IncomingMessage) => boolean;
  /** The same limits as /api/v1 (failed authentications per address, keys created per caller). */
  rateLimits: ApiRateLimits;
}

export interface V2Context extends ApiV2Dependencies {
  /** The authenticated caller of a request that passed the auth hook. */
  principalOf: (request: FastifyRequest) => Principal;
  /** Counts a key or OAuth client created by this request's caller; RATE_LIMITED past the limit. */
  limitKeyCreation: (request: FastifyRequest) => void;
}

/** What a route needs: a scope, or `checked-in-handler` where it depends on the request (keys). */
export type RouteScope = Scope | 'checked-in-handler';

export interface V2Route {
  method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  url: string;
  scope: RouteScope;
  bodyLimit?: number;
  handler: (request: FastifyRequest, reply: FastifyReply) => Promise<unknown>;
}

/** The one tailnet name weft answers to. */
export const DEFAULT_TAILNET = '-';

/** Adds a route whose scope is checked (and whose tailnet segment is `-`) before the handler runs. */
export function addRoute(api: FastifyInstance, context: V2Context, route: V2Route): void {
  api.route({
    method: route.method,
    url: route.url,
    ...(route.bodyLimit === undefined ? {} : { bodyLimit: route.bodyLimit }),
    preHandler: async (request) => {
      const { tailnet } = (request.params ?? {}) as { tailnet?: string };
      if (tailnet !== undefined && tailnet !== DEFAULT_TAILNET) {
        throw new WeftError(
          'NOT_FOUND',
          `there is no tailnet "${tailnet.slice(0, 64)}"; weft serves one, named "-"`,
        );
      }
      if (route.scope !== 'checked-in-handler') requireScope(context.principalOf(request), route.scope);
    },
    handler: route.handler,
  });
}
