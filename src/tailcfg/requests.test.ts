import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { WeftError } from '../types/errors.ts';
import { DiscoPublic, NodePublic } from '../types/keys.ts';
import { MAX_LIST_ENTRIES, parseMapRequest, parseRegisterRequest, WireError } from './requests.ts';

const NODE_KEY = `nodekey:${'ab'.repeat(32)}`;
const ZERO_NODE_KEY = `nodekey:${'0'.repeat(64)}`;
const DISCO_KEY = `discokey:${'cd'.repeat(32)}`;
const NL_KEY = `nlpub:${'EF'.repeat(32)}`;

/** What tailscaled v1.80 sends on first login with --auth-key (field order and zero values as Go writes them). */
function registerFromV180(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    Version: 113,
    NodeKey: NODE_KEY,
    OldNodeKey: ZERO_NODE_KEY,
    NLKey: NL_KEY,
    Auth: { AuthKey: 'tskey-auth-abc123' },
    Expiry: '0001-01-01T00:00:00Z',
    Followup: '',
    Hostinfo: {
      IPNVersion: '1.80.0-tb2e5c8d1e',
      BackendLogID: '4c2a0f3e',
      OS: 'linux',
      OSVersion: '6.8.0-45-generic',
      Hostname: 'alpha',
      GoArch: 'amd64',
      GoVersion: 'go1.23.1',
      Userspace: true,
      UserspaceRouter: true,
      RoutableIPs: ['10.0.0.0/24'],
      RequestTags: ['tag:server'],
      NetInfo: { PreferredDERP: 0, WorkingUDP: null },
      IngressEnabled: false,
    },
    NodeKeySignature: null,
    ...overrides,
  };
}

/** A streaming map request from tailscaled v1.102. */
function mapFromV1102(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    Version: 142,
    Compress: 'zstd',
    KeepAlive: true,
    NodeKey: NODE_KEY,
    DiscoKey: DISCO_KEY,
    Stream: true,
    Hostinfo: {
      IPNVersion: '1.102.0',
      BackendLogID: '4c2a0f3e',
      OS: 'linux',
      Hostname: 'alpha',
      NetInfo: {
        PreferredDERP: 900,
        DERPLatency: { '900-v4': 0.0012 },
        WorkingUDP: true,
        HavePortMap: false,
      },
      PeerRelay: true,
      StateEncrypted: false,
    },
    Endpoints: ['192.168.1.5:41641', '[fe80::1%eth0]:41641', '[2001:DB8:0:0::1]:41641', '[fe80::2]:41641'],
    EndpointTypes: [1, 1, 2, 1],
    DebugFlags: ['warn-ip-forwarding-off'],
    ...overrides,
  };
}

function wireErrorMessage(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof WireError, `expected a WireError, got ${String(err)}`);
    return err.message;
  }
  assert.fail('expected a WireError');
}

