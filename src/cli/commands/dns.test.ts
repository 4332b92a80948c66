import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ApiError } from '../../api/client.ts';
import type { DnsJson, DnsSettingsJson } from '../../api/wire.ts';
import { modify } from './dns.ts';

/** A server whose settings another admin changes between this client's read and its write, `races` times. */
function racingServer(races: number) {
  let dns: DnsJson = {
    magicDns: true,
    baseDomain: 'ts.example',
    nameservers: { global: [], split: {} },
    searchDomains: [],
    extraRecords: [],
  };
  let version = 0;
  let left = races;
  const writes: Array<string | undefined> = [];
  return {
    writes,
    current: () => dns,
    async getDnsVersioned() {
      return { dns: structuredClone(dns), etag: `"v${version}"` };
    },
    async setDns(settings: DnsSettingsJson, ifMatch?: string) {
      writes.push(ifMatch);
      if (left > 0) {
        left -= 1;
        // Someone else's change lands first.
        dns = { ...dns, searchDomains: [...dns.searchDomains, `other${left}.example`] };
        version += 1;
      }
      if (ifMatch !== `"v${version}"`) throw new ApiError('changed', 'DNS_CHANGED', 412);
      dns = { ...dns, ...settings };
      version += 1;
      return structuredClone(dns);
    },
  };
}

test('a conflicting write is retried on fresh settings, so the other change is kept', async () => {
  const server = racingServer(2);
  const result = await modify(server, (settings) => {
    settings.nameservers.split['corp.example'] = ['10.0.0.53'];
  });
  assert.deepEqual(result.nameservers.split, { 'corp.example': ['10.0.0.53'] });
  assert.deepEqual(result.searchDomains, ['other1.example', 'other0.example'], 'the other changes survive');
  assert.deepEqual(server.writes, ['"v0"', '"v1"', '"v2"'], 'every write carries the ETag it read');
});

test('it gives up after five conflicts, and other errors are not retried', async () => {
  const busy = racingServer(10);
  await assert.rejects(
    modify(busy, () => undefined),
    (err: unknown) => err instanceof ApiError && err.code === 'DNS_CHANGED',
  );
  assert.equal(busy.writes.length, 5);
  const failing = racingServer(0);
  failing.setDns = async () => {
    throw new ApiError('bad', 'BAD_REQUEST', 400);
  };
  await assert.rejects(
    modify(failing, () => undefined),
    /bad/,
  );
});
