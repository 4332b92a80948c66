/**
 * Property tests: arbitrary text and arbitrary well-shaped policies never crash the engine (only
 * PolicyError comes out), and every packet rule a node receives is backed by a rule of the policy.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { PolicyError, type PolicyTailnet } from './api.ts';
import { compilePolicy } from './compile.ts';
import { parsePolicy } from './parse.ts';

const TAILNET: PolicyTailnet = {
  users: [
    { id: 1, name: 'alice', email: 'alice@example.com' },
    { id: 2, name: 'bob', email: '' },
  ],
  nodes: [
    {
      id: 1,
      ipv4: '100.64.0.1',
      ipv6: 'fd7a:115c:a1e0::1',
      userId: 1,
      tags: [],
      advertisedRoutes: [],
      approvedRoutes: [],
    },
    {
      id: 2,
      ipv4: '100.64.0.2',
      ipv6: 'fd7a:115c:a1e0::2',
      userId: 2,
      tags: [],
      advertisedRoutes: [],
      approvedRoutes: [],
    },
    {
      id: 3,
      ipv4: '100.64.0.3',
      ipv6: 'fd7a:115c:a1e0::3',
      userId: 1,
      tags: ['tag:server'],
      advertisedRoutes: ['10.1.0.0/16', '0.0.0.0/0', '::/0'],
      approvedRoutes: ['10.1.0.0/16', '0.0.0.0/0', '::/0'],
    },
  ],
};

function onlyPolicyErrors(run: () => unknown): void {
  try {
    run();
  } catch (err) {
    if (!(err instanceof PolicyError)) throw err;
  }
}

const SOURCES = [
  '*',
  'alice@example.com',
  'bob@',
  'group:eng',
  'tag:server',
  'autogroup:member',
  'autogroup:tagged',
  '10.1.2.0/24',
  '100.64.0.2',
  'web',
];
const HOSTS = [
  '*',
  'alice@example.com',
  'group:eng',
  'tag:server',
  'autogroup:member',
  'autogroup:self',
  'autogroup:internet',
  '10.1.0.0/16',
  '100.64.0.1',
  'web',
  '[fd7a:115c:a1e0::2]',
];
const PORTS = ['*', '22', '80-443', '22,443', '1-65535', '0', 'ssh'];

const acl = fc.record({
  action: fc.constantFrom('accept', 'accept', 'deny'),
  src: fc.array(fc.constantFrom(...SOURCES), { maxLength: 3 }),
  dst: fc.array(
    fc.tuple(fc.constantFrom(...HOSTS), fc.constantFrom(...PORTS)).map(([h, p]) => `${h}:${p}`),
    { maxLength: 3 },
  ),
  proto: fc.option(fc.constantFrom('tcp', 'udp', 'icmp', '47', 'bogus'), { nil: undefined }),
});
const grant = fc.record({
  src: fc.array(fc.constantFrom(...SOURCES), { maxLength: 3 }),
  dst: fc.array(fc.constantFrom(...HOSTS.filter((h) => !h.startsWith('['))), { maxLength: 3 }),
  ip: fc.array(fc.constantFrom('*', '22', 'tcp:443', 'icmp:*', 'udp:53', 'icmp'), { maxLength: 2 }),
  via: fc.option(fc.constant(['tag:server']), { nil: undefined }),
});
const policyShape = fc.record({
  groups: fc.constant({ 'group:eng': ['alice@example.com', 'nobody@example.com'] }),
  hosts: fc.constant({ web: '100.64.0.2' }),
  tagOwners: fc.constant({ 'tag:server': ['alice@example.com'] }),
  acls: fc.array(acl, { maxLength: 4 }),
  grants: fc.array(grant, { maxLength: 3 }),
});

describe('policy fuzzing', () => {
  test('random text and random HuJSON never crash the parser', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string(),
          fc.json(),
          fc.jsonValue().map((v) => JSON.stringify({ acls: v })),
        ),
        (text) =>
          onlyPolicyErrors(() => compilePolicy(parsePolicy(text), TAILNET, { serverUrl: 'https://weft' })),
      ),
      { numRuns: 500 },
    );
  });

  test('well-shaped policies compile, every rule a node gets is backed by the policy, and peersOf agrees with canSee', () => {
    fc.assert(
      fc.property(policyShape, (shape) => {
        let policy: ReturnType<typeof parsePolicy>;
        try {
          policy = parsePolicy(JSON.stringify(shape));
        } catch (err) {
          if (err instanceof PolicyError) return;
          throw err;
        }
        const compiled = compilePolicy(policy, TAILNET, { serverUrl: 'https://weft' });
        const declaredPorts = new Set(['0-65535']);
        for (const rule of shape.acls)
          for (const d of rule.dst)
            for (const part of d.slice(d.lastIndexOf(':') + 1).split(','))
              declaredPorts.add(part.includes('-') ? part : `${part}-${part}`);
        for (const g of shape.grants)
          for (const ip of g.ip) {
            const p = ip.includes(':') ? ip.slice(ip.indexOf(':') + 1) : ip;
            if (p !== '*') declaredPorts.add(p.includes('-') ? p : `${p}-${p}`);
          }
        for (const node of TAILNET.nodes) {
          for (const rule of compiled.forNode(node.id).packetFilter) {
            assert.ok(rule.SrcIPs.length > 0, 'a rule always has sources');
            assert.ok(
              (rule.DstPorts?.length ?? 0) > 0 || (rule.CapGrant?.length ?? 0) > 0,
              'and something it allows',
            );
            for (const dst of rule.DstPorts ?? []) {
              const ports = `${dst.Ports.First}-${dst.Ports.Last}`;
              assert.ok(declaredPorts.has(ports), `port range ${ports} was never written in the policy`);
            }
          }
          const seen: number[] = [];
          for (const other of TAILNET.nodes) {
            assert.equal(compiled.canSee(node.id, other.id), compiled.canSee(other.id, node.id));
            if (compiled.canSee(node.id, other.id)) seen.push(other.id);
          }
          assert.deepEqual(
            [...compiled.peersOf(node.id)],
            seen.sort((a, b) => a - b),
            'peersOf is canSee',
          );
        }
      }),
      { numRuns: 300 },
    );
  });
});
