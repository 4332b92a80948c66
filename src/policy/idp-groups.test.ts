// Groups from an identity provider (oidc.policy_groups): a user whose PolicyUser.groups holds `eng` is
// a member of `group:eng` when the policy declares that group, on top of its listed members.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { compilePolicy, deniedTags, type PolicyNode, type PolicyTailnet, parsePolicy } from './index.ts';

const OPTIONS = { serverUrl: 'https://weft.test' };

function node(id: number, userId: number | null, tags: string[] = []): PolicyNode {
  return { id, ipv4: `100.64.0.${id}`, ipv6: null, userId, tags, advertisedRoutes: [], approvedRoutes: [] };
}

/** alice (IdP groups eng, vpn), bob (listed in group:eng), carol (IdP group ops), and a server. */
const TAILNET: PolicyTailnet = {
  users: [
    { id: 1, name: 'alice', email: 'alice@example.com', groups: ['eng', 'vpn'] },
    { id: 2, name: 'bob', email: 'bob@example.com' },
    { id: 3, name: 'carol', email: 'carol@example.com', groups: ['ops'] },
  ],
  nodes: [node(1, 1), node(2, 2), node(3, 3), node(4, null, ['tag:srv'])],
};

function reachers(policyText: string, target = 4): number[] {
  const compiled = compilePolicy(parsePolicy(policyText), TAILNET, OPTIONS);
  return [1, 2, 3].filter((id) => compiled.peersOf(target).has(id) && compiled.peersOf(id).has(target));
}

describe('identity-provider groups in the policy', () => {
  test('a declared group has its listed members and the users the provider put in it', () => {
    const policy = JSON.stringify({
      groups: { 'group:eng': ['bob@example.com'] },
      tagOwners: { 'tag:srv': [] },
      acls: [{ action: 'accept', src: ['group:eng'], dst: ['tag:srv:22'] }],
    });
    assert.deepEqual(reachers(policy), [1, 2]);
  });

  test('a group declared empty is filled by the provider alone', () => {
    const policy = JSON.stringify({
      groups: { 'group:ops': [] },
      tagOwners: { 'tag:srv': [] },
      acls: [{ action: 'accept', src: ['group:ops'], dst: ['tag:srv:22'] }],
    });
    assert.deepEqual(reachers(policy), [3]);
  });

  test('a group only the provider knows cannot be used: the policy must declare it', () => {
    const policy = JSON.stringify({
      tagOwners: { 'tag:srv': [] },
      acls: [{ action: 'accept', src: ['group:vpn'], dst: ['tag:srv:22'] }],
    });
    assert.throws(() => parsePolicy(policy), /group not defined in policy: "group:vpn"/);
  });

  test('names match exactly: `group:Eng` is not the provider group `eng`', () => {
    const policy = JSON.stringify({
      groups: { 'group:Eng': [] },
      tagOwners: { 'tag:srv': [] },
      acls: [{ action: 'accept', src: ['group:Eng'], dst: ['tag:srv:22'] }],
    });
    assert.deepEqual(reachers(policy), []);
  });

  test('provider groups own tags through the group', () => {
    const policy = parsePolicy(
      JSON.stringify({ groups: { 'group:eng': [] }, tagOwners: { 'tag:web': ['group:eng'] } }),
    );
    assert.deepEqual(deniedTags(policy, TAILNET, { userId: 1, tags: [] }, ['tag:web']), []);
    assert.deepEqual(deniedTags(policy, TAILNET, { userId: 3, tags: [] }, ['tag:web']), ['tag:web']);
  });
});
