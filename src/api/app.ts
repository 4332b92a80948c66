/**
 * The management plane: a Fastify app serving weft's REST API and the health endpoint.
 *
 * Who may call `/api/*`: requests that arrive on the local unix socket are the server's own admin
 * (the socket's file mode restricts it to the server's user, like Headscale's CLI socket); every other
 * request needs `Authorization: Bearer <API key>`. The caller tells which sockets are local.
 */
import type { IncomingMessage } from 'node:http';
import Fastify, {
  type FastifyBaseLogger,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  LogController,
} from 'fastify';
import type { Store } from '../db/store.ts';
import type { Logger } from '../observe/logger.ts';
import type { Metrics } from '../observe/metrics.ts';
import type { DnsSettingsStore } from '../state/dns.ts';
import type { PolicyStore } from '../state/policy.ts';
import type { Tailnet } from '../state/tailnet.ts';
import { WeftError } from '../types/errors.ts';
import { problemFor } from './problems.ts';
import { registerApiKeyRoutes } from './routes/apikeys.ts';
import { registerDnsRoutes } from './routes/dns.ts';
import { registerNodeRoutes } from './routes/nodes.ts';
import { registerPolicyRoutes } from './routes/policy.ts';
import { registerPreAuthKeyRoutes } from './routes/preauthkeys.ts';
import { registerUserRoutes } from './routes/users.ts';
import type { HealthJson } from './wire.ts';

/** Requests bodies on the API are small JSON objects; anything bigger is refused before it is read. */
export const API_BODY_LIMIT = 64 * 1024;

export interface ApiDependencies {
  store: Store;
  /** The live tailnet: node changes go through it so connected clients hear about them at once. */
  tailnet: Tailnet;
  /** The policy in force; without it the policy endpoints are not served. */
  policy?: PolicyStore;
  /** The DNS settings in force; without it the DNS endpoints are not served. */
  dns?: DnsSettingsStore;
  logger: Logger;
  metrics?: Metrics;
  /** Health of the parts the server depends on; `status: 'fail'` answers 500. */
  health: () => Promise<HealthJson>;
  /** True for requests that came through the local admin socket. */
  isLocalAdmin: (request: IncomingMessage) => boolean;
  /** `dns.base_domain`: nodes' MagicDNS names are `<given name>.<base domain>`. */
  baseDomain?: string;
  now?: () => Date;
  /** PEM certificate and key: serve HTTPS instead of HTTP. */
  https?: { cert: Buffer; key: Buffer };
}

export const DEFAULT_BASE_DOMAIN = 'tailnet.internal';

export interface RouteContext {
  store: Store;
  tailnet: Tailnet;
  baseDomain: string;
  now: () => Date;
  /** Who made an authenticated request: `local admin` or `apikey:<prefix>` (recorded with changes). */
  callerOf: (request: FastifyRequest) => string;
}

const LOCAL_ADMIN = 'local admin';

export function createApiApp(deps: ApiDependencies): FastifyInstance {
  const app = Fastify({
    // pino's Logger is a FastifyBaseLogger; the cast keeps Fastify's default generics for route modules.
    loggerInstance: deps.logger as FastifyBaseLogger,
    // One line per request from our onResponse hook instead of Fastify's two.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: API_BODY_LIMIT,
    return503OnClosing: true,
    ...(deps.https !== undefined ? { https: deps.https } : {}),
  });
  const callers = new WeakMap<FastifyRequest, string>();
  const context: RouteContext = {
    store: deps.store,
    tailnet: deps.tailnet,
    baseDomain: deps.baseDomain ?? DEFAULT_BASE_DOMAIN,
    now: deps.now ?? (() => new Date()),
    callerOf: (request) => callers.get(request) ?? 'unknown',
  };
  // The API speaks JSON only; Fastify would otherwise hand text/plain bodies to handlers as strings.
  app.removeContentTypeParser('text/plain');

  app.setErrorHandler((err, request, reply) => {
    const problem = problemFor(err);
    if (problem.status >= 500) request.log.error({ err }, 'request failed');
    void reply.code(problem.status).type('application/problem+json').send(problem);
  });
  app.setNotFoundHandler((request, reply) => {
    const problem = problemFor(
      new WeftError('NOT_FOUND', `there is no endpoint ${request.method} ${pathOf(request.url)}`),
    );
    void reply.code(problem.status).type('application/problem+json').send(problem);
  });
  app.addHook('onResponse', async (request, reply) => observeResponse(deps, request, reply));

  app.get('/health', async (_request, reply) => {
    const report = await deps.health();
    return reply
      .code(report.status === 'pass' ? 200 : 500)
      .type('application/health+json')
      .send(report);
  });

  app.register(
    async (api) => {
      api.addHook('onRequest', async (request) => {
        callers.set(request, await authenticate(deps, context, request));
      });
      registerUserRoutes(api, context);
      registerPreAuthKeyRoutes(api, context);
      registerNodeRoutes(api, context);
      registerApiKeyRoutes(api, context);
      if (deps.policy !== undefined) registerPolicyRoutes(api, context, deps.policy);
      if (deps.dns !== undefined) registerDnsRoutes(api, deps.dns);
    },
    { prefix: '/api/v1' },
  );
  return app;
}

function pathOf(url: string): string {
  const path = url.split('?', 1)[0] ?? url;
  return path.length > 100 ? `${path.slice(0, 100)}…` : path;
}

/** Who is calling, or a 401 when nobody valid is. */
async function authenticate(
  deps: ApiDependencies,
  context: RouteContext,
  request: FastifyRequest,
): Promise<string> {
  if (deps.isLocalAdmin(request.raw)) return LOCAL_ADMIN;
  const header = request.headers.authorization;
  const match = header === undefined ? null : /^Bearer\s+(\S+)\s*$/i.exec(header);
  if (!match?.[1]) {
    throw new WeftError(
      'UNAUTHENTICATED',
      'this endpoint needs an API key: send "Authorization: Bearer <key>" (create one with weft apikeys create)',
    );
  }
  const key = await context.store.apiKeys.authenticate(match[1], context.now());
  if (!key) throw new WeftError('UNAUTHENTICATED', 'the API key is unknown, malformed or expired');
  return `apikey:${key.prefix}`;
}

function observeResponse(deps: ApiDependencies, request: FastifyRequest, reply: FastifyReply): void {
  const route = request.routeOptions.url ?? 'unmatched';
  const seconds = reply.elapsedTime / 1000;
  deps.metrics?.httpRequests.inc({ method: request.method, route, status: String(reply.statusCode) });
  deps.metrics?.httpDuration.observe({ method: request.method, route }, seconds);
  const line = {
    method: request.method,
    url: request.url,
    status: reply.statusCode,
    ms: Math.round(reply.elapsedTime),
  };
  if (route === '/health') request.log.debug(line, 'request');
  else request.log.info(line, 'request');
}
