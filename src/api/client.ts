/**
 * A small client for weft's REST API, used by the CLI. It talks either to the local admin socket
 * (no key needed) or to a server URL with a bearer API key. node:http is used rather than fetch
 * because fetch cannot reach a unix socket without an extra dependency.
 */
import { request as httpRequest, type IncomingHttpHeaders, type RequestOptions } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { isErrorCode } from '../types/errors.ts';
import type {
  ApiKeyJson,
  DnsJson,
  DnsSettingsJson,
  NodeJson,
  OAuthClientJson,
  PendingLoginJson,
  PolicyCheckJson,
  PolicyJson,
  PreAuthKeyJson,
  ProblemJson,
  UserJson,
} from './wire.ts';

export type ApiTarget = { socketPath: string } | { url: string; apiKey: string };

/** The server answered with a problem document, or could not be reached at all. */
export class ApiError extends Error {
  readonly status: number | undefined;
  readonly code: string;

  constructor(message: string, code: string, status?: number) {
    super(message);
    this.name = 'ApiError';
    this.code = code;
    this.status = status;
  }
}

/** Largest response body the client will read; listings of many thousands of objects fit easily. */
const MAX_RESPONSE_BYTES = 64 * 1024 * 1024;

export class ApiClient {
  readonly #target: ApiTarget;
  readonly #timeoutMs: number;

  constructor(target: ApiTarget, options: { timeoutMs?: number } = {}) {
    this.#target = target;
    this.#timeoutMs = options.timeoutMs ?? 10_000;
  }

  /** Where requests go, for error messages. */
  describeTarget(): string {
    return 'socketPath' in this.#target
      ? `the local weft socket ${this.#target.socketPath}`
      : this.#target.url;
  }

  listUsers(filter: { name?: string; email?: string; id?: string } = {}): Promise<UserJson[]> {
    return this.#call<{ users: UserJson[] }>('GET', `/api/v1/user${query(filter)}`).then((r) => r.users);
  }

  createUser(body: { name: string; displayName?: string; email?: string }): Promise<UserJson> {
    return this.#call<{ user: UserJson }>('POST', '/api/v1/user', body).then((r) => r.user);
  }

  renameUser(id: string, newName: string): Promise<UserJson> {
    const path = `/api/v1/user/${encodeURIComponent(id)}/rename/${encodeURIComponent(newName)}`;
    return this.#call<{ user: UserJson }>('POST', path).then((r) => r.user);
  }

  deleteUser(id: string): Promise<void> {
    return this.#call('DELETE', `/api/v1/user/${encodeURIComponent(id)}`).then(() => undefined);
  }

