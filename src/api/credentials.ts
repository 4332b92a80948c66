/**
 * The secret an API request presents: `Authorization: Bearer <key>`, or HTTP Basic with the key as the
 * user name and any password (what Tailscale's official Go client and Terraform provider send).
 */

export type Presented = { ok: true; secret: string } | { ok: false; reason: 'missing' | 'malformed' };

/** Longest Authorization header worth looking at; real keys are well under 200 characters. */
const MAX_HEADER = 4096;

export function presentedSecret(header: string | undefined): Presented {
  if (header === undefined || header.trim() === '') return { ok: false, reason: 'missing' };
  if (header.length > MAX_HEADER) return { ok: false, reason: 'malformed' };
  const match = /^(Bearer|Basic)\s+(\S+)\s*$/i.exec(header);
  if (!match?.[1] || !match[2]) return { ok: false, reason: 'malformed' };
  if (match[1].toLowerCase() === 'bearer') return { ok: true, secret: match[2] };
  // RFC 7617: base64 of "user:password"; the key is the user part.
  const decoded = Buffer.from(match[2], 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  const user = colon === -1 ? decoded : decoded.slice(0, colon);
  return user === '' ? { ok: false, reason: 'malformed' } : { ok: true, secret: user };
}
