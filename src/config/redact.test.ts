import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parse as parseYaml } from 'yaml';
import { type Config, formatConfig, parseConfig, REDACTED, redactConfig } from './index.ts';
import { redactUrlSecrets } from './redact.ts';

const CWD = '/srv/weft';

const FULL = {
  server_url: 'https://hs.example.com',
  listen_addr: '[::]:443',
  metrics_listen_addr: '',
  data_dir: '/var/lib/weft',
  database: { type: 'postgres', url: 'postgres://weft@db.example.com:5432/weft?sslmode=require' },
  prefixes: { v4: '100.64.0.0/16', v6: '', allocation: 'random' },
  derp: {
    server: {
      enabled: false,
      region_id: 900,
      region_code: 'home-1',
      region_name: 'Home',
      stun_listen_addr: '0.0.0.0:3479',
      verify_clients: false,
    },
    urls: ['https://controlplane.tailscale.com/derpmap/default'],
    paths: ['/etc/weft/derp.yaml'],
  },
  dns: {
    magic_dns: false,
    base_domain: 'ts.example.org',
    nameservers: {
      global: ['1.1.1.1', 'https://dns.nextdns.io/x'],
      split: { 'corp.example.org': ['10.0.0.53'] },
    },
    search_domains: ['corp.example.org'],
    extra_records: [{ name: 'true.ts.example.org', type: 'A', value: '100.64.0.9' }],
  },
  policy: { mode: 'file', path: '/etc/weft/policy.hujson' },
  oidc: {
    issuer: 'https://idp.example.com/realms/x',
    client_id: 'weft',
    client_secret_path: '/run/secrets/oidc',
    allowed_domains: ['example.com'],
    allowed_users: ['a@example.com'],
    allowed_groups: ['admins'],
  },
  ephemeral_node_inactivity_timeout: '1h30m',
  log: { level: 'warn', format: 'pretty' },
};

function parse(raw: unknown): Config {
  return parseConfig(raw, { cwd: CWD });
}

describe('redactConfig', () => {
  test('hides the database password but keeps user, host, database and options', () => {
    const config = parse({
      database: {
        type: 'postgres',
        url: 'postgres://weft:s3cr%40t@db.example.com:5432/weft?sslmode=require',
      },
    });
    const redacted = redactConfig(config);
    assert.deepEqual(redacted.database, {
      type: 'postgres',
      url: `postgres://weft:${REDACTED}@db.example.com:5432/weft?sslmode=require`,
    });
    assert.doesNotMatch(formatConfig(config), /s3cr/);
  });

  test('hides a password given as a query parameter', () => {
    assert.equal(
      redactUrlSecrets('postgresql://db/weft?user=weft&password=hunter2&sslmode=require'),
      `postgresql://db/weft?user=weft&password=${REDACTED}&sslmode=require`,
    );
  });

  test('leaves a URL without a password alone', () => {
    assert.equal(redactUrlSecrets('postgres://weft@db/weft'), 'postgres://weft@db/weft');
    assert.equal(
      redactUrlSecrets('postgres:///weft?host=/run/postgresql'),
      'postgres:///weft?host=/run/postgresql',
    );
  });

  test('does not modify the config it is given', () => {
    const config = parse({ database: { type: 'postgres', url: 'postgres://u:p@db/weft' } });
    redactConfig(config);
    assert.deepEqual(config.database, { type: 'postgres', url: 'postgres://u:p@db/weft' });
  });

  test('client_secret_path is a path, not a secret, and stays visible', () => {
    assert.equal(redactConfig(parse(FULL)).oidc?.client_secret_path, '/run/secrets/oidc');
  });
});

describe('formatConfig', () => {
  test('a full valid config round-trips through formatConfig and parseConfig', () => {
    const config = parse(FULL);
    assert.deepEqual(parse(parseYaml(formatConfig(config))), config);
  });

  test('the default config round-trips too, and durations print as text', () => {
    const config = parse({});
    const text = formatConfig(config);
    assert.match(text, /^ephemeral_node_inactivity_timeout: 30m$/m);
    assert.doesNotMatch(text, /format:/);
    assert.deepEqual(parse(parseYaml(text)), config);
  });

  test('the printed form of a config with a password parses to the redacted config', () => {
    const config = parse({ database: { type: 'postgres', url: 'postgres://u:p@db/weft' } });
    const reparsed = parse(parseYaml(formatConfig(config)));
    assert.deepEqual(reparsed.database, { type: 'postgres', url: `postgres://u:${REDACTED}@db/weft` });
  });
});
