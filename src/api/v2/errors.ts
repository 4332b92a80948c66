/**
 * API v2 errors in Tailscale's shape, `{"message": "...", "status": N}` (plus `data` for policy test
 * failures): the official Go client decodes exactly this, and `tailscale.IsNotFound` reads `status`.
 * The codes and sentences are the catalogue's (problemFor), so weft keeps one list of errors.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import { PolicyError } from '../../policy/index.ts';
import { WeftError } from '../../types/errors.ts';
import { problemFor } from '../problems.ts';

export interface V2ErrorJson {
  message: string;
  status: number;
  /** Policy tests that failed, in Tailscale's `[{user, errors}]` form. */
  data?: { user: string; errors: string[] }[];
}

/** Tailscale's own words for a failed If-Match; Terraform tells users to import the policy on it. */
export const PRECONDITION_FAILED_MESSAGE = 'precondition failed, invalid old hash';

export function v2ErrorFor(err: unknown): V2ErrorJson {
  if (err instanceof WeftError && err.code === 'POLICY_CHANGED') {
    return { message: PRECONDITION_FAILED_MESSAGE, status: 412 };
  }
  const problem = problemFor(err);
  const out: V2ErrorJson = { message: problem.detail, status: problem.status };
  if (err instanceof PolicyError && err.failures.length > 0) {
    out.data = [{ user: '', errors: [...err.failures] }];
  }
  return out;
}

export function sendV2Error(request: FastifyRequest, reply: FastifyReply, err: unknown): FastifyReply {
  const body = v2ErrorFor(err);
  if (body.status >= 500) request.log.error({ err }, 'request failed');
  return reply.code(body.status).type('application/json').send(body);
}
