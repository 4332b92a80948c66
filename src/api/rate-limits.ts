/**
 * Rate limits of the management plane (429 + Retry-After, problem code RATE_LIMITED):
 *   - failed API-key authentications, per remote address: guessing keys gets slow after a few tries,
 *     while a caller with a good key is never counted;
 *   - key creation (pre-auth keys, API keys, OAuth tokens), per caller: a leaked key cannot mint
 *     thousands of others in a second. The local admin socket is the server's own user and is exempt;
 *   - login pages (`/register/…`, `/oidc/…`), per remote address.
 * The numbers are generous for people and scripts and small for brute force.
 */
import type { FastifyReply } from 'fastify';
import { WeftError } from '../types/errors.ts';
import { type RateDecision, RateLimiter, retryAfterSeconds } from '../util/rate-limit.ts';

export class RateLimitedError extends WeftError {
  readonly retryAfterSeconds: number;

  constructor(what: string, decision: { retryAfterMs: number }) {
    const seconds = retryAfterSeconds(decision);
    super('RATE_LIMITED', `too many ${what}; retry in ${seconds} s`);
    this.retryAfterSeconds = seconds;
  }
}

export interface ApiRateLimits {
  authFailures: RateLimiter;
  keyCreation: RateLimiter;
  loginPages: RateLimiter;
}

export function createApiRateLimits(now?: () => number): ApiRateLimits {
  const options = now === undefined ? {} : { now };
  return {
    authFailures: new RateLimiter({ burst: 10, perSecond: 0.5 }, options),
    keyCreation: new RateLimiter({ burst: 30, perSecond: 0.5 }, options),
    loginPages: new RateLimiter({ burst: 30, perSecond: 1 }, options),
  };
}

/** Who the local admin socket's requests are: the server's own user. */
export const LOCAL_ADMIN = 'local admin';

/** Counts a key (or OAuth client) created by `caller`; RATE_LIMITED past the limit. The local admin is exempt. */
export function limitKeyCreationBy(limits: ApiRateLimits, caller: string | undefined): void {
  if (caller === undefined || caller === LOCAL_ADMIN) return;
  enforce(limits.keyCreation.take(caller), 'keys created with these credentials');
}

/** Throws RATE_LIMITED when the decision says no. */
export function enforce(decision: RateDecision, what: string): void {
  if (!decision.ok) throw new RateLimitedError(what, decision);
}

/** Sets Retry-After on a reply for a RATE_LIMITED error. */
export function addRetryAfter(err: unknown, reply: FastifyReply): void {
  if (err instanceof RateLimitedError) void reply.header('retry-after', String(err.retryAfterSeconds));
}
