/**
 * Everything that goes wrong in a request becomes one RFC 7807 problem document with a catalogued
 * code. Expected failures carry their own sentence; unexpected ones say only "internal error" to the
 * caller (the details go to the server log).
 */
import type { z } from 'zod';
import { isDatabaseUnavailable } from '../db/errors.ts';
import { PolicyError } from '../policy/index.ts';
import { ERROR_CATALOGUE, type ErrorCode, WeftError } from '../types/errors.ts';
import type { ProblemJson } from './wire.ts';

function problem(code: ErrorCode, detail: string): ProblemJson {
  const { status, title } = ERROR_CATALOGUE[code];
  return { status, code, title, detail };
}

interface FastifyLikeError {
  code?: unknown;
  statusCode?: unknown;
  message?: unknown;
}

/** Fastify's own errors (body parsing, limits) in the catalogue's words. */
function fromFastify(err: FastifyLikeError): ProblemJson | undefined {
  switch (err.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return problem('BODY_TOO_LARGE', 'the request body is too large');
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return problem('UNSUPPORTED_MEDIA_TYPE', 'send the request body as application/json');
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return problem('BAD_REQUEST', 'the request body is empty; send a JSON object');
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return problem('BAD_REQUEST', 'the request body is not valid JSON');
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return problem('BAD_REQUEST', 'the Content-Length header does not match the body');
  }
  if (err instanceof SyntaxError) return problem('BAD_REQUEST', 'the request body is not valid JSON');
  if (typeof err.statusCode === 'number' && err.statusCode >= 400 && err.statusCode < 500) {
    return problem('BAD_REQUEST', typeof err.message === 'string' ? err.message : 'bad request');
  }
  return undefined;
}

/** An invalid policy or failing tests, with the location and failures kept apart for scripts. */
function fromPolicy(err: PolicyError): ProblemJson {
  const failed = err.failures.length > 0;
  const out = problem(failed ? 'POLICY_TESTS_FAILED' : 'POLICY_INVALID', err.describe());
  if (err.location !== undefined)
    Object.assign(out, { line: err.location.line, column: err.location.column });
  if (failed) out.failures = [...err.failures];
  return out;
}

export function problemFor(err: unknown): ProblemJson {
  if (err instanceof WeftError) return problem(err.code, err.message);
  if (err instanceof PolicyError) return fromPolicy(err);
  if (isDatabaseUnavailable(err)) {
    return problem('DATABASE_UNAVAILABLE', 'the database is unavailable; the server log has the details');
  }
  if (typeof err === 'object' && err !== null) {
    const known = fromFastify(err as FastifyLikeError);
    if (known) return known;
  }
  return problem('INTERNAL', 'internal server error; the server log has the details');
}

/** Validates one part of a request; the first problems become one BAD_REQUEST sentence. */
export function parseInput<S extends z.ZodType>(
  schema: S,
  value: unknown,
  part: 'body' | 'query' | 'path',
): z.output<S> {
  const result = schema.safeParse(value ?? (part === 'body' ? undefined : {}));
  if (result.success) return result.data;
  const reasons = result.error.issues.slice(0, 3).map((issue) => {
    const where = issue.path.length > 0 ? `${part}.${issue.path.join('.')}` : part;
    // A bad map key (e.g. a split DNS domain) says only "Invalid key in record"; the reason is inside.
    const message =
      issue.code === 'invalid_key'
        ? issue.issues.map((inner) => `bad key: ${inner.message}`).join('; ')
        : issue.message;
    return `${where}: ${message}`;
  });
  throw new WeftError('BAD_REQUEST', `invalid request ${reasons.join('; ')}`);
}
