/**
 * `/api/v2`: the subset of Tailscale's public API that its official Go client
 * (`tailscale.com/client/tailscale/v2`) and Terraform provider use — devices, auth keys and OAuth
 * clients, the policy file, DNS, users — plus the OAuth client credentials token endpoint.
 *
 * It is its own Fastify plugin with its own rules, apart from weft's `/api/v1`:
 *   - credentials: see auth.ts (API keys, OAuth access tokens; Bearer or Basic);
 *   - every route names the scope it needs, and an OAuth token without it gets 403;
 *   - errors are Tailscale's `{"message", "status"}` (errors.ts), with the catalogue's sentences;
 *   - bodies are read as text and parsed here, so the policy keeps its exact HuJSON text and a JSON
 *     error says what is wrong in the same shape; sizes are checked before a body is read;
 *   - the tailnet path segment is `-` (the caller's tailnet, Tailscale's default); weft has one
 *     tailnet, and any other name is a 404, as in Headscale.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { WeftError } from '../../types/errors.ts';
import { addRetryAfter, limitKeyCreationBy } from '../rate-limits.ts';
import { registerAclRoutes } from './acl.ts';
import { authenticate, type Principal } from './auth.ts';
import type { ApiV2Dependencies, V2Context } from './context.ts';
import { registerDeviceRoutes } from './devices.ts';
import { registerDnsRoutes } from './dns.ts';
import { sendV2Error } from './errors.ts';
import { registerKeyRoutes } from './keys.ts';
import { registerOAuthTokenRoute } from './oauth.ts';
import { registerUserRoutes } from './users.ts';

export type { ApiV2Dependencies } from './context.ts';

/**
 * The body as text: JSON and HuJSON routes parse it themselves. Sizes are the app's limit (64 KiB),
 * or the route's own (the policy file), checked by Fastify before the body is read.
 */
function installBodyParsers(api: FastifyInstance): void {
  api.removeContentTypeParser('application/json');
  api.addContentTypeParser(
    ['application/json', 'application/hujson', 'text/plain'],
    { parseAs: 'string' },
    (_request, body, done) => done(null, body),
  );
  // Only the OAuth token endpoint takes a form (RFC 6749 §4.4.2).
  api.addContentTypeParser(
    'application/x-www-form-urlencoded',
    { parseAs: 'string' },
    (_request, body, done) => done(null, new URLSearchParams(String(body))),
  );
}

export function registerApiV2(app: FastifyInstance, deps: ApiV2Dependencies): void {
  app.register(
    async (api) => {
      const principals = new WeakMap<FastifyRequest, Principal>();
      const context: V2Context = {
        ...deps,
        principalOf: (request) => {
          const principal = principals.get(request);
          if (principal === undefined)
            throw new WeftError('UNAUTHENTICATED', 'the request carries no credentials');
          return principal;
        },
        limitKeyCreation: (request) => limitKeyCreationBy(deps.rateLimits, principals.get(request)?.caller),
      };
      installBodyParsers(api);
      api.setErrorHandler((err, request, reply) => {
        addRetryAfter(err, reply);
        return sendV2Error(request, reply, err);
      });
      api.setNotFoundHandler((request, reply) =>
        sendV2Error(
          request,
          reply,
          new WeftError(
            'NOT_FOUND',
            `there is no endpoint ${request.method} ${(request.url.split('?', 1)[0] ?? '').slice(0, 100)}`,
          ),
        ),
      );
      // The token endpoint authenticates the OAuth client itself (form fields or Basic), so it is
      // registered before the hook that wants an API key or access token.
      registerOAuthTokenRoute(api, context);
      api.register(async (authed) => {
        authed.addHook('onRequest', async (request) => {
          principals.set(request, await authenticate(context, request));
        });
        registerDeviceRoutes(authed, context);
        registerKeyRoutes(authed, context);
        registerUserRoutes(authed, context);
        if (deps.policy !== undefined) registerAclRoutes(authed, context, deps.policy);
        if (deps.dns !== undefined) registerDnsRoutes(authed, context, deps.dns);
      });
    },
    { prefix: '/api/v2' },
  );
}
