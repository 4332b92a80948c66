import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { DnsSettings } from '../state/dns.ts';
import { buildDnsConfig } from './dns.ts';

const NONE: DnsSettings = { nameservers: { global: [], split: {} }, searchDomains: [], extraRecords: [] };
const MAGIC = { base_domain: 'tail.example', magic_dns: true };

describe('buildDnsConfig', () => {
  test('MagicDNS alone: Proxied and the base domain as the only search domain', () => {
    assert.deepEqual(buildDnsConfig(MAGIC, NONE), { Proxied: true, Domains: ['tail.example'] });
  });

  test('without MagicDNS: no base domain, and nothing but Proxied when nothing else is set', () => {
    const off = { base_domain: 'tail.example', magic_dns: false };
    assert.deepEqual(buildDnsConfig(off, NONE), { Proxied: false });
    assert.deepEqual(buildDnsConfig(off, { ...NONE, searchDomains: ['corp.example'] }), {
      Proxied: false,
      Domains: ['corp.example'],
    });
  });

  test('every editable setting in its DNSConfig field, in order', () => {
    const settings: DnsSettings = {
      nameservers: {
        global: ['1.1.1.1', 'https://dns.nextdns.io/abc'],
        split: { 'corp.example': ['10.0.0.53', '10.0.0.54'] },
      },
      searchDomains: ['corp.example', 'lab'],
      extraRecords: [
        { name: 'grafana.tail.example', type: 'A', value: '100.64.0.9' },
        { name: 'grafana.tail.example', type: 'AAAA', value: 'fd7a:115c:a1e0::9' },
      ],
    };
    assert.deepEqual(buildDnsConfig(MAGIC, settings), {
      Proxied: true,
      Resolvers: [{ Addr: '1.1.1.1' }, { Addr: 'https://dns.nextdns.io/abc' }],
      Routes: { 'corp.example': [{ Addr: '10.0.0.53' }, { Addr: '10.0.0.54' }] },
      Domains: ['tail.example', 'corp.example', 'lab'],
      ExtraRecords: [
        { Name: 'grafana.tail.example', Type: 'A', Value: '100.64.0.9' },
        { Name: 'grafana.tail.example', Type: 'AAAA', Value: 'fd7a:115c:a1e0::9' },
      ],
    });
  });

  test('a split domain without resolvers is sent as [], never null (the client drops null routes)', () => {
    const config = buildDnsConfig(MAGIC, {
      ...NONE,
      nameservers: { global: [], split: { 'x.example': [] } },
    });
    assert.equal(JSON.stringify(config.Routes), '{"x.example":[]}');
  });

  test('the result shares no arrays with the settings', () => {
    const settings: DnsSettings = { ...NONE, searchDomains: ['corp.example'] };
    const off = buildDnsConfig({ ...MAGIC, magic_dns: false }, settings);
    off.Domains?.push('mutated');
    assert.deepEqual(settings.searchDomains, ['corp.example']);
  });
});
