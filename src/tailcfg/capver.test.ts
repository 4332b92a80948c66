import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  CAPVER_HOME_DERP,
  CAPVER_NULL_ALLOWED_IPS,
  isSupportedCapabilityVersion,
  MIN_SUPPORTED_CAPABILITY_VERSION,
  releaseForCapabilityVersion,
  unsupportedVersionMessage,
} from './capver.ts';

test('the minimum is v1.80, and the gates a server needs are below it', () => {
  assert.equal(MIN_SUPPORTED_CAPABILITY_VERSION, 113);
  assert.equal(CAPVER_HOME_DERP, 111);
  assert.equal(CAPVER_NULL_ALLOWED_IPS, 112);
  assert.ok(CAPVER_NULL_ALLOWED_IPS < MIN_SUPPORTED_CAPABILITY_VERSION);
  assert.equal(isSupportedCapabilityVersion(113), true);
  assert.equal(isSupportedCapabilityVersion(112), false);
});

test('release names for capability versions', () => {
  const cases: [number, string | undefined][] = [
    [113, 'v1.80'],
    [114, 'v1.80'],
    [122, 'v1.86'],
    [123, 'v1.86'], // v1.86.2
    [130, 'v1.90'],
    [131, 'v1.92'], // v1.92 and v1.94 both send 131: the client is at least v1.92
    [138, 'v1.98'],
    [142, 'v1.102'],
    [145, 'v1.102'], // a development build after the newest release
    [109, 'v1.78'],
    [106, 'v1.74'],
    [105, undefined],
    [1, undefined],
  ];
  for (const [version, release] of cases)
    assert.equal(releaseForCapabilityVersion(version), release, `${version}`);
});

test('the rejection message names both releases and numbers', () => {
  assert.equal(
    unsupportedVersionMessage(109),
    'unsupported Tailscale client v1.78 (capability version 109): weft needs v1.80 (capability version 113) or newer',
  );
  assert.equal(
    unsupportedVersionMessage(90),
    'unsupported Tailscale client (capability version 90): weft needs v1.80 (capability version 113) or newer',
  );
});
