/**
 * The server's few HTML pages (a login link's page, the OIDC login pages): escaping, and one page shell
 * so that they look alike. What they show comes from devices and identity providers, so every value put
 * into a page goes through `escapeHtml`.
 */

const HTML_ESCAPES: Record<string, string> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#39;',
};

/**
 * Security headers for every such page: no caching, no framing (clickjacking), no referrer leaks (the
 * URLs carry login ids), no scripts. `forms`: the page posts a form back to the server.
 */
export function pageHeaders(options: { forms: boolean }): Record<string, string> {
  const formAction = options.forms ? " form-action 'self';" : '';
  return {
    'cache-control': 'no-store',
    'referrer-policy': 'no-referrer',
    'x-frame-options': 'DENY',
    'content-security-policy': `default-src 'none'; style-src 'unsafe-inline';${formAction} frame-ancestors 'none'`,
  };
}

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => HTML_ESCAPES[c] ?? c);
}

/**
 * A whole page: `title` (escaped here) as its title and heading, then `body`, which is HTML the caller
 * has already escaped. `style` adds CSS rules for the page's own elements. Search engines are asked to
 * keep out: these pages carry one-time links.
 */
export function htmlPage(title: string, body: string, style = ''): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>${escapeHtml(title)}</title>
<style>
body { font-family: system-ui, sans-serif; max-width: 42rem; margin: 3rem auto; padding: 0 1rem; line-height: 1.5; color: #1d1d1f; }
code, pre { font-family: ui-monospace, monospace; }
dt { font-weight: 600; } dd { margin: 0 0 0.5rem 0; }
${style}</style>
</head>
<body>
<h1>${escapeHtml(title)}</h1>
${body}
</body>
</html>
`;
}
