/**
 * The OpenAPI 3.1 document of weft's REST API (`GET /api/v1/openapi.json`).
 *
 * Request schemas are the very zod schemas the routes validate with (wire.ts), turned into JSON Schema;
 * response schemas are written here against the JSON interfaces of wire.ts (`z.ZodType<UserJson>`), so
 * a field added to a response without its schema does not compile. A test checks that every route the
 * app serves under /api/v1 is in V1_ROUTES and the other way round, validates the document, and checks
 * real responses against these schemas.
 */
import { z } from 'zod';
import { ERROR_CATALOGUE, type ErrorCode } from '../types/errors.ts';
import { pageQuery, withPaging } from './paging.ts';
import {
  type ApiKeyJson,
  approveRoutesBody,
  authRegisterBody,
  authRejectBody,
  clientIdParams,
  createApiKeyBody,
  createOAuthClientBody,
  createPreAuthKeyBody,
  createUserBody,
  type DnsJson,
  dnsBody,
  expireKeyBody,
  expireNodeBody,
  type HealthJson,
  idParams,
  type NodeJson,
  nodeFilterQuery,
  nodeRegisterQuery,
  type OAuthClientJson,
  type PendingLoginJson,
  type PolicyCheckJson,
  type PolicyJson,
  type PreAuthKeyJson,
  type ProblemJson,
  policyBody,
  preAuthKeyFilterQuery,
  renameNodeParams,
  renameUserParams,
  setTagsBody,
  type UserJson,
  userFilterQuery,
} from './wire.ts';

const timestamp = z.iso.datetime({ offset: true });
const id = z
  .string()
  .regex(/^[1-9][0-9]*$/)
  .describe('decimal id');

export const userJsonSchema: z.ZodType<UserJson> = z.strictObject({
  id,
  name: z.string(),
  displayName: z.string(),
  email: z.string(),
  provider: z.string().describe('"" for users created by an admin, "oidc" for OIDC logins'),
  providerId: z.string().describe('OIDC: <issuer>/<subject>; "" otherwise'),
  profilePicUrl: z.string(),
  createdAt: timestamp,
});

export const preAuthKeyJsonSchema: z.ZodType<PreAuthKeyJson> = z.strictObject({
  id,
  prefix: z.string().describe('weft-auth-<prefix>: names the key, cannot be used to register'),
  key: z.string().optional().describe('the whole key; only in the response that created it'),
  user: userJsonSchema.nullable(),
  reusable: z.boolean(),
  ephemeral: z.boolean(),
  used: z.boolean(),
  expiration: timestamp,
  createdAt: timestamp,
  aclTags: z.array(z.string()),
});

export const nodeJsonSchema: z.ZodType<NodeJson> = z.strictObject({
  id,
  machineKey: z.string().startsWith('mkey:'),
  nodeKey: z.string().startsWith('nodekey:'),
  discoKey: z.string(),
  ipAddresses: z.array(z.string()),
  name: z.string(),
  givenName: z.string(),
  hostname: z.string(),
  fqdn: z.string(),
  user: userJsonSchema.nullable(),
  tags: z.array(z.string()),
  online: z.boolean(),
  lastSeen: timestamp.nullable(),
  expiry: timestamp.nullable().describe('null: the key never expires'),
  expired: z.boolean(),
  ephemeral: z.boolean(),
  registerMethod: z.string(),
  createdAt: timestamp,
  os: z.string(),
  clientVersion: z.string(),
  availableRoutes: z.array(z.string()),
  approvedRoutes: z.array(z.string()),
  subnetRoutes: z.array(z.string()),
  authorized: z.boolean().describe('false while the node waits for device approval'),
});

export const apiKeyJsonSchema: z.ZodType<ApiKeyJson> = z.strictObject({
  id,
  prefix: z.string(),
  user: userJsonSchema.nullable().describe('whose untagged auth keys it mints through API v2'),
  expiration: timestamp,
  createdAt: timestamp,
  lastSeen: timestamp.nullable(),
});

