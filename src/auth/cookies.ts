/**
 * The few cookies of a browser login: read from the Cookie header, written as Set-Cookie values.
 * Always HttpOnly (scripts never need them) and SameSite=Lax (sent on the provider's top-level redirect
 * back to us, never on a cross-site POST), Secure when weft is served over https, scoped to one path and
 * short-lived.
 */

export interface CookieSpec {
  name: string;
  value: string;
  path: string;
  maxAgeSeconds: number;
  secure: boolean;
}

/** Names and values we set use only these characters, so no quoting or encoding is needed. */
const TOKEN = /^[A-Za-z0-9_-]+$/;

export function serializeCookie(cookie: CookieSpec): string {
  if (!TOKEN.test(cookie.name) || !(cookie.value === '' || TOKEN.test(cookie.value))) {
    throw new Error(`cookie ${cookie.name} has characters that need encoding`);
  }
  const parts = [
    `${cookie.name}=${cookie.value}`,
    `Path=${cookie.path}`,
    `Max-Age=${Math.max(0, Math.floor(cookie.maxAgeSeconds))}`,
    'HttpOnly',
    'SameSite=Lax',
  ];
  if (cookie.secure) parts.push('Secure');
  return parts.join('; ');
}

/** A Set-Cookie value that deletes the cookie. */
export function clearCookie(name: string, path: string, secure: boolean): string {
  return serializeCookie({ name, value: '', path, maxAgeSeconds: 0, secure });
}

/** Cookie header → name → value; the first of duplicate names wins (the most specific path, RFC 6265). */
export function parseCookies(header: string | undefined): Map<string, string> {
  const cookies = new Map<string, string>();
  if (header === undefined) return cookies;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq <= 0) continue;
    const name = part.slice(0, eq).trim();
    const value = part.slice(eq + 1).trim();
    if (!cookies.has(name)) cookies.set(name, value);
  }
  return cookies;
}