describe('parseRegisterRequest', () => {
  test('a v1.80 first login: zero keys and zero time become absent, keys are branded', () => {
    const request = parseRegisterRequest(registerFromV180());
    assert.equal(request.Version, 113);
    assert.equal(request.NodeKey, NodePublic.parse(NODE_KEY));
    assert.equal('OldNodeKey' in request, false);
    assert.equal('Expiry' in request, false);
    assert.equal('NodeKeySignature' in request, false);
    assert.equal(request.NLKey, NL_KEY.toLowerCase());
    assert.deepEqual(request.Auth, { AuthKey: 'tskey-auth-abc123' });
    assert.equal(request.Followup, '');
    assert.equal(request.Ephemeral, false);
    assert.equal(request.Hostinfo?.Hostname, 'alpha');
    assert.deepEqual(request.Hostinfo?.RoutableIPs, ['10.0.0.0/24']);
    // opt.Bool null is "unset", like any null field.
    assert.deepEqual(request.Hostinfo?.NetInfo, { PreferredDERP: 0 });
  });

  test('unknown fields are ignored at the top and kept in Hostinfo', () => {
    const request = parseRegisterRequest(
      registerFromV180({ SomeFutureField: 1, Hostinfo: { Hostname: 'a', FutureThing: { x: 1 } } }),
    );
    assert.equal('SomeFutureField' in request, false);
    assert.deepEqual(request.Hostinfo, { Hostname: 'a', FutureThing: { x: 1 } });
  });

  test('field names match case-insensitively, like Go', () => {
    const request = parseRegisterRequest({ version: 113, nodekey: NODE_KEY, HOSTINFO: { hostname: 'x' } });
    assert.equal(request.NodeKey, NODE_KEY);
    assert.equal(request.Hostinfo?.Hostname, 'x');
  });

  test('logout and expire-sooner expiries become Dates; nanoseconds and offsets are accepted', () => {
    assert.deepEqual(
      parseRegisterRequest(registerFromV180({ Expiry: '1970-01-01T00:02:03Z' })).Expiry,
      new Date(123_000),
    );
    assert.deepEqual(
      parseRegisterRequest(registerFromV180({ Expiry: '2026-08-22T13:48:56.123456789+02:00' })).Expiry,
      new Date('2026-08-22T11:48:56.123Z'),
    );
  });

  test('a rotated key and an ephemeral, interactive follow-up are kept', () => {
    const old = `nodekey:${'12'.repeat(32)}`;
    const request = parseRegisterRequest(
      registerFromV180({ OldNodeKey: old, Ephemeral: true, Followup: 'https://weft/a/1', Auth: null }),
    );
    assert.equal(request.OldNodeKey, old);
    assert.equal(request.Ephemeral, true);
    assert.equal(request.Followup, 'https://weft/a/1');
    assert.equal('Auth' in request, false);
  });

  test('keys are checked and the error names the field', () => {
    assert.equal(
      wireErrorMessage(() => parseRegisterRequest(registerFromV180({ NodeKey: 'nodekey:xyz' }))),
      'NodeKey: expected "nodekey:" followed by 64 hex digits',
    );
    assert.equal(
      wireErrorMessage(() =>
        parseRegisterRequest(registerFromV180({ OldNodeKey: `mkey:${'ab'.repeat(32)}` })),
      ),
      'OldNodeKey: expected "nodekey:" followed by 64 hex digits',
    );
    assert.equal(
      wireErrorMessage(() => parseRegisterRequest(registerFromV180({ NLKey: 'nlpub:00' }))),
      'NLKey: expected "nlpub:" followed by 64 hex digits',
    );
  });

  test('Version must be a whole number of at least 1', () => {
    const { Version: _version, ...withoutVersion } = registerFromV180();
    assert.equal(
      wireErrorMessage(() => parseRegisterRequest(withoutVersion)),
      'Version: required',
    );
    assert.equal(
      wireErrorMessage(() => parseRegisterRequest(registerFromV180({ Version: 0 }))),
      'Version: expected a whole number of at least 1, got 0',
    );
    assert.match(
      wireErrorMessage(() => parseRegisterRequest(registerFromV180({ Version: 1.5 }))),
      /^Version: /,
    );
    assert.equal(
      wireErrorMessage(() => parseRegisterRequest(registerFromV180({ Version: '113' }))),
      'Version: expected a number, got the string "113"',
    );
  });

  test('wrong types deep inside Hostinfo name their path', () => {
    assert.equal(
      wireErrorMessage(() => parseRegisterRequest(registerFromV180({ Hostinfo: { Hostname: 5 } }))),
      'Hostinfo.Hostname: expected a string, got the number 5',
    );
    assert.equal(
      wireErrorMessage(() =>
        parseRegisterRequest(registerFromV180({ Hostinfo: { RoutableIPs: ['10.0.0.0'] } })),
      ),
      'Hostinfo.RoutableIPs[0]: missing "/bits"',
    );
    assert.match(
      wireErrorMessage(() =>
        parseRegisterRequest(registerFromV180({ Hostinfo: { NetInfo: { WorkingUDP: 'yes' } } })),
      ),
      /^Hostinfo\.NetInfo\.WorkingUDP: expected true or false/,
    );
  });

  test('times must be real RFC 3339 times', () => {
    assert.equal(
      wireErrorMessage(() => parseRegisterRequest(registerFromV180({ Expiry: 'tomorrow' }))),
      'Expiry: expected an RFC 3339 time such as "2026-08-22T11:48:56Z"',
    );
    assert.match(
      wireErrorMessage(() => parseRegisterRequest(registerFromV180({ Expiry: '2026-02-30T00:00:00Z' }))),
      /^Expiry: /,
    );
  });

  test('oversized lists are refused with the limit', () => {
    const routes = Array.from({ length: MAX_LIST_ENTRIES + 1 }, (_, i) => `10.${i >> 8}.${i & 255}.0/24`);
    assert.equal(
      wireErrorMessage(() => parseRegisterRequest(registerFromV180({ Hostinfo: { RoutableIPs: routes } }))),
      'Hostinfo.RoutableIPs: at most 1000 entries are accepted, got 1001',
    );
  });

  test('the body must be an object; WireError is a BAD_REQUEST WeftError', () => {
    for (const body of [null, [], 'x', 5]) {
      assert.throws(
        () => parseRegisterRequest(body),
        (err: unknown) => {
          assert.ok(err instanceof WireError && err instanceof WeftError);
          assert.equal(err.code, 'BAD_REQUEST');
          assert.equal(err.message, 'a register request must be a JSON object');
          return true;
        },
      );
    }
  });
});