export const pendingLoginJsonSchema: z.ZodType<PendingLoginJson> = z.strictObject({
  id: z.string().describe('the id in the AuthURL /register/<id>'),
  hostname: z.string(),
  os: z.string(),
  machineKey: z.string().startsWith('mkey:'),
  nodeKey: z.string().startsWith('nodekey:'),
  createdAt: timestamp,
  expiresAt: timestamp,
});

export const oauthClientJsonSchema: z.ZodType<OAuthClientJson> = z.strictObject({
  id: z.string().describe('the client id'),
  scopes: z.array(z.string()),
  tags: z.array(z.string()),
  description: z.string(),
  createdAt: timestamp,
  createdBy: z.string().nullable(),
});

const errorCodes = Object.keys(ERROR_CATALOGUE) as [ErrorCode, ...ErrorCode[]];

export const problemJsonSchema: z.ZodType<ProblemJson> = z.strictObject({
  status: z.number().int(),
  code: z.enum(errorCodes).describe('stable error code from the catalogue'),
  title: z.string(),
  detail: z.string().describe('one sentence for the person who made the request'),
  line: z.number().int().optional(),
  column: z.number().int().optional(),
  failures: z.array(z.string()).optional(),
});

export const policyJsonSchema: z.ZodType<PolicyJson> = z.strictObject({
  policy: z.string(),
  version: z.number().int(),
  updatedAt: timestamp.nullable(),
  author: z.string().nullable(),
  mode: z.enum(['database', 'file']),
});

const policyCheckJsonSchema: z.ZodType<PolicyCheckJson> = z.strictObject({
  ok: z.literal(true),
  tests: z.number().int(),
});

const dnsRecord = z.strictObject({ name: z.string(), type: z.enum(['A', 'AAAA']), value: z.string() });
export const dnsJsonSchema: z.ZodType<DnsJson> = z.strictObject({
  magicDns: z.boolean(),
  baseDomain: z.string(),
  nameservers: z.strictObject({
    global: z.array(z.string()),
    split: z.record(z.string(), z.array(z.string())),
  }),
  searchDomains: z.array(z.string()),
  extraRecords: z.array(dnsRecord),
});

const healthCheck = z.strictObject({ status: z.enum(['pass', 'fail']), output: z.string().optional() });
const healthJsonSchema: z.ZodType<HealthJson> = z.strictObject({
  status: z.enum(['pass', 'fail']),
  checks: z.record(z.string(), healthCheck),
});

const nextPageToken = z.string().optional().describe('present when there are more; pass as pageToken');
const empty = z.strictObject({});

/** One route of the document. Ids of errors are catalogue codes the route can answer with. */
export interface RouteDoc {
  summary: string;
  tag: string;
  params?: z.ZodType;
  query?: z.ZodType;
  body?: z.ZodType;
  response: z.ZodType;
  errors?: ErrorCode[];
  /** Served without an API key. */
  public?: boolean;
}

