/**
 * The secret an API request presents: `Authorization: Bearer <key>`, or HTTP Basic with the key as the
 * user name and any password (what Tailscale's official Go client and Terraform provider send); and
 * the authentication both API versions run on it, with failed attempts rate-limited per address.
 */
import type { FastifyRequest } from 'fastify';
import { WeftError } from '../types/errors.ts';
import { addressKey, type RateLimiter } from '../util/rate-limit.ts';
import { enforce } from './rate-limits.ts';

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

/** The UNAUTHENTICATED messages: no usable credential in the request, or one that names nobody. */
export interface CredentialMessages {
  missing: string;
  unknown: string;
}

/**
 * Whom the request's credential belongs to, as `identify` finds it. A good credential always works:
 * secrets are 256 random bits, so there is nothing to guess, and refusing good keys would let a
 * stranger sharing an address (a NAT, a proxy) lock everyone out. Failures — a malformed header or an
 * unknown credential, not a missing one (a client that has not tried yet) — are charged per address
 * (IPv6 per /64) to `failures`, each charged as it happens, so parallel attempts cannot slip past; past
 * the limit they are answered RATE_LIMITED with Retry-After instead of UNAUTHENTICATED.
 */
export async function authenticateCredential<Caller>(
  request: FastifyRequest,
  failures: RateLimiter,
  identify: (secret: string) => Promise<Caller | undefined>,
  messages: CredentialMessages,
): Promise<Caller> {
  const presented = presentedSecret(request.headers.authorization);
  if (!presented.ok) {
    if (presented.reason === 'malformed') failed(request, failures);
    throw new WeftError('UNAUTHENTICATED', messages.missing);
  }
  const caller = await identify(presented.secret);
  if (caller === undefined) {
    failed(request, failures);
    throw new WeftError('UNAUTHENTICATED', messages.unknown);
  }
  return caller;
}

/** Counts a failure of the request's address; RATE_LIMITED when it had no tokens left. */
function failed(request: FastifyRequest, failures: RateLimiter): void {
  enforce(failures.countFailure(addressKey(request.ip)), 'failed authentications from this address');
}
