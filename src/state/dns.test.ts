import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { type DnsConfig, parseConfig } from '../config/index.ts';
import { createLogger } from '../observe/logger.ts';
import { WeftError } from '../types/errors.ts';
import {
  DNS_SETTINGS_KEY,
  type DnsSettings,
  DnsSettingsStore,
  parseDnsSettings,
  type SettingsStorage,
  settingsFromConfig,
} from './dns.ts';

const log = createLogger({ level: 'silent', format: 'json' });

function dnsConfig(dns: Record<string, unknown> = {}): DnsConfig {
  return parseConfig({ dns }).dns;
}

/** The settings table as a map; `failPut` makes every write fail, as a lost database would. */
class MemoryStorage implements SettingsStorage {
  readonly values = new Map<string, string>();
  failPut = false;

  async get(key: string): Promise<unknown> {
    const text = this.values.get(key);
    return text === undefined ? undefined : JSON.parse(text);
  }

  async put(key: string, value: unknown): Promise<void> {
    if (this.failPut) throw new Error('database is gone');
    this.values.set(key, JSON.stringify(value));
  }
}

/** Storage whose writes wait until the test lets them finish, one at a time, as a slow database would. */
class GatedStorage extends MemoryStorage {
  readonly #gates: Array<() => void> = [];

