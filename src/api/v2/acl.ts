/**
 * The policy file: `GET/POST /tailnet/-/acl` and `POST /tailnet/-/acl/validate`, as Tailscale's Go
 * client and Terraform's `tailscale_acl` use them.
 *
 *   - GET with `Accept: application/hujson` returns the stored text unchanged (comments and all);
 *     otherwise the same policy as plain JSON. Both carry the policy's `ETag`.
 *   - POST takes HuJSON or JSON. `If-Match` guards it: the ETag read before, `*`, or `"ts-default"`,
 *     which matches only while the tailnet still has the built-in default policy (Terraform's create
 *     sends it so that an existing policy is never overwritten by accident). A mismatch is 412 with
 *     Tailscale's words. An empty body puts the default policy back.
 *   - validate answers 200 `{}`, or 200 with `message` (and the failed tests in `data`): the Go client
 *     reads a message in a 2xx answer as "invalid".
 * A refused policy changes nothing; its message keeps the line and column of the problem.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import jsonc from 'jsonc-parser';
import { ALLOW_ALL_POLICY_TEXT, PolicyError } from '../../policy/index.ts';
import type { ActivePolicy, PolicyStore } from '../../state/policy.ts';
import { POLICY_BODY_LIMIT } from '../routes/policy.ts';
import { bodyText } from './body.ts';
import { addRoute, type V2Context } from './context.ts';
import { v2ErrorFor } from './errors.ts';

const HUJSON = 'application/hujson';

function wantsHujson(request: FastifyRequest): boolean {
  return (request.headers.accept ?? '').toLowerCase().includes(HUJSON);
}

/** The policy as plain JSON (comments and trailing commas gone); it parsed when it was set. */
function asJson(text: string): string {
  return `${JSON.stringify(jsonc.parse(text, [], { allowTrailingComma: true }), null, 2)}\n`;
}

function sendPolicy(request: FastifyRequest, reply: FastifyReply, active: ActivePolicy): FastifyReply {
  void reply.header('etag', active.etag);
  if (wantsHujson(request)) return reply.type(HUJSON).send(active.text);
  return reply.type('application/json').send(asJson(active.text));
}

/** `"ts-default"` (quoted or bare), Tailscale's name for "the default policy nobody has changed". */
function isTsDefault(ifMatch: string): boolean {
  return ifMatch.trim().replace(/^"|"$/g, '') === 'ts-default';
}

/**
 * The If-Match PolicyStore.set should check: ts-default becomes the default policy's own ETag while
 * it is in force (so a change racing this request still fails), and an ETag that can never match
 * otherwise. Other values go through as they are. "In force" means the default text, whether nobody
 * ever set a policy or someone reset it (an empty POST, Terraform's reset_acl_on_destroy): after
 * `terraform destroy` a new `terraform apply` must be able to create the ACL again.
 */
function storeIfMatch(header: string | undefined, active: ActivePolicy): string | undefined {
  if (header === undefined || !isTsDefault(header)) return header;
  // The built-in default (version 0) has this text too.
  const isDefault = active.mode === 'database' && active.text === ALLOW_ALL_POLICY_TEXT;
  return isDefault ? active.etag : '"ts-default"';
}

export function registerAclRoutes(api: FastifyInstance, context: V2Context, policy: PolicyStore): void {
  addRoute(api, context, {
    method: 'GET',
    url: '/tailnet/:tailnet/acl',
    scope: 'policy_file:read',
    handler: async (request, reply) => sendPolicy(request, reply, policy.current),
  });

  addRoute(api, context, {
    method: 'POST',
    url: '/tailnet/:tailnet/acl',
    scope: 'policy_file',
    bodyLimit: POLICY_BODY_LIMIT,
    handler: async (request, reply) => {
      const text = bodyText(request);
      const next = text.trim() === '' ? ALLOW_ALL_POLICY_TEXT : text;
      const ifMatch = storeIfMatch(request.headers['if-match'], policy.current);
      const active = await policy.set(next, context.principalOf(request).caller, ifMatch);
      return sendPolicy(request, reply, active);
    },
  });

  addRoute(api, context, {
    method: 'POST',
    url: '/tailnet/:tailnet/acl/validate',
    scope: 'policy_file:read',
    bodyLimit: POLICY_BODY_LIMIT,
    handler: async (request) => {
      try {
        policy.check(bodyText(request));
        return {};
      } catch (err) {
        if (!(err instanceof PolicyError)) throw err;
        const { message, data } = v2ErrorFor(err);
        return data === undefined ? { message } : { message, data };
      }
    },
  });
}
