import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { PolicyError } from './api.ts';
import { formatGoDuration, parseGoDuration } from './godur.ts';
import { parsePolicy } from './parse.ts';

function rejects(text: string, message: string, line?: number, column?: number): void {
  assert.throws(
    () => parsePolicy(text),
    (err: unknown) => {
      assert.ok(err instanceof PolicyError, String(err));
      assert.equal(err.message, message);
      if (line !== undefined) assert.deepEqual(err.location, { line, column });
      return true;
    },
  );
}

describe('parsePolicy', () => {
  test('HuJSON: comments and trailing commas are fine, anything else is fatal with a location', () => {
    const policy = parsePolicy('{\n  // hello\n  "acls": [ /* x */ ],\n}');
    assert.equal(policy.rules.length, 0);
    rejects('{\n  "acls": [}\n}', 'invalid HuJSON: expected a value', 2, 12);
    rejects("{'acls': []}", 'invalid HuJSON: invalid character', 1, 2);
    rejects('{"acls": [], "acls": []}', 'duplicate key "acls"', 1, 14);
    rejects('[]', 'the policy must be a JSON object', 1, 1);
    rejects('', 'the policy is empty: write {} for a policy that allows nothing');
  });

  test("Tailscale's messages for invalid rules", () => {
    const owners = '"tagOwners": {"tag:server": []}';
    rejects('{"acls": [{"action": "deny", "src": ["*"], "dst": ["*:*"]}]}', 'action="deny" is not supported');
    rejects(
      '{"acls": [{"action": "accept", "src": ["tag:nope"], "dst": ["*:*"]}]}',
      'src=tag not found: "tag:nope"',
    );
    rejects(
      '{"acls": [{"action": "accept", "src": ["*"], "dst": ["tag:nope:22"]}]}',
      'dst="tag:nope": tag not found: "tag:nope"',
    );
    rejects(
      `{${owners}, "acls": [{"action": "accept", "src": ["*"], "dst": ["tag:server:ssh"]}]}`,
      'dst="tag:server:ssh": port range "ssh": invalid first integer',
    );
    rejects(
      '{"acls": [{"action": "accept", "src": ["*"], "dst": ["*:0"]}]}',
      `dst="*:0": port range "0": first port must be >0, or use '*' for wildcard`,
    );
    rejects(
      '{"acls": [{"action": "accept", "src": ["autogroup:self"], "dst": ["*:*"]}]}',
      '"autogroup:self" not valid on the src side of a rule',
    );
    rejects('{"grants": [{"src": ["*"], "dst": ["*"]}]}', 'ip and app can not both be empty');
    rejects(
      '{"grants": [{"src": ["*"], "dst": ["0.0.0.0/0"], "ip": ["*"]}]}',
      'dst "0.0.0.0/0": to allow all IP addresses, use "*" or "autogroup:internet"',
    );
    rejects(
      '{"groups": {"group:a": ["group:b"]}}',
      'groups["group:a"]: "group:b": group members cannot be recursive',
    );
    rejects(
      '{"tagOwners": {"tag:1x": []}}',
      `tagOwners["tag:1x"]: tag names must start with a letter, after 'tag:'`,
    );
    rejects(
      '{"ssh": [{"action": "ACCEPT", "src": ["*"], "dst": ["autogroup:self"], "users": ["root"]}]}',
      '"ACCEPT" is not a valid action',
    );
    rejects(
      '{"ssh": [{"action": "check", "checkPeriod": "200h", "src": ["*"], "dst": ["autogroup:self"], "users": ["root"]}]}',
      'checkPeriod 200h0m0s is above the max (168h)',
    );
    rejects('{"acl": []}', 'unknown field "acl"', 1, 2);
    rejects(
      '{"acls": [{"action": "accept", "src": ["nohost"], "dst": ["*:*"]}]}',
      'host not defined in policy: "nohost"',
    );
  });

  test('a policy without acls or grants gets the default rule; an empty acls list allows nothing', () => {
    assert.equal(parsePolicy('{}').rules.length, 1);
    assert.equal(parsePolicy('{"acls": []}').rules.length, 0);
  });

  test('Go durations round-trip the way Tailscale quotes them', () => {
    assert.equal(formatGoDuration(parseGoDuration('200h') ?? 0n), '200h0m0s');
    assert.equal(formatGoDuration(parseGoDuration('-1m') ?? 0n), '-1m0s');
    assert.equal(formatGoDuration(parseGoDuration('1.5s') ?? 0n), '1.5s');
    assert.equal(parseGoDuration('abc'), undefined);
  });
});
