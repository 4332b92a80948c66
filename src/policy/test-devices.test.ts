import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { checkPolicy, PolicyError, type PolicyTailnet } from './index.ts';

const EMPTY: PolicyTailnet = { users: [], nodes: [] };
const OPTIONS = { serverUrl: 'https://weft.test' };

function policy(tests: unknown[]): string {
  return JSON.stringify({
    groups: { 'group:eng': ['alice@example.com', 'dave@'] },
    tagOwners: { 'tag:web': ['group:eng'] },
    acls: [
      { action: 'accept', src: ['alice@example.com'], dst: ['bob@example.com:22'] },
      { action: 'accept', src: ['group:eng'], dst: ['tag:web:443'] },
    ],
    tests,
  });
}

function failures(text: string, tailnet: PolicyTailnet = EMPTY): string[] {
  try {
    checkPolicy(text, tailnet, OPTIONS);
    return [];
  } catch (err) {
    assert.ok(err instanceof PolicyError);
    return [...err.failures];
  }
}

describe('policy tests about users, groups and tags without devices', () => {
  test('pass and fail as the rules say, on an empty tailnet', () => {
    assert.deepEqual(
      failures(
        policy([
          { src: 'alice@example.com', accept: ['bob@example.com:22'], deny: ['bob@example.com:80'] },
          { src: 'group:eng', accept: ['tag:web:443'], deny: ['tag:web:80', 'bob@example.com:22'] },
          { src: 'dave@', accept: ['tag:web:443'] },
        ]),
      ).length > 0,
      true,
      'dave is in group:eng but may not reach bob: the group test must fail',
    );
    assert.deepEqual(
      failures(
        policy([
          { src: 'alice@example.com', accept: ['bob@example.com:22'], deny: ['bob@example.com:80'] },
          { src: 'group:eng', accept: ['tag:web:443'], deny: ['tag:web:80'] },
          { src: 'dave@', accept: ['tag:web:443'], deny: ['bob@example.com:22'] },
        ]),
      ),
      [],
    );
    const refused = failures(policy([{ src: 'carol@example.com', accept: ['bob@example.com:22'] }]));
    assert.equal(refused.length, 1);
    assert.match(refused[0] ?? '', /carol@example\.com cannot reach bob@example\.com:22/);
  });

  test('real devices are used when they exist, stand-ins only for what has none', () => {
    const tailnet: PolicyTailnet = {
      users: [
        { id: 1, name: 'alice', email: 'alice@example.com' },
        { id: 2, name: 'bob', email: 'bob@example.com' },
      ],
      nodes: [
        {
          id: 1,
          ipv4: '100.127.255.254',
          ipv6: null,
          userId: 1,
          tags: [],
          advertisedRoutes: [],
          approvedRoutes: [],
        },
      ],
    };
    // bob has no device: a stand-in is made at an address alice's real node does not hold.
    assert.deepEqual(
      failures(policy([{ src: 'alice@example.com', accept: ['bob@example.com:22'] }]), tailnet),
      [],
    );
    assert.deepEqual(
      failures(
        policy([{ src: '100.127.255.254', accept: ['bob@example.com:22'], deny: ['bob@example.com:23'] }]),
        tailnet,
      ),
      [],
    );
  });

  test('an undefined tag in a test is still an error', () => {
    const refused = failures(policy([{ src: 'tag:nope', accept: ['bob@example.com:22'] }]));
    assert.match(refused[0] ?? '', /tag:nope/);
  });
});
