/**
 * The HTML pages of an OIDC login: confirmation, success and failure. Every value shown comes from
 * the device (hostname) or the identity provider (names, e-mail, error text), so all of it is escaped.
 */
import type { ConfirmationView } from './oidc.ts';

const HTML_ESCAPES: Record<string, string> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#39;',
};

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => HTML_ESCAPES[c] ?? c);
}

/** Security headers for every login page: no caching, no framing (clickjacking), no referrer leaks. */
export const PAGE_HEADERS: Readonly<Record<string, string>> = {
  'cache-control': 'no-store',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
  'content-security-policy':
    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
};

function page(title: string, body: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>${escapeHtml(title)}</title>
<style>
body { font-family: system-ui, sans-serif; max-width: 42rem; margin: 3rem auto; padding: 0 1rem; line-height: 1.5; color: #1d1d1f; }
code { font-family: ui-monospace, monospace; }
dt { font-weight: 600; } dd { margin: 0 0 0.5rem 0; }
button { font-size: 1rem; padding: 0.5rem 1.25rem; }
</style>
</head>
<body>
<h1>${escapeHtml(title)}</h1>
${body}
</body>
</html>
`;
}

export function confirmationPage(view: ConfirmationView): string {
  const device = view.hostname === '' ? '(no hostname)' : view.hostname;
  const owner = view.newUser
    ? `a new user <code>${escapeHtml(view.userName)}</code>, created for your account`
    : `your user <code>${escapeHtml(view.userName)}</code>`;
  return page(
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
  );
}

export function successPage(userName: string, hostname: string): string {
  const device = hostname === '' ? 'The device' : hostname;
  return page(
    'Device added',
    `<p><strong>${escapeHtml(device)}</strong> is now logged in as <code>${escapeHtml(userName)}</code>.
It connects by itself; you can close this page.</p>`,
  );
}

export function failurePage(message: string): string {
  return page('Login failed', `<p>${escapeHtml(message)}</p>`);
}