describe('parseMapRequest', () => {
  test('a v1.102 streaming request', () => {
    const request = parseMapRequest(mapFromV1102());
    assert.equal(request.Version, 142);
    assert.equal(request.Compress, 'zstd');
    assert.equal(request.KeepAlive, true);
    assert.equal(request.Stream, true);
    assert.equal(request.OmitPeers, false);
    assert.equal(request.ReadOnly, false);
    assert.equal(request.DiscoKey, DiscoPublic.parse(DISCO_KEY));
    assert.equal(request.Hostinfo?.NetInfo?.PreferredDERP, 900);
    assert.equal(request.Hostinfo?.PeerRelay, true);
    assert.deepEqual(request.DebugFlags, ['warn-ip-forwarding-off']);
  });

  test('link-local and zoned endpoints are dropped with their types; the rest are canonical', () => {
    const request = parseMapRequest(mapFromV1102());
    assert.deepEqual(request.Endpoints, ['192.168.1.5:41641', '[2001:db8::1]:41641']);
    assert.deepEqual(request.EndpointTypes, [1, 2]);
  });

  test('a lite update with a zero disco key and null fields', () => {
    const request = parseMapRequest({
      Version: 113,
      NodeKey: NODE_KEY,
      DiscoKey: `discokey:${'0'.repeat(64)}`,
      OmitPeers: true,
      Hostinfo: null,
      Endpoints: null,
    });
    assert.deepEqual(request, {
      Version: 113,
      Compress: '',
      KeepAlive: false,
      NodeKey: NODE_KEY,
      Stream: false,
      ReadOnly: false,
      OmitPeers: true,
    });
  });

  test('endpoints must be ip:port with IPv6 in brackets', () => {
    assert.match(
      wireErrorMessage(() => parseMapRequest(mapFromV1102({ Endpoints: ['nonsense'] }))),
      /^Endpoints\[0\]: /,
    );
    assert.match(
      wireErrorMessage(() =>
        parseMapRequest(mapFromV1102({ Endpoints: ['1.2.3.4:1', '2001:db8::1:41641'] })),
      ),
      /^Endpoints\[1\]: expected ip:port \(IPv6 in brackets\)/,
    );
    assert.match(
      wireErrorMessage(() => parseMapRequest(mapFromV1102({ Endpoints: ['01.2.3.4:5'] }))),
      /^Endpoints\[0\]/,
    );
    assert.match(
      wireErrorMessage(() => parseMapRequest(mapFromV1102({ Endpoints: ['1.2.3.4:65536'] }))),
      /port/,
    );
  });

  test('at most 1000 endpoints', () => {
    const endpoints = Array.from({ length: 1001 }, (_, i) => `10.0.${i >> 8}.${i & 255}:41641`);
    assert.equal(
      wireErrorMessage(() => parseMapRequest(mapFromV1102({ Endpoints: endpoints, EndpointTypes: [] }))),
      'Endpoints: at most 1000 entries are accepted, got 1001',
    );
  });

  test('a bad disco key or node key names the field', () => {
    assert.equal(
      wireErrorMessage(() => parseMapRequest(mapFromV1102({ DiscoKey: NODE_KEY }))),
      'DiscoKey: expected "discokey:" followed by 64 hex digits',
    );
    assert.equal(
      wireErrorMessage(() => parseMapRequest(mapFromV1102({ NodeKey: 42 }))),
      'NodeKey: expected a string, got the number 42',
    );
  });

  test('hardware attestation fields are accepted', () => {
    const request = parseMapRequest(
      mapFromV1102({
        HardwareAttestationKey: `hwattestpub:04${'AA'.repeat(64)}`,
        HardwareAttestationKeySignature: 'c2lnbmF0dXJl',
        HardwareAttestationKeySignatureTimestamp: '2026-08-22T11:48:56Z',
      }),
    );
    assert.equal(request.HardwareAttestationKey, `hwattestpub:04${'aa'.repeat(64)}`);
    assert.equal(request.HardwareAttestationKeySignature, 'c2lnbmF0dXJl');
    assert.deepEqual(request.HardwareAttestationKeySignatureTimestamp, new Date('2026-08-22T11:48:56Z'));
    assert.equal(
      'HardwareAttestationKey' in parseMapRequest(mapFromV1102({ HardwareAttestationKey: '' })),
      false,
    );
  });

  test('any JSON value either parses or fails with a WireError', () => {
    const fields = fc.record(
      {
        Version: fc.oneof(fc.integer(), fc.string(), fc.constant(null)),
        NodeKey: fc.oneof(fc.constant(NODE_KEY), fc.string(), fc.constant(null)),
        Endpoints: fc.array(fc.oneof(fc.string(), fc.constant('1.2.3.4:5'), fc.constant('[::1]:7'))),
        Hostinfo: fc.oneof(fc.jsonValue(), fc.dictionary(fc.string(), fc.jsonValue())),
      },
      { requiredKeys: [] },
    );
    fc.assert(
      fc.property(fc.oneof(fc.jsonValue(), fields), (body) => {
        try {
          parseMapRequest(body);
        } catch (err) {
          assert.ok(err instanceof WireError, String(err));
        }
      }),
    );
  });
});