  listPreAuthKeys(filter: { user?: string } = {}): Promise<PreAuthKeyJson[]> {
    return this.#call<{ preAuthKeys: PreAuthKeyJson[] }>('GET', `/api/v1/preauthkey${query(filter)}`).then(
      (r) => r.preAuthKeys,
    );
  }

  createPreAuthKey(body: {
    user: string;
    reusable: boolean;
    ephemeral: boolean;
    expiration: string;
    aclTags: string[];
  }): Promise<PreAuthKeyJson> {
    return this.#call<{ preAuthKey: PreAuthKeyJson }>('POST', '/api/v1/preauthkey', body).then(
      (r) => r.preAuthKey,
    );
  }

  expirePreAuthKey(prefix: string): Promise<PreAuthKeyJson> {
    return this.#call<{ preAuthKey: PreAuthKeyJson }>('POST', '/api/v1/preauthkey/expire', { prefix }).then(
      (r) => r.preAuthKey,
    );
  }

  listNodes(filter: { user?: string } = {}): Promise<NodeJson[]> {
    return this.#call<{ nodes: NodeJson[] }>('GET', `/api/v1/node${query(filter)}`).then((r) => r.nodes);
  }

  getNode(id: string): Promise<NodeJson> {
    return this.#call<{ node: NodeJson }>('GET', `/api/v1/node/${encodeURIComponent(id)}`).then(
      (r) => r.node,
    );
  }

  deleteNode(id: string): Promise<void> {
    return this.#call('DELETE', `/api/v1/node/${encodeURIComponent(id)}`).then(() => undefined);
  }

  /** No `expiry`: expire now. A time: expire then. null: never expire. */
  expireNode(id: string, expiry?: Date | null): Promise<NodeJson> {
    const body = expiry === undefined ? undefined : { expiry: expiry?.toISOString() ?? null };
    return this.#call<{ node: NodeJson }>('POST', `/api/v1/node/${encodeURIComponent(id)}/expire`, body).then(
      (r) => r.node,
    );
  }

  /** Sets the node's whole list of approved routes. */
  approveRoutes(id: string, routes: string[]): Promise<NodeJson> {
    const path = `/api/v1/node/${encodeURIComponent(id)}/approve_routes`;
    return this.#call<{ node: NodeJson }>('POST', path, { routes }).then((r) => r.node);
  }

  /** Device approval: lets a node that waits for it into the tailnet. */
  approveNode(id: string): Promise<NodeJson> {
    const path = `/api/v1/node/${encodeURIComponent(id)}/approve`;
    return this.#call<{ node: NodeJson }>('POST', path).then((r) => r.node);
  }

  setNodeTags(id: string, tags: string[]): Promise<NodeJson> {
    const path = `/api/v1/node/${encodeURIComponent(id)}/tags`;
    return this.#call<{ node: NodeJson }>('POST', path, { tags }).then((r) => r.node);
  }

  renameNode(id: string, newName: string): Promise<NodeJson> {
    const path = `/api/v1/node/${encodeURIComponent(id)}/rename/${encodeURIComponent(newName)}`;
    return this.#call<{ node: NodeJson }>('POST', path).then((r) => r.node);
  }

  listApiKeys(): Promise<ApiKeyJson[]> {
    return this.#call<{ apiKeys: ApiKeyJson[] }>('GET', '/api/v1/apikey').then((r) => r.apiKeys);
  }

  createApiKey(expiration: string, user?: string): Promise<string> {
    const body = user === undefined ? { expiration } : { expiration, user };
    return this.#call<{ apiKey: string }>('POST', '/api/v1/apikey', body).then((r) => r.apiKey);
  }

  expireApiKey(prefix: string): Promise<ApiKeyJson> {
    return this.#call<{ apiKey: ApiKeyJson }>('POST', '/api/v1/apikey/expire', { prefix }).then(
      (r) => r.apiKey,
    );
  }

  listOAuthClients(): Promise<OAuthClientJson[]> {
    return this.#call<{ oauthClients: OAuthClientJson[] }>('GET', '/api/v1/oauthclient').then(
      (r) => r.oauthClients,
    );
  }

  /** Creates an OAuth client; the answer holds its secret, the only time it is shown. */
  createOAuthClient(body: {
    scopes: string[];
    tags: string[];
    description?: string;
  }): Promise<{ oauthClient: OAuthClientJson; secret: string }> {
    return this.#call('POST', '/api/v1/oauthclient', body);
  }

  deleteOAuthClient(id: string): Promise<void> {
    return this.#call('DELETE', `/api/v1/oauthclient/${encodeURIComponent(id)}`).then(() => undefined);
  }

  getPolicy(): Promise<PolicyJson> {
    return this.#call<PolicyJson>('GET', '/api/v1/policy');
  }

  /** Replaces the policy; `ifMatch` refuses the change if the policy changed since it was read. */
  setPolicy(policy: string, ifMatch?: string): Promise<PolicyJson> {
    const headers: Record<string, string> = ifMatch === undefined ? {} : { 'if-match': ifMatch };
    return this.#call<PolicyJson>('PUT', '/api/v1/policy', { policy }, headers);
  }

  checkPolicy(policy: string): Promise<PolicyCheckJson> {
    return this.#call<PolicyCheckJson>('POST', '/api/v1/policy/check', { policy });
  }

  getDns(): Promise<DnsJson> {
    return this.#call<DnsJson>('GET', '/api/v1/dns');
  }

  /** The DNS settings with their ETag, for a read-modify-write through `setDns(…, etag)`. */
  async getDnsVersioned(): Promise<{ dns: DnsJson; etag: string | undefined }> {
    let etag: string | undefined;
    const dns = await this.#call<DnsJson>('GET', '/api/v1/dns', undefined, {}, (headers) => {
      etag = typeof headers.etag === 'string' ? headers.etag : undefined;
    });
    return { dns, etag };
  }

  /**
   * Replaces the editable DNS settings (every field); connected clients get them at once. `ifMatch`
   * refuses the change (DNS_CHANGED) if the settings changed since they were read.
   */
  setDns(settings: DnsSettingsJson, ifMatch?: string): Promise<DnsJson> {
    const headers: Record<string, string> = ifMatch === undefined ? {} : { 'if-match': ifMatch };
    return this.#call<DnsJson>('PUT', '/api/v1/dns', settings, headers);
  }

  /** Interactive logins waiting to be completed. */
  listPendingLogins(): Promise<PendingLoginJson[]> {
    return this.#call<{ logins: PendingLoginJson[] }>('GET', '/api/v1/auth/pending').then((r) => r.logins);
  }

  /** Completes a pending login for the user (by name); the waiting client proceeds. */
  completeLogin(authId: string, user: string): Promise<NodeJson> {
    return this.#call<{ node: NodeJson }>('POST', '/api/v1/auth/register', { authId, user }).then(
      (r) => r.node,
    );
  }

  /** Rejects a pending login; the waiting client shows that it was rejected. */
  rejectLogin(authId: string): Promise<void> {
    return this.#call('POST', '/api/v1/auth/reject', { authId }).then(() => undefined);
  }

  #call<T>(
    method: string,
    path: string,
    body?: unknown,
    extraHeaders: Record<string, string> = {},
    /** Sees the response headers (e.g. an ETag) before the body is decoded. */
    seeHeaders?: (headers: IncomingHttpHeaders) => void,
  ): Promise<T> {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const headers: Record<string, string> = { accept: 'application/json', ...extraHeaders };
    if (payload) {
      headers['content-type'] = 'application/json';
      headers['content-length'] = String(payload.length);
    }
    let options: RequestOptions;
    let send = httpRequest;
    if ('socketPath' in this.#target) {
      options = {
        socketPath: this.#target.socketPath,
        path,
        method,
        headers: { ...headers, host: 'localhost' },
      };
    } else {
      const base = new URL(this.#target.url);
      headers.authorization = `Bearer ${this.#target.apiKey}`;
      const basePath = base.pathname.replace(/\/+$/, '');
      options = {
        protocol: base.protocol,
        hostname: base.hostname,
        port: base.port,
        path: basePath + path,
        method,
        headers,
      };
      if (base.protocol === 'https:') send = httpsRequest;
    }
    return new Promise<T>((resolve, reject) => {
      const req = send({ ...options, timeout: this.#timeoutMs }, (res) => {
        seeHeaders?.(res.headers);
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > MAX_RESPONSE_BYTES) {
            req.destroy(
              new ApiError(
                `the response from ${this.describeTarget()} is too large`,
                'CLIENT_RESPONSE_TOO_LARGE',
              ),
            );
            return;
          }
          chunks.push(chunk);
        });
        res.on('end', () => {
          try {
            resolve(
              decodeResponse<T>(
                res.statusCode ?? 0,
                Buffer.concat(chunks).toString('utf8'),
                this.describeTarget(),
              ),
            );
          } catch (err) {
            reject(err);
          }
        });
        res.on('error', reject);
      });
      req.on('timeout', () =>
        req.destroy(
          new ApiError(
            `${this.describeTarget()} did not answer within ${this.#timeoutMs} ms`,
            'CLIENT_TIMEOUT',
          ),
        ),
      );
      req.on('error', (err: NodeJS.ErrnoException) => reject(connectionError(err, this.describeTarget())));
      req.end(payload);
    });
  }
}

