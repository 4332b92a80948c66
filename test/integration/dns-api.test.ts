/**
 * DNS settings as an admin manages them on a real server: `weft dns …` and `/api/v1/dns`. The config's
 * `dns.*` values are where the settings start; changes made through the API are checked by the same
 * rules (a bad one says which field and why, and changes nothing) and outlive a restart, winning over
 * the config from then on. What clients make of the settings is test/interop/dns.test.ts.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { DnsJson } from '../../src/api/wire.ts';
import type { CommandResult } from '../harness/child.ts';
import { startWeft, type WeftServer } from '../harness/weft.ts';

function ok(result: CommandResult): string {
  assert.equal(result.code, 0, `exit ${result.code}; stderr: ${result.stderr}`);
  return result.stdout;
}

function failed(result: CommandResult, code: number, message: RegExp): void {
  assert.equal(result.code, code, `stdout: ${result.stdout}\nstderr: ${result.stderr}`);
  assert.match(result.stderr, message);
  assert.equal(result.stderr.trim().split('\n').length, 1, 'one line on stderr');
  assert.equal(result.stdout, '');
}

const CONFIG = `
dns:
  base_domain: ts.example.org
  nameservers:
    global: [1.1.1.1]
  search_domains: [config.example]
  extra_records:
    - { name: config.ts.example.org, type: A, value: 100.64.0.50 }
`;

describe('weft dns and /api/v1/dns', () => {
  let weft: WeftServer;
  let dir: string;
  let dataDir: string;
  let apiKey: string;
  const show = async (server = weft) => JSON.parse(ok(await server.cli(['dns', 'show', '-o', 'json'])));

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'weft-dns-'));
    await writeFile(join(dir, 'weft.yaml'), CONFIG);
    weft = await startWeft({ env: { WEFT_CONFIG: join(dir, 'weft.yaml') } });
    dataDir = weft.dataDir;
    apiKey = ok(await weft.cli(['apikeys', 'create', '--expiration', '1h'])).trim();
  });
  after(async () => {
    await weft?.stop();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('before any change, the settings are the config file’s', async () => {
    assert.deepEqual(await show(), {
      magicDns: true,
      baseDomain: 'ts.example.org',
      nameservers: { global: ['1.1.1.1'], split: {} },
      searchDomains: ['config.example'],
      extraRecords: [{ name: 'config.ts.example.org', type: 'A', value: '100.64.0.50' }],
    });
    assert.equal(
      ok(await weft.cli(['dns', 'show'])),
      [
        'MagicDNS:       yes',
        'Base domain:    ts.example.org',
        'Nameservers:    1.1.1.1',
        'Search domains: config.example',
        'Split DNS: -',
        'Extra records:',
        '  config.ts.example.org A 100.64.0.50',
        '',
      ].join('\n'),
    );
  });

  test('each command changes its part and keeps the rest', async () => {
    assert.equal(
      ok(await weft.cli(['dns', 'nameservers', 'set', '9.9.9.9', 'https://dns.nextdns.io/abc123'])),
      'Nameservers: 9.9.9.9, https://dns.nextdns.io/abc123\n',
    );
    assert.equal(
      ok(await weft.cli(['dns', 'split', 'set', 'corp.example', '10.0.0.53', '10.0.0.54'])),
      'Split DNS: corp.example → 10.0.0.53, 10.0.0.54\n',
    );
    ok(await weft.cli(['dns', 'split', 'set', 'lab.example', '10.1.0.53']));
    assert.equal(
      ok(await weft.cli(['dns', 'search-domains', 'set', 'corp.example', 'lab.example'])),
      'Search domains: corp.example, lab.example\n',
    );
    assert.equal(
      ok(await weft.cli(['dns', 'records', 'add', 'grafana.ts.example.org', 'A', '100.64.0.9'])),
      'Record added: grafana.ts.example.org A 100.64.0.9\n',
    );
    ok(await weft.cli(['dns', 'records', 'add', 'grafana.ts.example.org', 'aaaa', 'fd7a:115c:a1e0::9']));
    assert.deepEqual(await show(), {
      magicDns: true,
      baseDomain: 'ts.example.org',
      nameservers: {
        global: ['9.9.9.9', 'https://dns.nextdns.io/abc123'],
        split: { 'corp.example': ['10.0.0.53', '10.0.0.54'], 'lab.example': ['10.1.0.53'] },
      },
      searchDomains: ['corp.example', 'lab.example'],
      extraRecords: [
        { name: 'config.ts.example.org', type: 'A', value: '100.64.0.50' },
        { name: 'grafana.ts.example.org', type: 'A', value: '100.64.0.9' },
        { name: 'grafana.ts.example.org', type: 'AAAA', value: 'fd7a:115c:a1e0::9' },
      ],
    });
  });

  test('removing: a split domain, the records of a name and type, then of a name; set with nothing clears', async () => {
    assert.equal(
      ok(await weft.cli(['dns', 'split', 'remove', 'lab.example'])),
      'Split DNS for lab.example removed\n',
    );
    assert.equal(
      ok(await weft.cli(['dns', 'records', 'remove', 'grafana.ts.example.org', 'AAAA'])),
      'Record removed: grafana.ts.example.org AAAA fd7a:115c:a1e0::9\n',
    );
    ok(await weft.cli(['dns', 'records', 'add', 'grafana.ts.example.org', 'AAAA', 'fd7a:115c:a1e0::10']));
    assert.equal(
      ok(await weft.cli(['dns', 'records', 'remove', 'grafana.ts.example.org'])),
      'Record removed: grafana.ts.example.org A 100.64.0.9\nRecord removed: grafana.ts.example.org AAAA fd7a:115c:a1e0::10\n',
    );
    assert.equal(ok(await weft.cli(['dns', 'search-domains', 'set'])), 'Search domains: -\n');
    const json = JSON.parse(
      ok(await weft.cli(['dns', 'records', 'remove', 'config.ts.example.org', '-o', 'json'])),
    );
    assert.deepEqual(json.extraRecords, []);
    const now = await show();
    assert.deepEqual(now.nameservers.split, { 'corp.example': ['10.0.0.53', '10.0.0.54'] });
    assert.deepEqual(now.searchDomains, []);
    assert.deepEqual(now.extraRecords, []);
    ok(await weft.cli(['dns', 'records', 'add', 'grafana.ts.example.org', 'A', '100.64.0.9']));
  });

  test('bad input is refused with the field and the reason, and nothing changes', async () => {
    const before = await show();
    failed(
      await weft.cli(['dns', 'records', 'add', 'db.ts.example.org', 'A', 'fd7a:115c:a1e0::1']),
      1,
      /^error: invalid request body\.extraRecords\.\d+\.value: a type A record needs an IPv4 address$/m,
    );
    failed(
      await weft.cli(['dns', 'nameservers', 'set', '1.2.3']),
      1,
      /body\.nameservers\.global\.0: "1\.2\.3" is not an IP address or an https:\/\/ DNS-over-HTTPS URL/,
    );
    failed(
      await weft.cli(['dns', 'split', 'set', 'Corp_Example', '10.0.0.53']),
      1,
      /body\.nameservers\.split\.Corp_Example: bad key: "Corp_Example" is not a DNS name/,
    );
    failed(
      await weft.cli(['dns', 'search-domains', 'set', 'under_score.example']),
      1,
      /body\.searchDomains\.0: /,
    );
    failed(
      await weft.cli(['dns', 'records', 'add', 'grafana.ts.example.org', 'A', '100.64.0.9']),
      1,
      /the record grafana\.ts\.example\.org A 100\.64\.0\.9 already exists/,
    );
    failed(
      await weft.cli(['dns', 'split', 'remove', 'nothing.example']),
      1,
      /no split DNS entry for nothing\.example/,
    );
    failed(
      await weft.cli(['dns', 'records', 'remove', 'nothing.example']),
      1,
      /no record for nothing\.example/,
    );
    failed(
      await weft.cli(['dns', 'records', 'add', 'x.example', 'MX', '10.0.0.1']),
      2,
      /it must be A or AAAA/,
    );
    failed(await weft.cli(['dns', 'split', 'set', 'corp.example']), 2, /missing required argument/);
    assert.deepEqual(await show(), before);
  });

  test('the REST API: GET, PUT of every editable field, 400 BAD_REQUEST with the field path', async () => {
    const auth = { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' };
    const put = (body: unknown) =>
      fetch(`${weft.url}/api/v1/dns`, { method: 'PUT', headers: auth, body: JSON.stringify(body) });
    const read = await fetch(`${weft.url}/api/v1/dns`, { headers: auth });
    assert.equal(read.status, 200);
    const before = (await read.json()) as DnsJson;
    const { magicDns: _m, baseDomain: _b, ...editable } = before;

    const problems: Array<[unknown, RegExp]> = [
      [{ ...editable, magicDns: false }, /body: Unrecognized key: "magicDns"/],
      [{ ...editable, searchDomains: undefined }, /body\.searchDomains: /],
      [
        { ...editable, extraRecords: [{ name: 'x.example', type: 'AAAA', value: '100.64.0.1' }] },
        /body\.extraRecords\.0\.value: a type AAAA record needs an IPv6 address/,
      ],
      [
        { ...editable, extraRecords: [{ name: 'x.example', type: 'A', value: '100.64.0.1', ttl: 5 }] },
        /body\.extraRecords\.0: Unrecognized key: "ttl"/,
      ],
      [{ ...editable, nameservers: { global: ['dns.google'], split: {} } }, /body\.nameservers\.global\.0: /],
    ];
    for (const [body, detail] of problems) {
      const res = await put(body);
      assert.equal(res.status, 400, JSON.stringify(body));
      const problem = (await res.json()) as { code: string; detail: string };
      assert.equal(problem.code, 'BAD_REQUEST');
      assert.match(problem.detail, detail);
    }
    assert.deepEqual(await show(), before, 'nothing changed');

    const next = {
      nameservers: { global: ['8.8.8.8'], split: { 'corp.example': ['10.0.0.53'] } },
      searchDomains: ['corp.example'],
      extraRecords: [{ name: 'api.ts.example.org', type: 'AAAA', value: 'fd7a:115c:a1e0::77' }],
    };
    const updated = await put(next);
    assert.equal(updated.status, 200);
    assert.deepEqual(await updated.json(), { magicDns: true, baseDomain: 'ts.example.org', ...next });
    assert.deepEqual(await show(), { magicDns: true, baseDomain: 'ts.example.org', ...next });
    assert.equal((await fetch(`${weft.url}/api/v1/dns`)).status, 401, 'remote calls need an API key');
  });

  test('If-Match guards a read-modify-write: a stale write is refused and changes nothing', async () => {
    const auth = { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' };
    const read = await fetch(`${weft.url}/api/v1/dns`, { headers: auth });
    const etag = read.headers.get('etag');
    assert.match(etag ?? '', /^"[0-9a-f]{32}"$/);
    const { magicDns: _m, baseDomain: _b, ...editable } = (await read.json()) as DnsJson;
    const put = (body: unknown, ifMatch: string) =>
      fetch(`${weft.url}/api/v1/dns`, {
        method: 'PUT',
        headers: { ...auth, 'if-match': ifMatch },
        body: JSON.stringify(body),
      });
    const first = await put({ ...editable, searchDomains: ['first.example'] }, etag ?? '');
    assert.equal(first.status, 200);
    assert.notEqual(first.headers.get('etag'), etag, 'a change gives a new ETag');
    const stale = await put({ ...editable, searchDomains: ['stale.example'] }, etag ?? '');
    assert.equal(stale.status, 412);
    assert.equal(((await stale.json()) as { code: string }).code, 'DNS_CHANGED');
    assert.deepEqual((await show()).searchDomains, ['first.example'], 'the stale write changed nothing');
  });

  test('changed settings outlive a restart and win over the config file', async () => {
    const before = await show();
    assert.notDeepEqual(before.searchDomains, ['config.example']);
    await weft.stop({ keepDataDir: true });
    weft = await startWeft({ dataDir, env: { WEFT_CONFIG: join(dir, 'weft.yaml') } });
    assert.deepEqual(await show(), before);
  });
});
