/**
 * `GET /register/<id>`: the page behind the AuthURL a client prints ("To authenticate, visit: …").
 * Without OIDC it tells whoever opens it which device is waiting and the exact command an admin runs to
 * let it in. Everything shown comes from the device (hostname) or the URL, so all of it is escaped.
 *
 * `loginPage` is the hook for OIDC: when given, a pending login's page is whatever it answers (a
 * redirect to the identity provider) instead of the command.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { isLoginId, type PendingLogin, type PendingLogins } from '../../state/logins.ts';
import { escapeHtml, htmlPage, pageHeaders } from '../../util/html.ts';

/** Answers the page for a pending login in place of the CLI instructions (e.g. starts OIDC). */
export type LoginPageHandler = (
  login: PendingLogin,
  request: FastifyRequest,
  reply: FastifyReply,
) => Promise<FastifyReply | undefined> | FastifyReply | undefined;

export const LOGIN_PAGE_ROUTE = '/register/:id';

/** Shown in the command: the admin puts the user's name there. */
const USER_PLACEHOLDER = '<USER>';

/** The command that completes the login, exactly as the admin types it. */
export function registerCommand(id: string, user = USER_PLACEHOLDER): string {
  return `weft nodes register --user ${user} --key ${id}`;
}

/** `mkey:0123abcd…`: enough to tell devices apart on the page. */
function shortKey(key: string): string {
  const colon = key.indexOf(':');
  return `${key.slice(0, colon + 1 + 8)}…`;
}

/** The command on the page is shown as a block. */
const PAGE_STYLE =
  'pre { background: #f2f2f4; padding: 0.75rem 1rem; border-radius: 6px; overflow-x: auto; }\n';

export function pendingLoginPage(login: PendingLogin): string {
  const hostname = typeof login.hostinfo.Hostname === 'string' ? login.hostinfo.Hostname : '';
  const os = typeof login.hostinfo.OS === 'string' ? login.hostinfo.OS : '';
  return htmlPage(
    'A device is waiting to join this tailnet',
    `<dl>
<dt>Device</dt><dd>${escapeHtml(hostname || '(no hostname)')}${os ? ` (${escapeHtml(os)})` : ''}</dd>
<dt>Machine key</dt><dd><code>${escapeHtml(shortKey(login.machineKey))}</code></dd>
<dt>Waiting until</dt><dd>${escapeHtml(login.expiresAt.toISOString())}</dd>
</dl>
<p>An administrator of this weft server lets it in by running, on the server:</p>
<pre>${escapeHtml(registerCommand(login.id))}</pre>
<p>with <code>${escapeHtml(USER_PLACEHOLDER)}</code> replaced by the name of the user the device will belong to
(<code>weft users list</code> shows them). The device then connects by itself; <code>tailscale up</code> is
still waiting for this.</p>
<p>If you do not recognise this device, reject it: <code>weft auth reject --auth-id ${escapeHtml(login.id)}</code>.</p>`,
    PAGE_STYLE,
  );
}

export function unknownLoginPage(): string {
  return htmlPage(
    'This login link is not valid',
    `<p>There is no device waiting under this link: the login was completed, rejected or expired (a login
waits 15 minutes), or the link is incomplete.</p>
<p>Run <code>tailscale up</code> on the device again to get a new link.</p>`,
    PAGE_STYLE,
  );
}

/** The URL carries the login id: keep it out of other sites' logs, and the page out of frames. */
const PAGE_HEADERS = pageHeaders({ forms: false });

function sendHtml(reply: FastifyReply, status: number, html: string): FastifyReply {
  return reply.code(status).headers(PAGE_HEADERS).type('text/html; charset=utf-8').send(html);
}

export function registerLoginPageRoute(
  app: FastifyInstance,
  logins: PendingLogins,
  loginPage?: LoginPageHandler,
): void {
  app.get(LOGIN_PAGE_ROUTE, async (request, reply) => {
    const { id } = request.params as { id: string };
    const login = isLoginId(id) ? logins.get(id) : undefined;
    if (login === undefined) return sendHtml(reply, 404, unknownLoginPage());
    if (loginPage !== undefined) return loginPage(login, request, reply);
    return sendHtml(reply, 200, pendingLoginPage(login));
  });
}
