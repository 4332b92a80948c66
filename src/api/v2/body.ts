/** Request bodies of API v2: text from the plugin's parsers, parsed and checked here. */
import type { FastifyRequest } from 'fastify';
import type { z } from 'zod';
import { WeftError } from '../../types/errors.ts';
import { parseInput } from '../problems.ts';

/** The body text; '' when there is none. */
export function bodyText(request: FastifyRequest): string {
  const body = request.body;
  if (body === undefined || body === null) return '';
  if (typeof body === 'string') return body;
  throw new WeftError('UNSUPPORTED_MEDIA_TYPE', 'send the request body as application/json');
}

/** The key that would reach an object's prototype when a parsed value is copied into another. */
const POISON_KEY = '__proto__';

/** The body as JSON; undefined when it is empty. */
export function jsonBody(request: FastifyRequest): unknown {
  const text = bodyText(request);
  if (text.trim() === '') return undefined;
  try {
    return JSON.parse(text, (key, value: unknown) => {
      if (key === POISON_KEY)
        throw new WeftError('BAD_REQUEST', `the request body has a forbidden key "${key}"`);
      return value;
    });
  } catch (err) {
    if (err instanceof WeftError) throw err;
    throw new WeftError('BAD_REQUEST', 'the request body is not valid JSON');
  }
}

/** The body as JSON, checked by `schema` (a BAD_REQUEST naming the field otherwise). */
export function parseBody<S extends z.ZodType>(request: FastifyRequest, schema: S): z.output<S> {
  return parseInput(schema, jsonBody(request), 'body');
}
