import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ENV_TABLE, NON_CONFIG_ENV, parseConfig } from './index.ts';
import { configSchema } from './schema.ts';
import { knownKeysAt } from './suggest.ts';
import { configErrorFrom } from './testing.ts';

const CWD = '/srv/weft';

describe('environment overlay', () => {
  test('env overrides the file, key by key', () => {
    const file = { listen_addr: '0.0.0.0:1', derp: { server: { region_id: 900, region_code: 'file' } } };
    const config = parseConfig(file, {
      cwd: CWD,
      env: {
        WEFT_LISTEN_ADDR: '127.0.0.1:2',
        WEFT_DERP_SERVER_REGION_ID: '901',
        WEFT_DERP_SERVER_ENABLED: '0',
      },
    });
    assert.equal(config.listen_addr, '127.0.0.1:2');
    assert.equal(config.derp.server.region_id, 901);
    assert.equal(config.derp.server.enabled, false);
    assert.equal(config.derp.server.region_code, 'file');
  });

  test('the input document is not modified', () => {
    const file = { derp: { server: { region_id: 900 } } };
    parseConfig(file, { cwd: CWD, env: { WEFT_DERP_SERVER_REGION_ID: '901' } });
    assert.deepEqual(file, { derp: { server: { region_id: 900 } } });
  });

  test('every kind of value', () => {
    const config = parseConfig(
      {},
      {
        cwd: CWD,
        env: {
          WEFT_SERVER_URL: 'https://hs.example.com/',
          WEFT_DATA_DIR: 'var',
          WEFT_DATABASE_TYPE: 'postgres',
          WEFT_DATABASE_URL: 'postgres://weft:pw@db/weft',
          WEFT_PREFIXES_V6: '',
          WEFT_DERP_SERVER_VERIFY_CLIENTS: 'FALSE',
          WEFT_DNS_MAGIC_DNS: 'true',
          WEFT_STUN_LISTEN_ADDR: '[::]:3478',
          WEFT_POLICY_MODE: 'file',
          WEFT_POLICY_PATH: '/etc/weft/policy.hujson',
          WEFT_OIDC_ISSUER: 'https://idp.example.com',
          WEFT_OIDC_CLIENT_ID: 'weft',
          WEFT_EPHEMERAL_NODE_INACTIVITY_TIMEOUT: '5m',
          WEFT_LOG_LEVEL: 'debug',
          WEFT_LOG_FORMAT: 'json',
        },
      },
    );
    assert.equal(config.server_url, 'https://hs.example.com');
    assert.equal(config.data_dir, '/srv/weft/var');
    assert.deepEqual(config.database, { type: 'postgres', url: 'postgres://weft:pw@db/weft' });
    assert.equal(config.prefixes.v6, '');
    assert.equal(config.derp.server.verify_clients, false);
    assert.equal(config.derp.server.stun_listen_addr, '[::]:3478');
    assert.deepEqual(config.policy, { mode: 'file', path: '/etc/weft/policy.hujson' });
    assert.equal(config.oidc?.client_id, 'weft');
    assert.equal(config.ephemeral_node_inactivity_timeout, 300_000);
    assert.deepEqual(config.log, { level: 'debug', format: 'json' });
  });

  test('a bad value names the variable and the key path', () => {
    const error = configErrorFrom(() =>
      parseConfig({}, { cwd: CWD, env: { WEFT_LISTEN_ADDR: 'nope', WEFT_DERP_SERVER_REGION_ID: '0' } }),
    );
    assert.match(error.message, /^WEFT_LISTEN_ADDR \(listen_addr\): "nope": missing ":port"/m);
    assert.match(
      error.message,
      /^WEFT_DERP_SERVER_REGION_ID \(derp\.server\.region_id\): must be from 1 to 65535$/m,
    );
    assert.equal(error.issues.find((issue) => issue.path === 'listen_addr')?.variable, 'WEFT_LISTEN_ADDR');
  });

  test('unparseable booleans and integers name the variable', () => {
    const error = configErrorFrom(() =>
      parseConfig({}, { cwd: CWD, env: { WEFT_DNS_MAGIC_DNS: 'yes', WEFT_DERP_SERVER_REGION_ID: '9x' } }),
    );
    assert.match(
      error.message,
      /^WEFT_DNS_MAGIC_DNS \(dns\.magic_dns\): expected true, false, 1 or 0; got "yes"$/m,
    );
    assert.match(
      error.message,
      /^WEFT_DERP_SERVER_REGION_ID \(derp\.server\.region_id\): expected a whole number/m,
    );
  });

  test('an error in a value from the file is still blamed on the file', () => {
    const error = configErrorFrom(() =>
      parseConfig(
        { listen_addr: 'nope' },
        { cwd: CWD, source: 'weft.yaml', env: { WEFT_LOG_LEVEL: 'debug' } },
      ),
    );
    assert.match(error.message, /^weft\.yaml: listen_addr: /);
  });

  test('an unknown WEFT_ variable is an error that lists the known ones', () => {
    const error = configErrorFrom(() =>
      parseConfig({}, { cwd: CWD, env: { WEFT_LISTEN_ADRR: '0.0.0.0:1' } }),
    );
    assert.match(
      error.message,
      /^unknown environment variable WEFT_LISTEN_ADRR \(did you mean WEFT_LISTEN_ADDR\?\); known: /,
    );
    assert.match(error.message, /WEFT_SERVER_URL, WEFT_LISTEN_ADDR, /);
  });

  test('WEFT_CONFIG, WEFT_SERVER and WEFT_API_KEY are allowed and ignored; other variables too', () => {
    const env = {
      WEFT_CONFIG: 'x.yaml',
      WEFT_SERVER: 'https://hs',
      WEFT_API_KEY: 'k',
      HOME: '/root',
      weft_x: '1',
    };
    assert.deepEqual(parseConfig({}, { cwd: CWD, env }), parseConfig({}, { cwd: CWD }));
    assert.deepEqual([...NON_CONFIG_ENV], ['WEFT_CONFIG', 'WEFT_SERVER', 'WEFT_API_KEY']);
  });

  test('every table entry names a real key path', () => {
    for (const [variable, { path }] of Object.entries(ENV_TABLE)) {
      assert.match(variable, /^WEFT_[A-Z0-9_]+$/);
      const segments = path.split('.');
      const leaf = segments.pop() ?? '';
      assert.ok(
        knownKeysAt(configSchema, segments).includes(leaf),
        `${variable} → ${path} is not a config key`,
      );
    }
  });
});