/** Every route under /api/v1 ("METHOD /path" with Fastify's `:param` syntax). */
export const V1_ROUTES: Record<string, RouteDoc> = {
  'GET /api/v1/openapi.json': {
    summary: 'This document',
    tag: 'meta',
    response: z.looseObject({ openapi: z.string() }),
    public: true,
  },
  'GET /api/v1/user': {
    summary: 'List users (filter by id, name or email)',
    tag: 'users',
    query: withPaging(userFilterQuery),
    response: z.strictObject({ users: z.array(userJsonSchema), nextPageToken }),
  },
  'POST /api/v1/user': {
    summary: 'Create a user',
    tag: 'users',
    body: createUserBody,
    response: z.strictObject({ user: userJsonSchema }),
    errors: ['USER_EXISTS'],
  },
  'POST /api/v1/user/:id/rename/:newName': {
    summary: 'Rename a user',
    tag: 'users',
    params: renameUserParams,
    response: z.strictObject({ user: userJsonSchema }),
    errors: ['USER_NOT_FOUND', 'USER_EXISTS'],
  },
  'DELETE /api/v1/user/:id': {
    summary: 'Delete a user that owns no nodes',
    tag: 'users',
    params: idParams,
    response: empty,
    errors: ['USER_NOT_FOUND', 'USER_HAS_NODES'],
  },
  'GET /api/v1/preauthkey': {
    summary: 'List pre-auth keys (prefixes only)',
    tag: 'preauthkeys',
    query: withPaging(preAuthKeyFilterQuery),
    response: z.strictObject({ preAuthKeys: z.array(preAuthKeyJsonSchema), nextPageToken }),
    errors: ['USER_NOT_FOUND'],
  },
  'POST /api/v1/preauthkey': {
    summary: 'Create a pre-auth key (the whole key is in this response only)',
    tag: 'preauthkeys',
    body: createPreAuthKeyBody,
    response: z.strictObject({ preAuthKey: preAuthKeyJsonSchema }),
    errors: ['USER_NOT_FOUND', 'RATE_LIMITED'],
  },
  'POST /api/v1/preauthkey/expire': {
    summary: 'Expire a pre-auth key now',
    tag: 'preauthkeys',
    body: expireKeyBody,
    response: z.strictObject({ preAuthKey: preAuthKeyJsonSchema }),
    errors: ['PREAUTHKEY_NOT_FOUND', 'PREAUTHKEY_AMBIGUOUS', 'PREAUTHKEY_EXPIRED'],
  },
  'GET /api/v1/node': {
    summary: 'List nodes (optionally of one user)',
    tag: 'nodes',
    query: withPaging(nodeFilterQuery),
    response: z.strictObject({ nodes: z.array(nodeJsonSchema), nextPageToken }),
    errors: ['USER_NOT_FOUND'],
  },
  'GET /api/v1/node/:id': {
    summary: 'Show a node',
    tag: 'nodes',
    params: idParams,
    response: z.strictObject({ node: nodeJsonSchema }),
    errors: ['NODE_NOT_FOUND'],
  },
  'DELETE /api/v1/node/:id': {
    summary: 'Delete a node (its client is logged out)',
    tag: 'nodes',
    params: idParams,
    response: empty,
    errors: ['NODE_NOT_FOUND'],
  },
  'POST /api/v1/node/:id/expire': {
    summary: "Expire a node's key now, at a given time, or never (expiry: null)",
    tag: 'nodes',
    params: idParams,
    body: expireNodeBody,
    response: z.strictObject({ node: nodeJsonSchema }),
    errors: ['NODE_NOT_FOUND'],
  },
  'POST /api/v1/node/:id/approve_routes': {
    summary: 'Set the approved routes of a node (the whole list)',
    tag: 'nodes',
    params: idParams,
    body: approveRoutesBody,
    response: z.strictObject({ node: nodeJsonSchema }),
    errors: ['NODE_NOT_FOUND', 'ROUTE_NOT_ADVERTISED'],
  },
  'POST /api/v1/node/:id/tags': {
    summary: 'Set the tags of a node (the policy must allow them)',
    tag: 'nodes',
    params: idParams,
    body: setTagsBody,
    response: z.strictObject({ node: nodeJsonSchema }),
    errors: ['NODE_NOT_FOUND'],
  },
  'POST /api/v1/node/:id/rename/:newName': {
    summary: 'Rename a node (its MagicDNS name)',
    tag: 'nodes',
    params: renameNodeParams,
    response: z.strictObject({ node: nodeJsonSchema }),
    errors: ['NODE_NOT_FOUND', 'NODE_NAME_TAKEN'],
  },
  'POST /api/v1/node/:id/approve': {
    summary: 'Approve a device waiting for device approval (node.device_approval)',
    tag: 'nodes',
    params: idParams,
    response: z.strictObject({ node: nodeJsonSchema }),
    errors: ['NODE_NOT_FOUND'],
  },
  'GET /api/v1/auth/pending': {
    summary: 'Interactive logins waiting to be completed',
    tag: 'logins',
    response: z.strictObject({ logins: z.array(pendingLoginJsonSchema) }),
  },
  'POST /api/v1/auth/register': {
    summary: 'Complete an interactive login for a user (the waiting client proceeds)',
    tag: 'logins',
    body: authRegisterBody,
    response: z.strictObject({ node: nodeJsonSchema }),
    errors: ['LOGIN_NOT_FOUND', 'USER_NOT_FOUND'],
  },
  'POST /api/v1/node/register': {
    summary: "Complete an interactive login (Headscale's older path: ?user=&key=)",
    tag: 'logins',
    query: nodeRegisterQuery,
    response: z.strictObject({ node: nodeJsonSchema }),
    errors: ['LOGIN_NOT_FOUND', 'USER_NOT_FOUND'],
  },
  'POST /api/v1/auth/reject': {
    summary: 'Reject an interactive login (the client shows why)',
    tag: 'logins',
    body: authRejectBody,
    response: empty,
    errors: ['LOGIN_NOT_FOUND'],
  },
  'GET /api/v1/oauthclient': {
    summary: 'List OAuth clients (for the Tailscale API v2 at /api/v2)',
    tag: 'oauth',
    response: z.strictObject({ oauthClients: z.array(oauthClientJsonSchema) }),
  },
  'POST /api/v1/oauthclient': {
    summary: 'Create an OAuth client (the secret is in this response only)',
    tag: 'oauth',
    body: createOAuthClientBody,
    response: z.strictObject({ oauthClient: oauthClientJsonSchema, secret: z.string() }),
    errors: ['RATE_LIMITED'],
  },
  'DELETE /api/v1/oauthclient/:id': {
    summary: 'Delete an OAuth client and revoke its tokens',
    tag: 'oauth',
    params: clientIdParams,
    response: empty,
  },
  'GET /api/v1/apikey': {
    summary: 'List API keys (prefixes only)',
    tag: 'apikeys',
    query: pageQuery,
    response: z.strictObject({ apiKeys: z.array(apiKeyJsonSchema), nextPageToken }),
  },
  'POST /api/v1/apikey': {
    summary: 'Create an API key (shown in this response only)',
    tag: 'apikeys',
    body: createApiKeyBody,
    response: z.strictObject({ apiKey: z.string() }),
    errors: ['RATE_LIMITED'],
  },
  'POST /api/v1/apikey/expire': {
    summary: 'Expire an API key now',
    tag: 'apikeys',
    body: expireKeyBody,
    response: z.strictObject({ apiKey: apiKeyJsonSchema }),
    errors: ['APIKEY_NOT_FOUND', 'APIKEY_AMBIGUOUS', 'APIKEY_EXPIRED'],
  },
  'GET /api/v1/policy': {
    summary: 'The policy in force (HuJSON text) with its ETag',
    tag: 'policy',
    response: policyJsonSchema,
  },
  'PUT /api/v1/policy': {
    summary: 'Replace the policy (database mode); If-Match guards against lost updates',
    tag: 'policy',
    body: policyBody,
    response: policyJsonSchema,
    errors: ['POLICY_INVALID', 'POLICY_TESTS_FAILED', 'POLICY_FILE_MODE', 'POLICY_CHANGED'],
  },
  'POST /api/v1/policy/check': {
    summary: 'Validate a policy and run its tests without applying it',
    tag: 'policy',
    body: policyBody,
    response: policyCheckJsonSchema,
    errors: ['POLICY_INVALID', 'POLICY_TESTS_FAILED'],
  },
  'GET /api/v1/dns': {
    summary: "The tailnet's DNS settings",
    tag: 'dns',
    response: dnsJsonSchema,
  },
  'PUT /api/v1/dns': {
    summary: 'Replace the editable DNS settings (pushed to connected clients at once)',
    tag: 'dns',
    body: dnsBody,
    response: dnsJsonSchema,
    errors: ['DNS_CHANGED'],
  },
};

