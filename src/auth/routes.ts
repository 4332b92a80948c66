/**
 * The browser side of an OIDC login, on the main listener:
 *
 *   GET  /register/<id>          (through the login page hook) → 302 to the identity provider
 *   GET  /oidc/callback          the provider's redirect back → confirmation page
 *   POST /register/confirm/<id>  the confirmation form → success page; the device is registered
 *
 * Every failure is an HTML page with one sentence and the status of its error code; nothing changes.
 * The callback URL carries the authorization code, so its request is logged without the query.
 */
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { PendingLogin } from '../state/logins.ts';
import { ERROR_CATALOGUE, WeftError } from '../types/errors.ts';
import { CALLBACK_PATH, CONFIRM_PATH_PREFIX, type OidcLogin } from './oidc.ts';
import { confirmationPage, failurePage, PAGE_HEADERS, successPage } from './pages.ts';

/** The confirmation form holds one token: anything bigger is refused before it is read. */
const FORM_BODY_LIMIT = 4 * 1024;

function sendPage(reply: FastifyReply, status: number, html: string, cookies: string[] = []): FastifyReply {
  if (cookies.length > 0) void reply.header('set-cookie', cookies);
  return reply.code(status).headers(PAGE_HEADERS).type('text/html; charset=utf-8').send(html);
}

function sendFailure(request: FastifyRequest, reply: FastifyReply, err: unknown): FastifyReply {
  if (err instanceof WeftError) return sendPage(reply, err.status, failurePage(err.message));
  const status = (err as FastifyError).statusCode;
  if (typeof status === 'number' && status >= 400 && status < 500) {
    return sendPage(
      reply,
      status,
      failurePage('The request was not a valid login form; open the login link again.'),
    );
  }
  request.log.error({ err }, 'OIDC login request failed');
  return sendPage(
    reply,
    500,
    failurePage('Something went wrong on the server; try again, or ask an administrator.'),
  );
}

/**
 * The `/register/<id>` handler for the login page hook: sends the browser to the identity provider.
 * When the provider is unreachable, the page says so and names the CLI fallback.
 */
export function oidcLoginPage(oidc: OidcLogin) {
  return async (login: PendingLogin, request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> => {
    try {
      const { location, setCookie } = await oidc.begin(login.id);
      return reply.code(302).headers(PAGE_HEADERS).header('set-cookie', setCookie).redirect(location);
    } catch (err) {
      if (err instanceof WeftError && err.code === 'OIDC_UNAVAILABLE') {
        const message = `The identity provider cannot be reached right now; try again shortly, or ask an administrator to run: weft nodes register --user <USER> --key ${login.id}`;
        return sendPage(reply, ERROR_CATALOGUE.OIDC_UNAVAILABLE.status, failurePage(message));
      }
      return sendFailure(request, reply, err);
    }
  };
}

/** Registers `/oidc/callback` and `/register/confirm/:id` in their own scope (form parser, HTML errors). */
export function registerOidcRoutes(app: FastifyInstance, oidc: OidcLogin): void {
  app.register(async (scope) => {
    scope.addContentTypeParser(
      'application/x-www-form-urlencoded',
      { parseAs: 'string', bodyLimit: FORM_BODY_LIMIT },
      (_request, body, done) => done(null, new URLSearchParams(body as string)),
    );
    scope.setErrorHandler((err, request, reply) => sendFailure(request, reply, err));

    // No automatic HEAD route: a HEAD (a link preview) would use up the single-use state.
    scope.get(
      CALLBACK_PATH,
      { exposeHeadRoute: false, config: { logWithoutQuery: true } },
      async (request, reply) => {
        const query = request.url.includes('?') ? request.url.slice(request.url.indexOf('?') + 1) : '';
        const view = await oidc.callback(query, request.headers.cookie);
        return sendPage(reply, 200, confirmationPage(view), view.setCookies);
      },
    );
    // Other methods get an answer here rather than the app's 404, whose log line would hold the query.
    scope.route({
      method: ['HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'],
      url: CALLBACK_PATH,
      config: { logWithoutQuery: true },
      handler: (_request, reply) =>
        sendPage(reply, 405, failurePage('Open the login link in a browser; this address only answers GET.')),
    });

    scope.post(`${CONFIRM_PATH_PREFIX}:id`, async (request, reply) => {
      const { id } = request.params as { id: string };
      const form = request.body instanceof URLSearchParams ? request.body : new URLSearchParams();
      const done = await oidc.confirm(id, request.headers.cookie, form.get('csrf') ?? '');
      return sendPage(reply, 200, successPage(done.userName, done.hostname), done.setCookies);
    });
  });
}