function query(params: Record<string, string | undefined>): string {
  const entries = Object.entries(params).filter((e): e is [string, string] => e[1] !== undefined);
  return entries.length === 0 ? '' : `?${new URLSearchParams(entries).toString()}`;
}

function decodeResponse<T>(status: number, text: string, where: string): T {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new ApiError(
      `${where} answered HTTP ${status} with a body that is not JSON`,
      'CLIENT_BAD_RESPONSE',
      status,
    );
  }
  if (status >= 200 && status < 300) return json as T;
  const problem = json as Partial<ProblemJson>;
  const code = isErrorCode(problem.code) ? problem.code : 'CLIENT_BAD_RESPONSE';
  throw new ApiError(problem.detail ?? `${where} answered HTTP ${status}`, code, status);
}

function connectionError(err: NodeJS.ErrnoException, where: string): Error {
  if (err instanceof ApiError) return err;
  switch (err.code) {
    case 'ENOENT':
    case 'ECONNREFUSED':
      return new ApiError(
        `cannot reach ${where}; is weft serve running${where.startsWith('the local') ? ' with this data_dir' : ''}?`,
        'CLIENT_UNREACHABLE',
      );
    case 'EACCES':
      return new ApiError(
        `no permission to use ${where}; run as the user that runs weft serve`,
        'CLIENT_UNREACHABLE',
      );
    default:
      return new ApiError(`cannot reach ${where}: ${err.message}`, 'CLIENT_UNREACHABLE');
  }
}