/** Fastify's `/user/:id` → OpenAPI's `/user/{id}`. */
function openApiPath(path: string): string {
  return path.replace(/:([A-Za-z_]+)/g, '{$1}');
}

function jsonSchema(schema: z.ZodType, io: 'input' | 'output'): Record<string, unknown> {
  const { $schema: _drop, ...rest } = z.toJSONSchema(schema, { io, unrepresentable: 'any' }) as Record<
    string,
    unknown
  >;
  return rest;
}

/** Path or query parameters from an object schema: one entry per property. */
function parameters(schema: z.ZodType | undefined, where: 'path' | 'query'): unknown[] {
  if (schema === undefined) return [];
  const object = jsonSchema(schema, 'input') as {
    properties?: Record<string, unknown>;
    required?: string[];
  };
  return Object.entries(object.properties ?? {}).map(([name, property]) => ({
    name,
    in: where,
    required: where === 'path' || (object.required ?? []).includes(name),
    schema: property,
  }));
}

const problemResponse = { $ref: '#/components/responses/Problem' };

function operation(key: string, doc: RouteDoc): Record<string, unknown> {
  const codes = new Set<ErrorCode>(['BAD_REQUEST', ...(doc.errors ?? [])]);
  if (!doc.public) codes.add('UNAUTHENTICATED');
  const errors: Record<string, unknown> = {};
  for (const code of codes) errors[String(ERROR_CATALOGUE[code].status)] = problemResponse;
  return {
    operationId: key.replace(/[^A-Za-z0-9]+/g, '_').replace(/^_|_$/g, ''),
    summary: doc.summary,
    tags: [doc.tag],
    ...(doc.public ? { security: [] } : {}),
    parameters: [...parameters(doc.params, 'path'), ...parameters(doc.query, 'query')],
    ...(doc.body === undefined
      ? {}
      : {
          requestBody: {
            required: !doc.body.safeParse(undefined).success,
            content: { 'application/json': { schema: jsonSchema(doc.body, 'input') } },
          },
        }),
    responses: {
      '200': {
        description: 'OK',
        content: { 'application/json': { schema: jsonSchema(doc.response, 'output') } },
      },
      ...errors,
    },
    'x-error-codes': [...codes],
  };
}

