/**
 * The catalogue of every error weft reports to API clients, with a stable code and HTTP status.
 *
 * Lower layers throw `WeftError`s with a code from here and one clear sentence as the message; the API
 * boundary turns them into `application/problem+json` responses (`{status, code, title, detail}`) and
 * the CLI prints the sentence. Codes are part of the public interface: add new ones, never rename.
 */

export const ERROR_CATALOGUE = {
  BAD_REQUEST: { status: 400, title: 'The request is malformed or a value in it is invalid' },
  UNAUTHENTICATED: { status: 401, title: 'A valid API key is required' },
  NOT_FOUND: { status: 404, title: 'No such endpoint' },
  BODY_TOO_LARGE: { status: 413, title: 'The request body is larger than the endpoint accepts' },
  UNSUPPORTED_MEDIA_TYPE: { status: 415, title: 'The request body must be JSON' },
  USER_NOT_FOUND: { status: 404, title: 'No such user' },
  USER_EXISTS: { status: 409, title: 'A user with that name already exists' },
  USER_HAS_NODES: { status: 409, title: 'The user still owns nodes' },
  NODE_NOT_FOUND: { status: 404, title: 'No such node' },
  NODE_NAME_TAKEN: { status: 409, title: 'Another node already has that name' },
  PREAUTHKEY_NOT_FOUND: { status: 404, title: 'No such pre-auth key' },
  PREAUTHKEY_AMBIGUOUS: { status: 409, title: 'The key prefix matches more than one pre-auth key' },
  PREAUTHKEY_EXPIRED: { status: 409, title: 'The pre-auth key has already expired' },
  APIKEY_NOT_FOUND: { status: 404, title: 'No such API key' },
  APIKEY_AMBIGUOUS: { status: 409, title: 'The key prefix matches more than one API key' },
  APIKEY_EXPIRED: { status: 409, title: 'The API key has already expired' },
  ROUTE_NOT_ADVERTISED: { status: 400, title: 'The node does not advertise that route' },
  POLICY_INVALID: { status: 400, title: 'The policy is not valid' },
  POLICY_TESTS_FAILED: { status: 400, title: "The policy's tests failed" },
  POLICY_FILE_MODE: { status: 409, title: 'The policy is read from a file (policy.mode: file)' },
  POLICY_CHANGED: { status: 412, title: 'The policy changed since it was read' },
  LOGIN_NOT_FOUND: { status: 404, title: 'No such pending login (it finished or expired)' },
  RATE_LIMITED: { status: 429, title: 'Too many requests; retry after the time in Retry-After' },
  LOGINS_FULL: { status: 503, title: 'Too many logins are waiting to be completed; try again later' },
  FORBIDDEN: { status: 403, title: 'The credentials do not allow this request (missing scope or tag)' },
  OAUTH_CLIENT_NOT_FOUND: { status: 404, title: 'No such OAuth client' },
  OIDC_UNAVAILABLE: { status: 503, title: 'The identity provider cannot be reached' },
  OIDC_STATE_INVALID: {
    status: 400,
    title: 'The login is unknown, already used, expired, or was started in another browser',
  },
  OIDC_LOGIN_FAILED: { status: 400, title: "The identity provider's answer could not be verified" },
  OIDC_NOT_ALLOWED: { status: 403, title: 'This identity may not log in to this tailnet' },
  OIDC_LOGIN_EXPIRED: { status: 400, title: "The identity provider's login has expired; start again" },
  CSRF_INVALID: { status: 403, title: 'The confirmation form is invalid, expired or from another browser' },
  DNS_CHANGED: { status: 412, title: 'The DNS settings changed since they were read' },
  DATABASE_UNAVAILABLE: { status: 503, title: 'The database cannot be reached' },
  INTERNAL: { status: 500, title: 'Internal server error' },
} as const satisfies Record<string, { status: number; title: string }>;

export type ErrorCode = keyof typeof ERROR_CATALOGUE;

/** An expected failure with a catalogued code; `message` is one sentence fit to show a user. */
export class WeftError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'WeftError';
    this.code = code;
  }

  get status(): number {
    return ERROR_CATALOGUE[this.code].status;
  }
}

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && Object.hasOwn(ERROR_CATALOGUE, value);
}
