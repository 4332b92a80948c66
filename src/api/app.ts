/**
 * The management plane: a Fastify app serving weft's REST API and the health endpoint.
 *
 * Who may call `/api/*`: requests that arrive on the local unix socket are the server's own admin
 * (the socket's file mode restricts it to the server's user, like Headscale's CLI socket); every other
 * request needs an API key, as `Authorization: Bearer <key>` or HTTP Basic with the key as the user
 * name. The caller tells which sockets are local. The OpenAPI document is public.
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
import type { PendingLogins } from '../state/logins.ts';
import type { PolicyStore } from '../state/policy.ts';
import type { Tailnet } from '../state/tailnet.ts';
import { WeftError } from '../types/errors.ts';
import type { TrustedProxies } from '../util/forwarded.ts';
import { addressKey } from '../util/rate-limit.ts';
import { authenticateCredential } from './credentials.ts';
import { openApiDocument } from './openapi.ts';
import { problemFor } from './problems.ts';
import {
  type ApiRateLimits,
  addRetryAfter,
  createApiRateLimits,
  enforce,
  LOCAL_ADMIN,
  limitKeyCreationBy,
} from './rate-limits.ts';
import { registerApiKeyRoutes } from './routes/apikeys.ts';
import { registerDnsRoutes } from './routes/dns.ts';
import { registerLoginRoutes } from './routes/logins.ts';
import { registerNodeRoutes } from './routes/nodes.ts';
import { registerOAuthClientRoutes } from './routes/oauthclients.ts';
import { registerPolicyRoutes } from './routes/policy.ts';
import { registerPreAuthKeyRoutes } from './routes/preauthkeys.ts';
import { type LoginPageHandler, registerLoginPageRoute } from './routes/register-page.ts';
import { registerUserRoutes } from './routes/users.ts';
import { registerApiV2 } from './v2/index.ts';
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
  /** `node.expiry` in ms (0 = never): API v2 gives it to a device whose key expiry is enabled again. */
  nodeKeyExpiryMs?: number;
  now?: () => Date;
  /** PEM certificate and key: serve HTTPS instead of HTTP. */
  https?: { cert: Buffer; key: Buffer };
  /** Interactive logins: `/register/<id>` pages and the `/api/v1/auth/*` endpoints; absent: not served. */
  logins?: PendingLogins;
  /** The login page for a pending login in place of the CLI instructions (OIDC redirects from here). */
  loginPage?: LoginPageHandler;
  /** Rate limits (tests pass their own clock); created with the defaults otherwise. */
  rateLimits?: ApiRateLimits;
  /** weft's version, shown in the OpenAPI document. */
  version?: string;
  /** Reverse proxies whose X-Forwarded-For names the client (`trusted_proxies`): request.ip is then it. */
  trustedProxies?: TrustedProxies;
}

export const DEFAULT_BASE_DOMAIN = 'tailnet.internal';

export interface RouteContext {
  store: Store;
  tailnet: Tailnet;
  baseDomain: string;
  now: () => Date;
  /** Who made an authenticated request: `local admin` or `apikey:<prefix>` (recorded with changes). */
  callerOf: (request: FastifyRequest) => string;
  rateLimits: ApiRateLimits;
  /** Counts a key created by this request's caller; RATE_LIMITED past the limit (local admin: never). */
  limitKeyCreation: (request: FastifyRequest) => void;
}

const servedRoutes = new WeakMap<FastifyInstance, string[]>();

/** Every route the app serves, as "METHOD /path" (the OpenAPI test compares them with the document). */
export function apiRoutes(app: FastifyInstance): readonly string[] {
  return servedRoutes.get(app) ?? [];
}