export function openApiDocument(options: { version: string; serverUrl?: string }): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const [key, doc] of Object.entries(V1_ROUTES)) {
    const [method = '', path = ''] = key.split(' ');
    const at = openApiPath(path);
    paths[at] = { ...paths[at], [method.toLowerCase()]: operation(key, doc) };
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'weft REST API',
      version: options.version,
      description:
        'Manage a weft tailnet: users, nodes, pre-auth keys, API keys, policy and DNS. Authenticate with an API key as "Authorization: Bearer <key>" (or HTTP Basic with the key as the user name). Errors are RFC 7807 problem documents with a stable code from one catalogue.',
    },
    ...(options.serverUrl === undefined ? {} : { servers: [{ url: options.serverUrl }] }),
    security: [{ bearer: [] }, { basic: [] }],
    paths,
    components: {
      securitySchemes: {
        bearer: { type: 'http', scheme: 'bearer', description: 'weft-api-… key from weft apikeys create' },
        basic: { type: 'http', scheme: 'basic', description: 'the API key as the user name, no password' },
      },
      schemas: {
        Problem: jsonSchema(problemJsonSchema, 'output'),
        Health: jsonSchema(healthJsonSchema, 'output'),
      },
      responses: {
        Problem: {
          description: 'A problem document; `code` says which error of the catalogue it is',
          content: { 'application/problem+json': { schema: { $ref: '#/components/schemas/Problem' } } },
        },
      },
    },
  };
}
