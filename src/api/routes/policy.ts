/**
 * `/api/v1/policy`: read the policy in force, replace it (database mode), or check one without
 * applying it. A refused policy answers 400 with POLICY_INVALID (line/column) or POLICY_TESTS_FAILED
 * (the failing tests) and changes nothing. GET carries an ETag; PUT honours If-Match (412 on a race).
 */
import type { FastifyInstance } from 'fastify';
import type { ActivePolicy, PolicyStore } from '../../state/policy.ts';
import type { RouteContext } from '../app.ts';
import { parseInput } from '../problems.ts';
import { type PolicyCheckJson, type PolicyJson, policyBody } from '../wire.ts';

/** Policies are bigger than the API's other bodies; Tailscale accepts about this much. */
export const POLICY_BODY_LIMIT = 1024 * 1024;

function policyJson(active: ActivePolicy): PolicyJson {
  return {
    policy: active.text,
    version: active.version,
    updatedAt: active.updatedAt?.toISOString() ?? null,
    author: active.author,
    mode: active.mode,
  };
}

export function registerPolicyRoutes(api: FastifyInstance, context: RouteContext, policy: PolicyStore): void {
  api.get('/policy', async (_request, reply) => {
    const active = policy.current;
    return reply.header('etag', active.etag).send(policyJson(active));
  });

  api.put('/policy', { bodyLimit: POLICY_BODY_LIMIT }, async (request, reply) => {
    const body = parseInput(policyBody, request.body, 'body');
    const ifMatch = request.headers['if-match'];
    const active = await policy.set(body.policy, context.callerOf(request), ifMatch);
    return reply.header('etag', active.etag).send(policyJson(active));
  });

  api.post('/policy/check', { bodyLimit: POLICY_BODY_LIMIT }, async (request): Promise<PolicyCheckJson> => {
    const body = parseInput(policyBody, request.body, 'body');
    const checked = policy.check(body.policy);
    return { ok: true, tests: checked.policy.tests.length + checked.policy.sshTests.length };
  });
}