  override async put(key: string, value: unknown): Promise<void> {
    await new Promise<void>((resolve) => this.#gates.push(resolve));
    await super.put(key, value);
  }

  /** Writes waiting to finish. */
  get waiting(): number {
    return this.#gates.length;
  }

  /** Lets the oldest waiting write finish, and the queue move on. */
  async release(): Promise<void> {
    const open = this.#gates.shift();
    assert.ok(open, 'a write is waiting');
    open();
    await new Promise((resolve) => setImmediate(resolve));
  }
}

const SETTINGS: DnsSettings = {
  nameservers: { global: ['9.9.9.9'], split: { 'corp.example': ['10.0.0.53'] } },
  searchDomains: ['corp.example'],
  extraRecords: [{ name: 'grafana.tailnet.internal', type: 'A', value: '100.64.0.9' }],
};

/** Asserts that parsing `value` fails with BAD_REQUEST and a message matching `pattern`. */
function refused(value: unknown, pattern: RegExp): void {
  assert.throws(
    () => parseDnsSettings(value),
    (err: unknown) => {
      assert.ok(err instanceof WeftError);
      assert.equal(err.code, 'BAD_REQUEST');
      assert.match(err.message, pattern);
      return true;
    },
  );
}

describe('parseDnsSettings: the config rules, with the field named', () => {
  test('valid settings come back unchanged', () => {
    assert.deepEqual(parseDnsSettings(structuredClone(SETTINGS)), SETTINGS);
  });

  test('a resolver that is neither an IP address nor an https:// URL', () => {
    const bad = { ...SETTINGS, nameservers: { global: ['1.2.3'], split: {} } };
    refused(bad, /^invalid DNS settings: nameservers\.global\.0: "1\.2\.3" is not an IP address/);
  });

  test('a bad split DNS domain names the key and says why', () => {
    const bad = { ...SETTINGS, nameservers: { global: [], split: { Corp_Example: ['10.0.0.53'] } } };
    refused(bad, /nameservers\.split\.Corp_Example: bad key: "Corp_Example" is not a DNS name/);
  });

  test('a bad search domain', () => {
    refused(
      { ...SETTINGS, searchDomains: ['-bad.example'] },
      /searchDomains\.0: "-bad\.example" is not a DNS name/,
    );
  });

  test('an A record with an IPv6 value, and the reverse', () => {
    const a = { ...SETTINGS, extraRecords: [{ name: 'x.example', type: 'A', value: 'fd7a:115c:a1e0::1' }] };
    refused(a, /extraRecords\.0\.value: a type A record needs an IPv4 address/);
    const aaaa = { ...SETTINGS, extraRecords: [{ name: 'x.example', type: 'AAAA', value: '100.64.0.1' }] };
    refused(aaaa, /extraRecords\.0\.value: a type AAAA record needs an IPv6 address/);
  });

  test('unknown fields, at the top and inside', () => {
    refused({ ...SETTINGS, magicDns: false }, /invalid DNS settings: .*"magicDns"/);
    refused(
      { ...SETTINGS, nameservers: { ...SETTINGS.nameservers, fallback: [] } },
      /nameservers: .*"fallback"/,
    );
    const record = { name: 'x.example', type: 'A', value: '100.64.0.1', ttl: 60 };
    refused({ ...SETTINGS, extraRecords: [record] }, /extraRecords\.0: .*"ttl"/);
  });

  test('every field is required', () => {
    const { searchDomains: _, ...partial } = SETTINGS;
    refused(partial, /searchDomains: /);
  });
});

describe('DnsSettingsStore', () => {
  test('starts from the config while nothing is stored', async () => {
    const config = dnsConfig({
      nameservers: { global: ['1.1.1.1'], split: { 'lab.example': ['10.1.0.53'] } },
      search_domains: ['lab.example'],
      extra_records: [{ name: 'db.lab.example', type: 'AAAA', value: 'fd00::5' }],
    });
    const store = await DnsSettingsStore.open({ config, storage: new MemoryStorage(), log });
    assert.deepEqual(store.current, settingsFromConfig(config));
    assert.deepEqual(store.current, {
      nameservers: { global: ['1.1.1.1'], split: { 'lab.example': ['10.1.0.53'] } },
      searchDomains: ['lab.example'],
      extraRecords: [{ name: 'db.lab.example', type: 'AAAA', value: 'fd00::5' }],
    });
    assert.equal(store.magicDns, true);
    assert.equal(store.baseDomain, 'tailnet.internal');
  });

  test('update checks, stores and notifies; the stored value wins over the config at the next start', async () => {
    const storage = new MemoryStorage();
    const config = dnsConfig({ nameservers: { global: ['1.1.1.1'] } });
    const store = await DnsSettingsStore.open({ config, storage, log });
    const heard: DnsSettings[] = [];
    store.subscribe((settings) => heard.push(settings));

    assert.deepEqual(await store.update(structuredClone(SETTINGS)), SETTINGS);
    assert.deepEqual(store.current, SETTINGS);
    assert.deepEqual(heard, [SETTINGS]);
    assert.deepEqual(JSON.parse(storage.values.get(DNS_SETTINGS_KEY) ?? 'null'), SETTINGS);

    const restarted = await DnsSettingsStore.open({ config, storage, log });
    assert.deepEqual(restarted.current, SETTINGS);
  });

  test('clearing everything is a change too, and is kept (not replaced by the config again)', async () => {
    const storage = new MemoryStorage();
    const config = dnsConfig({ nameservers: { global: ['1.1.1.1'] } });
    const store = await DnsSettingsStore.open({ config, storage, log });
    const empty = { nameservers: { global: [], split: {} }, searchDomains: [], extraRecords: [] };
    await store.update(empty);
    assert.deepEqual((await DnsSettingsStore.open({ config, storage, log })).current, empty);
  });

  test('an update equal to the settings in force is stored but tells no listener', async () => {
    const storage = new MemoryStorage();
    const store = await DnsSettingsStore.open({ config: dnsConfig(), storage, log });
    let calls = 0;
    store.subscribe(() => {
      calls += 1;
    });
    await store.update(store.current);
    assert.equal(calls, 0);
    assert.ok(storage.values.has(DNS_SETTINGS_KEY), 'stored: the admin has now set them');
  });

  test('bad input changes nothing: not the settings, not the database, no listener', async () => {
    const storage = new MemoryStorage();
    const store = await DnsSettingsStore.open({ config: dnsConfig(), storage, log });
    await store.update(SETTINGS);
    let calls = 0;
    store.subscribe(() => {
      calls += 1;
    });
    const bad = { ...SETTINGS, extraRecords: [{ name: 'x.example', type: 'A', value: '::1' }] };
    await assert.rejects(
      store.update(bad),
      (err: unknown) => err instanceof WeftError && /extraRecords\.0\.value/.test(err.message),
    );
    assert.deepEqual(store.current, SETTINGS);
    assert.deepEqual(JSON.parse(storage.values.get(DNS_SETTINGS_KEY) ?? 'null'), SETTINGS);
    assert.equal(calls, 0);
  });

  test('a failed write leaves the settings in force as they were', async () => {
    const storage = new MemoryStorage();
    const store = await DnsSettingsStore.open({ config: dnsConfig(), storage, log });
    const before = store.current;
    storage.failPut = true;
    await assert.rejects(store.update(SETTINGS), /database is gone/);
    assert.equal(store.current, before);
  });

  test('stored settings that no longer pass the checks fall back to the config instead of failing the start', async () => {
    const storage = new MemoryStorage();
    storage.values.set(DNS_SETTINGS_KEY, JSON.stringify({ ...SETTINGS, searchDomains: ['Not A Domain'] }));
    const config = dnsConfig({ search_domains: ['fallback.example'] });
    const store = await DnsSettingsStore.open({ config, storage, log });
    assert.deepEqual(store.current.searchDomains, ['fallback.example']);
  });

  test('modify applies each change to the settings the previous one left, however the writes interleave', async () => {
    const storage = new GatedStorage();
    const store = await DnsSettingsStore.open({ config: dnsConfig(), storage, log });
    const heard: string[][] = [];
    store.subscribe((settings) => heard.push(Object.keys(settings.nameservers.split)));
    const addDomain = (domain: string, resolver: string) =>
      store.modify((current) => ({
        ...current,
        nameservers: {
          ...current.nameservers,
          split: { ...current.nameservers.split, [domain]: [resolver] },
        },
      }));
    // All five are asked for while the first write is still on its way to the database.
    const domains = ['a', 'b', 'c', 'd', 'e'].map((label) => `${label}.example`);
    const results = domains.map((domain, i) => addDomain(domain, `10.0.0.${i + 1}`));
    const refused = assert.rejects(
      store.modify((current) => ({ ...current, searchDomains: ['Not A Domain'] })),
      /searchDomains\.0: "Not A Domain" is not a DNS name/,
    );
    const searched = store.modify((current) => ({ ...current, searchDomains: ['corp.example'] }));
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(storage.waiting, 1, 'one write at a time');
    while (storage.waiting > 0) await storage.release();

    const expected = Object.fromEntries(domains.map((domain, i) => [domain, [`10.0.0.${i + 1}`]]));
    assert.deepEqual((await Promise.all(results)).at(-1)?.nameservers.split, expected);
    await refused;
    assert.deepEqual(await searched, { ...store.current, searchDomains: ['corp.example'] });
    assert.deepEqual(store.current.nameservers.split, expected);
    assert.deepEqual(store.current.searchDomains, ['corp.example']);
    assert.deepEqual(JSON.parse(storage.values.get(DNS_SETTINGS_KEY) ?? 'null'), store.current);
    assert.deepEqual(heard, [...domains.map((_, i) => domains.slice(0, i + 1)), domains]);
  });

  test('modify hands the change a copy: editing it in place changes nothing until it is stored', async () => {
    const storage = new MemoryStorage();
    const store = await DnsSettingsStore.open({ config: dnsConfig(), storage, log });
    const before = structuredClone(store.current);
    await assert.rejects(
      store.modify((current) => {
        current.searchDomains.push('ok.example');
        current.nameservers.global.push('not an address');
        return current;
      }),
      /nameservers\.global\.0/,
    );
    assert.deepEqual(store.current, before);
    assert.equal(storage.values.size, 0);
  });

  test('a listener that throws does not stop the others or the update', async () => {
    const store = await DnsSettingsStore.open({ config: dnsConfig(), storage: new MemoryStorage(), log });
    let heard = 0;
    store.subscribe(() => {
      throw new Error('broken listener');
    });
    store.subscribe(() => {
      heard += 1;
    });
    assert.deepEqual(await store.update(SETTINGS), SETTINGS);
    assert.equal(heard, 1);
  });
});