export function createApiApp(deps: ApiDependencies): FastifyInstance {
  const app = Fastify({
    // pino's Logger is a FastifyBaseLogger; the cast keeps Fastify's default generics for route modules.
    loggerInstance: deps.logger as FastifyBaseLogger,
    // One line per request from our onResponse hook instead of Fastify's two.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: API_BODY_LIMIT,
    return503OnClosing: true,
    ...(deps.trustedProxies !== undefined && !deps.trustedProxies.empty
      ? { trustProxy: (address: string) => deps.trustedProxies?.has(address) === true }
      : {}),
    ...(deps.https !== undefined ? { https: deps.https } : {}),
  });
  const callers = new WeakMap<FastifyRequest, string>();
  const rateLimits = deps.rateLimits ?? createApiRateLimits();
  const context: RouteContext = {
    store: deps.store,
    tailnet: deps.tailnet,
    baseDomain: deps.baseDomain ?? DEFAULT_BASE_DOMAIN,
    now: deps.now ?? (() => new Date()),
    callerOf: (request) => callers.get(request) ?? 'unknown',
    rateLimits,
    limitKeyCreation: (request) => limitKeyCreationBy(rateLimits, callers.get(request)),
  };
  const routes: string[] = [];
  servedRoutes.set(app, routes);
  app.addHook('onRoute', (route) => {
    for (const method of [route.method].flat()) if (method !== 'HEAD') routes.push(`${method} ${route.url}`);
  });
  // The API speaks JSON only; Fastify would otherwise hand text/plain bodies to handlers as strings.
  app.removeContentTypeParser('text/plain');

  app.setErrorHandler((err, request, reply) => {
    const problem = problemFor(err);
    if (problem.status >= 500) request.log.error({ err }, 'request failed');
    addRetryAfter(err, reply);
    void reply.code(problem.status).type('application/problem+json').send(problem);
  });
  app.setNotFoundHandler((request, reply) => {
    const problem = problemFor(
      new WeftError('NOT_FOUND', `there is no endpoint ${request.method} ${pathOf(request.url)}`),
    );
    void reply.code(problem.status).type('application/problem+json').send(problem);
  });
  app.addHook('onResponse', async (request, reply) => observeResponse(deps, request, reply));
  // Login pages start logins and OIDC round trips: cheap to request, not free to serve.
  app.addHook('onRequest', async (request) => {
    if (request.url.startsWith('/register/') || request.url.startsWith('/oidc/')) {
      enforce(rateLimits.loginPages.take(addressKey(request.ip)), 'login page requests from this address');
    }
  });

  app.get('/health', async (_request, reply) => {
    const report = await deps.health();
    return reply
      .code(report.status === 'pass' ? 200 : 500)
      .type('application/health+json')
      .send(report);
  });

  if (deps.logins !== undefined) registerLoginPageRoute(app, deps.logins, deps.loginPage);

  const openApi = JSON.stringify(openApiDocument({ version: deps.version ?? '0.1.0' }));
  app.get('/api/v1/openapi.json', async (_request, reply) => reply.type('application/json').send(openApi));

  app.register(
    async (api) => {
      api.addHook('onRequest', async (request) => {
        callers.set(request, await authenticate(deps, context, request));
      });
      registerUserRoutes(api, context);
      registerPreAuthKeyRoutes(api, context);
      registerNodeRoutes(api, context);
      registerApiKeyRoutes(api, context);
      registerOAuthClientRoutes(api, context, deps.policy);
      if (deps.policy !== undefined) registerPolicyRoutes(api, context, deps.policy);
      if (deps.dns !== undefined) registerDnsRoutes(api, deps.dns);
      if (deps.logins !== undefined) registerLoginRoutes(api, context, deps.logins);
    },
    { prefix: '/api/v1' },
  );
  // Tailscale's API v2 subset, with its own credentials, scopes and error shape (src/api/v2).
  registerApiV2(app, {
    store: deps.store,
    tailnet: deps.tailnet,
    ...(deps.policy !== undefined ? { policy: deps.policy } : {}),
    ...(deps.dns !== undefined ? { dns: deps.dns } : {}),
    baseDomain: context.baseDomain,
    now: context.now,
    ...(deps.nodeKeyExpiryMs !== undefined ? { nodeKeyExpiryMs: deps.nodeKeyExpiryMs } : {}),
    isLocalAdmin: deps.isLocalAdmin,
    rateLimits,
  });
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
  const key = await authenticateCredential(
    request,
    context.rateLimits.authFailures,
    (secret) => context.store.apiKeys.authenticate(secret, context.now()),
    {
      missing:
        'this endpoint needs an API key: send "Authorization: Bearer <key>" (create one with weft apikeys create)',
      unknown: 'the API key is unknown, malformed or expired',
    },
  );
  return `apikey:${key.prefix}`;
}

/**
 * The request target for the log: query values that can be secrets (an OIDC code or state, a token, a
 * key) are replaced on every route, so a log shipped elsewhere cannot be replayed. Names stay.
 */
export function loggableUrl(url: string): string {
  const query = url.indexOf('?');
  // A pending login's id is a capability while the login waits (with OIDC, whoever opens its page
  // first may finish it): the log keeps only the route.
  const path = (query === -1 ? url : url.slice(0, query)).replace(LOGIN_PAGE, '$1[redacted]');
  if (query === -1) return path;
  const params = new URLSearchParams(url.slice(query + 1));
  for (const name of new Set(params.keys())) {
    if (SECRET_QUERY.test(name)) params.set(name, '[redacted]');
  }
  return `${path}?${params.toString().replaceAll('%5Bredacted%5D', '[redacted]')}`;
}

const LOGIN_PAGE = /^(\/register\/(?:confirm\/)?)[^/]+/;

const SECRET_QUERY = /code|state|token|key|secret|password|nonce|session|assertion/i;

function observeResponse(deps: ApiDependencies, request: FastifyRequest, reply: FastifyReply): void {
  const route = request.routeOptions.url ?? 'unmatched';
  const seconds = reply.elapsedTime / 1000;
  deps.metrics?.httpRequests.inc({ method: request.method, route, status: String(reply.statusCode) });
  deps.metrics?.httpDuration.observe({ method: request.method, route }, seconds);
  // Routes whose query carries secrets (the OIDC callback's authorization code) say so in their config.
  const withoutQuery =
    (request.routeOptions.config as { logWithoutQuery?: boolean }).logWithoutQuery === true;
  const line = {
    method: request.method,
    url: loggableUrl(withoutQuery ? pathOf(request.url) : request.url),
    status: reply.statusCode,
    ms: Math.round(reply.elapsedTime),
  };
  if (route === '/health') request.log.debug(line, 'request');
  else request.log.info(line, 'request');
}
