/**
 * The HTML pages of an OIDC login: confirmation, success and failure. Every value shown comes from
 * the device (hostname) or the identity provider (names, e-mail, error text), so all of it is escaped.
 */
import { escapeHtml, htmlPage, pageHeaders } from '../util/html.ts';
import type { ConfirmationView } from './oidc.ts';

/** Security headers for every login page; the confirmation page posts its form back. */
export const PAGE_HEADERS: Readonly<Record<string, string>> = pageHeaders({ forms: true });

/** The confirmation page's form button. */
const PAGE_STYLE = 'button { font-size: 1rem; padding: 0.5rem 1.25rem; }\n';

export function confirmationPage(view: ConfirmationView): string {
  const device = view.hostname === '' ? '(no hostname)' : view.hostname;
  const owner = view.newUser
    ? `a new user <code>${escapeHtml(view.userName)}</code>, created for your account`
    : `your user <code>${escapeHtml(view.userName)}</code>`;
  return htmlPage(
    'Add this device to your account?',
    `<p>You signed in as <strong>${escapeHtml(view.accountLabel)}</strong>.</p>
<dl>
<dt>Device</dt><dd>${escapeHtml(device)}</dd>
<dt>Machine key</dt><dd><code>mkey:${escapeHtml(view.machineKeyShort)}…</code></dd>
<dt>Will belong to</dt><dd>${owner}</dd>
</dl>
<p>Continue only if you started this login yourself, by running <code>tailscale up</code> on that device.
If someone sent you this link, close this page: continuing would let their device into your account.</p>
<form method="post" action="${escapeHtml(view.formAction)}">
<input type="hidden" name="csrf" value="${escapeHtml(view.csrfToken)}">
<button type="submit">Add ${escapeHtml(device)}</button>
</form>`,
    PAGE_STYLE,
  );
}

export function successPage(userName: string, hostname: string): string {
  const device = hostname === '' ? 'The device' : hostname;
  return htmlPage(
    'Device added',
    `<p><strong>${escapeHtml(device)}</strong> is now logged in as <code>${escapeHtml(userName)}</code>.
It connects by itself; you can close this page.</p>`,
    PAGE_STYLE,
  );
}

export function failurePage(message: string): string {
  return htmlPage('Login failed', `<p>${escapeHtml(message)}</p>`, PAGE_STYLE);
}
