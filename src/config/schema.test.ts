import assert from 'node:assert/strict';
import { resolve } from 'node:path';
import { describe, test } from 'node:test';
import { type Config, parseConfig } from './index.ts';
import { assertIssue, configErrorFrom } from './testing.ts';

const CWD = '/srv/weft';

function parse(raw: unknown): Config {
  return parseConfig(raw, { cwd: CWD });
}

function errorFor(raw: unknown) {
  return configErrorFrom(() => parse(raw));
}

describe('defaults', () => {
  test('an empty document gives the documented defaults', () => {
    const expected: Config = {
      server_url: 'http://127.0.0.1:8080',
      listen_addr: '0.0.0.0:8080',
      metrics_listen_addr: '127.0.0.1:9090',
      trusted_proxies: [],
      data_dir: '/srv/weft/data',
      database: { type: 'sqlite' },
      prefixes: { v4: '100.64.0.0/10', v6: 'fd7a:115c:a1e0::/48', allocation: 'sequential' },
      derp: {
        server: {
          enabled: true,
          region_id: 999,
          region_code: 'weft',
          region_name: 'weft embedded DERP',
          stun_listen_addr: '0.0.0.0:3478',
          verify_clients: true,
          private_key_path: 'derp_server_private.key',
          automatically_add_embedded_derp_region: true,
          mesh_with: [],
        },
        urls: [],
        paths: [],
      },
      dns: {
        magic_dns: true,
        base_domain: 'tailnet.internal',
        nameservers: { global: [], split: {} },
        search_domains: [],
        extra_records: [],
      },
      policy: { mode: 'database' },
      ephemeral_node_inactivity_timeout: 30 * 60 * 1000,
      node: { expiry: 0, device_approval: false },
      log: { level: 'info' },
    };
    assert.deepEqual(parse({}), expected);
    assert.deepEqual(parse(null), expected);
    assert.deepEqual(parse(undefined), expected);
  });

  test('oidc and log.format stay absent unless set', () => {
    const config = parse({});
    assert.equal('oidc' in config, false);
    assert.equal('format' in config.log, false);
  });

  test('a key with no value counts as absent', () => {
    const config = parse({ oidc: null, derp: { urls: null, server: { region_id: null } } });
    assert.equal(config.oidc, undefined);
    assert.deepEqual(config.derp.urls, []);
    assert.equal(config.derp.server.region_id, 999);
  });

  test('a partial section keeps the defaults of its other keys', () => {
    const config = parse({ derp: { server: { region_id: 900 } }, prefixes: { v6: '' } });
    assert.equal(config.derp.server.region_code, 'weft');
    assert.equal(config.derp.server.region_id, 900);
    assert.equal(config.prefixes.v4, '100.64.0.0/10');
    assert.equal(config.prefixes.v6, '');
  });
});

describe('data_dir', () => {
  test('a relative data_dir is made absolute against cwd', () => {
    assert.equal(parse({ data_dir: 'state/weft' }).data_dir, resolve(CWD, 'state/weft'));
    assert.equal(parse({ data_dir: '/var/lib/weft' }).data_dir, '/var/lib/weft');
  });

  test('without a cwd option the process working directory is used', () => {
    assert.equal(parseConfig({}).data_dir, resolve(process.cwd(), 'data'));
  });

  test('an empty data_dir is rejected', () => {
    assertIssue(errorFor({ data_dir: '' }), 'data_dir', /must not be empty/);
  });
});

describe('unknown keys', () => {
  test('at the top level', () => {
    const error = errorFor({ listen_adr: '0.0.0.0:1' });
    assertIssue(error, '', /unknown key "listen_adr" \(did you mean "listen_addr"\?\)/);
    assert.match(error.message, /^config: unknown key "listen_adr"/);
  });

  test('nested, with the path of the enclosing section', () => {
    const error = errorFor({ derp: { server: { regoin_id: 5 } } });
    assertIssue(error, 'derp.server', /unknown key "regoin_id" \(did you mean "region_id"\?\)/);
    assert.match(error.message, /^config: derp\.server: unknown key "regoin_id"/);
  });

  test('inside list items', () => {
    const error = errorFor({
      dns: { extra_records: [{ name: 'a.b', type: 'A', value: '1.2.3.4', ttl: 5 }] },
    });
    assertIssue(error, 'dns.extra_records[0]', /unknown key "ttl"/);
  });

  test('every problem is reported, not only the first', () => {
    const error = errorFor({ nope: 1, listen_addr: 'x', log: { level: 'loud', colour: true } });
    assert.deepEqual(
      error.issues.map((issue) => issue.path),
      ['listen_addr', 'log.level', 'log', ''],
    );
    assert.equal(error.message.split('\n').length, 4);
  });
});

describe('types', () => {
  test('wrong types name the expected and the received type', () => {
    const error = errorFor({ listen_addr: 8080, derp: { server: { enabled: 'yes' }, urls: 'https://x' } });
    assertIssue(error, 'listen_addr', /expected a string, got the number 8080/);
    assertIssue(error, 'derp.server.enabled', /expected true or false, got the string "yes"/);
    assertIssue(error, 'derp.urls', /expected a list/);
  });

  test('the top level must be a mapping', () => {
    assert.match(errorFor(['a']).message, /top level must be a mapping.*got a list/);
    assert.match(errorFor('text').message, /top level must be a mapping.*got a string/);
  });

  test('enums list their values', () => {
    assertIssue(
      errorFor({ prefixes: { allocation: 'rnd' } }),
      'prefixes.allocation',
      /"sequential", "random"/,
    );
    assertIssue(errorFor({ log: { format: 'text' } }), 'log.format', /"json", "pretty"/);
  });
});

describe('server_url', () => {
  test('a trailing slash is stripped', () => {
    assert.equal(parse({ server_url: 'https://hs.example.com/' }).server_url, 'https://hs.example.com');
    assert.equal(
      parse({ server_url: 'https://hs.example.com:8443' }).server_url,
      'https://hs.example.com:8443',
    );
  });

  test('path, query, other schemes and credentials are rejected', () => {
    assertIssue(errorFor({ server_url: 'https://hs.example.com/weft' }), 'server_url', /without a path/);
    assertIssue(
      errorFor({ server_url: 'https://hs.example.com/?a=b' }),
      'server_url',
      /without a path, query/,
    );
    assertIssue(errorFor({ server_url: 'ftp://hs.example.com' }), 'server_url', /http:\/\/ or https:\/\//);
    assertIssue(
      errorFor({ server_url: 'https://u:p@hs.example.com' }),
      'server_url',
      /user name or password/,
    );
    assertIssue(errorFor({ server_url: 'hs.example.com' }), 'server_url', /not a URL/);
  });
});

describe('listen addresses', () => {
  test('accepts IPv4, bracketed IPv6, host names and port 0', () => {
    const config = parse({
      listen_addr: '[::]:443',
      metrics_listen_addr: 'localhost:0',
      derp: { server: { stun_listen_addr: '10.0.0.1:3478' } },
    });
    assert.equal(config.listen_addr, '[::]:443');
    assert.equal(config.metrics_listen_addr, 'localhost:0');
  });

  test('metrics_listen_addr "" disables the metrics listener', () => {
    assert.equal(parse({ metrics_listen_addr: '' }).metrics_listen_addr, '');
  });

  test('rejects a missing port, a port out of range and a garbage host', () => {
    assertIssue(errorFor({ listen_addr: '0.0.0.0' }), 'listen_addr', /missing ":port"/);
    assertIssue(errorFor({ listen_addr: '0.0.0.0:' }), 'listen_addr', /missing port/);
    assertIssue(
      errorFor({ listen_addr: '0.0.0.0:70000' }),
      'listen_addr',
      /port 70000 is not a number from 0 to 65535/,
    );
    assertIssue(
      errorFor({ listen_addr: 'bad host!:80' }),
      'listen_addr',
      /"bad host!" is not an IP address or host name/,
    );
    assertIssue(errorFor({ listen_addr: '300.1.1.1:80' }), 'listen_addr', /not a valid IPv4 address/);
    assertIssue(errorFor({ listen_addr: '::1:80' }), 'listen_addr', /must be written in brackets/);
    assertIssue(errorFor({ listen_addr: '[1.2.3.4]:80' }), 'listen_addr', /not an IPv6 address/);
    assertIssue(errorFor({ listen_addr: ':8080' }), 'listen_addr', /missing host/);
    assertIssue(errorFor({ listen_addr: '[::]' }), 'listen_addr', /missing ":port"/);
    assertIssue(errorFor({ metrics_listen_addr: 'x' }), 'metrics_listen_addr', /missing ":port"/);
    assertIssue(
      errorFor({ derp: { server: { stun_listen_addr: '0.0.0.0:-1' } } }),
      'derp.server.stun_listen_addr',
      /port -1/,
    );
  });
});

describe('database', () => {
  test('postgres with a url', () => {
    const url = 'postgresql://weft:pw@db.example.com:5432/weft?sslmode=require';
    assert.deepEqual(parse({ database: { type: 'postgres', url } }).database, { type: 'postgres', url });
  });

  test('postgres without url', () => {
    assertIssue(
      errorFor({ database: { type: 'postgres' } }),
      'database.url',
      /required when type is postgres/,
    );
  });

  test('url with type sqlite', () => {
    assertIssue(
      errorFor({ database: { type: 'sqlite', url: 'postgres://db/weft' } }),
      'database.url',
      /only used with type: postgres/,
    );
  });

  test('a url alone selects postgres', () => {
    assert.deepEqual(parseConfig({ database: { url: 'postgres://db/weft' } }).database, {
      type: 'postgres',
      url: 'postgres://db/weft',
    });
    assert.deepEqual(parseConfig({}).database, { type: 'sqlite' });
  });

  test('url must be a postgres URL', () => {
    const error = errorFor({ database: { type: 'postgres', url: 'mysql://db/weft' } });
    assertIssue(error, 'database.url', /postgres:\/\/ or postgresql:\/\//);
  });

  test('unknown type', () => {
    assertIssue(errorFor({ database: { type: 'mysql' } }), 'database.type', /"sqlite", "postgres"/);
  });
});

describe('prefixes', () => {
  test('narrower prefixes inside the Tailscale ranges are accepted and canonicalised', () => {
    const config = parse({
      prefixes: { v4: '100.100.0.0/16', v6: 'FD7A:115C:A1E0:AB12::/64', allocation: 'random' },
    });
    assert.deepEqual(config.prefixes, {
      v4: '100.100.0.0/16',
      v6: 'fd7a:115c:a1e0:ab12::/64',
      allocation: 'random',
    });
  });

  test('bad CIDR text', () => {
    assertIssue(
      errorFor({ prefixes: { v4: 'banana' } }),
      'prefixes.v4',
      /"banana" is not an IPv4 CIDR prefix/,
    );
    assertIssue(errorFor({ prefixes: { v4: '100.64.0.0' } }), 'prefixes.v4', /not an IPv4 CIDR prefix/);
    assertIssue(
      errorFor({ prefixes: { v4: '100.64.0.0/33' } }),
      'prefixes.v4',
      /invalid prefix length \(expected 0 to 32\)/,
    );
    assertIssue(
      errorFor({ prefixes: { v4: 'fd7a:115c:a1e0::/48' } }),
      'prefixes.v4',
      /not an IPv4 CIDR prefix/,
    );
    assertIssue(errorFor({ prefixes: { v6: '100.64.0.0/10' } }), 'prefixes.v6', /not an IPv6 CIDR prefix/);
  });

  test('CIDR outside the Tailscale range', () => {
    const error = errorFor({ prefixes: { v4: '10.0.0.0/8', v6: 'fd00::/48' } });
    assertIssue(
      error,
      'prefixes.v4',
      /10\.0\.0\.0\/8 is outside 100\.64\.0\.0\/10, the range Tailscale clients use/,
    );
    assertIssue(error, 'prefixes.v6', /fd00::\/48 is outside fd7a:115c:a1e0::\/48/);
    assert.match(error.message, /^config: prefixes\.v4: 10\.0\.0\.0\/8 is outside 100\.64\.0\.0\/10/m);
  });

  test('a prefix wider than the range is outside it', () => {
    assertIssue(errorFor({ prefixes: { v4: '100.0.0.0/8' } }), 'prefixes.v4', /is outside 100\.64\.0\.0\/10/);
    // The network address is inside the range and no host bits are set, yet the prefix is wider.
    assertIssue(
      errorFor({ prefixes: { v6: 'fd7a:115c:a1e0::/47' } }),
      'prefixes.v6',
      /is outside fd7a:115c:a1e0::\/48/,
    );
  });

  test('host bits set', () => {
    const error = errorFor({ prefixes: { v4: '100.64.0.1/10', v6: 'fd7a:115c:a1e0::1/48' } });
    assertIssue(
      error,
      'prefixes.v4',
      /100\.64\.0\.1\/10 has host bits set; the network is 100\.64\.0\.0\/10/,
    );
    assertIssue(error, 'prefixes.v6', /has host bits set; the network is fd7a:115c:a1e0::\/48/);
  });

  test('either family may be disabled, but not both', () => {
    assert.equal(parse({ prefixes: { v4: '' } }).prefixes.v4, '');
    assertIssue(errorFor({ prefixes: { v4: '', v6: '' } }), 'prefixes', /keep at least one address family/);
  });
});

describe('derp', () => {
  test('region_id and region_code', () => {
    assertIssue(errorFor({ derp: { server: { region_id: 0 } } }), 'derp.server.region_id', /1 to 65535/);
    assertIssue(errorFor({ derp: { server: { region_id: 65536 } } }), 'derp.server.region_id', /1 to 65535/);
    assertIssue(errorFor({ derp: { server: { region_id: 1.5 } } }), 'derp.server.region_id', /expected/);
    assertIssue(
      errorFor({ derp: { server: { region_code: 'Weft' } } }),
      'derp.server.region_code',
      /a-z, 0-9/,
    );
    assertIssue(errorFor({ derp: { server: { region_code: '' } } }), 'derp.server.region_code', /non-empty/);
  });

  test('urls must be http(s) and paths non-empty', () => {
    assert.deepEqual(
      parse({ derp: { urls: ['https://controlplane.tailscale.com/derpmap/default'] } }).derp.urls,
      ['https://controlplane.tailscale.com/derpmap/default'],
    );
    assertIssue(
      errorFor({ derp: { urls: ['file:///etc/derp.json'] } }),
      'derp.urls[0]',
      /http:\/\/ or https:\/\//,
    );
    assertIssue(errorFor({ derp: { paths: [''] } }), 'derp.paths[0]', /must not be empty/);
  });
});

describe('dns', () => {
  test('a full dns section', () => {
    const dns = {
      magic_dns: false,
      base_domain: 'ts.example.org',
      nameservers: {
        global: ['1.1.1.1', '2606:4700:4700::1111', 'https://dns.nextdns.io/abc123'],
        split: { 'corp.example.org': ['10.0.0.53'] },
      },
      search_domains: ['corp.example.org', 'lan'],
      extra_records: [
        { name: 'grafana.ts.example.org', type: 'A', value: '100.64.0.3' },
        { name: 'grafana.ts.example.org', type: 'AAAA', value: 'fd7a:115c:a1e0::3' },
      ],
    };
    assert.deepEqual(parse({ dns }).dns, dns);
  });

  test('base_domain must be a DNS name of at least two labels', () => {
    assertIssue(errorFor({ dns: { base_domain: 'internal' } }), 'dns.base_domain', /at least 2 labels/);
    assertIssue(errorFor({ dns: { base_domain: 'Tailnet.internal' } }), 'dns.base_domain', /label "Tailnet"/);
    assertIssue(
      errorFor({ dns: { base_domain: '-a.internal' } }),
      'dns.base_domain',
      /not starting or ending with "-"/,
    );
    assertIssue(errorFor({ dns: { base_domain: 'a..internal' } }), 'dns.base_domain', /label ""/);
    assertIssue(
      errorFor({ dns: { base_domain: `${'a'.repeat(64)}.internal` } }),
      'dns.base_domain',
      /1 to 63/,
    );
  });

  test('base_domain equal to the server_url host is rejected', () => {
    const error = errorFor({ server_url: 'https://hs.example.com', dns: { base_domain: 'hs.example.com' } });
    assertIssue(error, 'dns.base_domain', /hs\.example\.com is the host of server_url.*MagicDNS/);
  });

  test('base_domain that is a parent of the server_url host is rejected', () => {
    const error = errorFor({ server_url: 'https://hs.example.com', dns: { base_domain: 'example.com' } });
    assertIssue(
      error,
      'dns.base_domain',
      /example\.com is a parent of the host of server_url \(hs\.example\.com\)/,
    );
  });

  test('the server_url check runs alongside unrelated errors, but not on invalid values', () => {
    const error = errorFor({
      server_url: 'https://hs.example.com',
      listen_addr: 'x',
      dns: { base_domain: 'example.com' },
    });
    assertIssue(error, 'dns.base_domain', /is a parent of the host of server_url/);
    assertIssue(
      errorFor({ server_url: 'nope', dns: { base_domain: 'example.com' } }),
      'server_url',
      /not a URL/,
    );
    assertIssue(
      errorFor({ server_url: 'https://hs.Example.com', dns: { base_domain: 'Example.com' } }),
      'dns.base_domain',
      /not a DNS name/,
    );
  });

  test('base_domain beside or below the server host is fine, and IP hosts are never shadowed', () => {
    parse({ server_url: 'https://hs.example.com', dns: { base_domain: 'ts.example.com' } });
    parse({ server_url: 'https://example.com', dns: { base_domain: 'ts.example.com' } });
    parse({ server_url: 'http://[::1]:8080', dns: { base_domain: 'tailnet.internal' } });
  });

  test('bad nameservers, split domains and records', () => {
    const error = errorFor({
      dns: {
        nameservers: {
          global: ['dns.google', 'http://dns.example/q'],
          split: { 'Corp Example': ['10.0.0.53'] },
        },
        search_domains: ['bad_name'],
        extra_records: [
          { name: 'a.b', type: 'A', value: '::1' },
          { name: 'c.d', type: 'MX', value: '1.2.3.4' },
          { name: 'e.f', type: 'A', value: 'nope' },
        ],
      },
    });
    assertIssue(error, 'dns.nameservers.global[0]', /not an IP address or an https:\/\/ DNS-over-HTTPS URL/);
    assertIssue(error, 'dns.nameservers.global[1]', /not an IP address or an https:\/\//);
    assertIssue(error, 'dns.nameservers.split["Corp Example"]', /bad key: "Corp Example" is not a DNS name/);
    assertIssue(error, 'dns.search_domains[0]', /not a DNS name/);
    assertIssue(error, 'dns.extra_records[0].value', /a type A record needs an IPv4 address/);
    assertIssue(error, 'dns.extra_records[1].type', /"A", "AAAA"/);
    assertIssue(error, 'dns.extra_records[2].value', /"nope" is not an IP address/);
  });
});

describe('node', () => {
  test('expiry is a duration; 0s means keys never expire', () => {
    assert.equal(parse({ node: { expiry: '180d' } }).node.expiry, 180 * 24 * 3_600_000);
    assert.equal(parse({ node: { expiry: '0s' } }).node.expiry, 0);
    assertIssue(errorFor({ node: { expiry: 'soon' } }), 'node.expiry', /./);
    assertIssue(errorFor({ node: { expires: '1d' } }), 'node', /expires/);
  });
});

describe('policy', () => {
  test('file mode needs a path, database mode takes none', () => {
    assert.deepEqual(parse({ policy: { mode: 'file', path: 'policy.hujson' } }).policy, {
      mode: 'file',
      path: 'policy.hujson',
    });
    assertIssue(errorFor({ policy: { mode: 'file' } }), 'policy.path', /required when mode is file/);
    assertIssue(errorFor({ policy: { path: 'policy.hujson' } }), 'policy.path', /only used with mode: file/);
  });
});

describe('oidc', () => {
  const oidc = { issuer: 'https://idp.example.com', client_id: 'weft' };

  test('a minimal section gets the defaults: PKCE S256, verified e-mail required, no allow-lists', () => {
    assert.deepEqual(parse({ oidc }).oidc, {
      ...oidc,
      scope: ['openid', 'profile', 'email'],
      extra_params: {},
      pkce: { enabled: true, method: 'S256' },
      allowed_domains: [],
      allowed_users: [],
      allowed_groups: [],
      email_verified_required: true,
      use_expiry_from_token: false,
      only_start_if_oidc_is_available: true,
      policy_groups: false,
    });
  });

  test('scope must include openid', () => {
    assertIssue(errorFor({ oidc: { ...oidc, scope: ['profile'] } }), 'oidc.scope', /must include openid/);
    assert.deepEqual(parse({ oidc: { ...oidc, scope: ['openid', 'groups'] } }).oidc?.scope, [
      'openid',
      'groups',
    ]);
  });

  test('extra_params cannot override the parameters weft sets', () => {
    assert.deepEqual(parse({ oidc: { ...oidc, extra_params: { prompt: 'login' } } }).oidc?.extra_params, {
      prompt: 'login',
    });
    assertIssue(
      errorFor({ oidc: { ...oidc, extra_params: { state: 'x' } } }),
      'oidc.extra_params.state',
      /set by weft/,
    );
    assertIssue(
      errorFor({ oidc: { ...oidc, extra_params: { 'a b': 'x' } } }),
      'oidc.extra_params["a b"]',
      /parameter name/,
    );
  });

  test('extra_params refuses what weft sets and what breaks the flow, naming the key and the reason', () => {
    const setByWeft = [
      'client_id',
      'redirect_uri',
      'response_type',
      'scope',
      'state',
      'nonce',
      'code_challenge',
      'code_challenge_method',
    ];
    for (const name of setByWeft) {
      assertIssue(
        errorFor({ oidc: { ...oidc, extra_params: { [name]: 'x' } } }),
        `oidc.extra_params.${name}`,
        new RegExp(`^${name} is set by weft`),
      );
    }
    for (const name of ['response_mode', 'request', 'request_uri']) {
      assertIssue(
        errorFor({ oidc: { ...oidc, extra_params: { [name]: 'x' } } }),
        `oidc.extra_params.${name}`,
        new RegExp(`^${name} would break the login`),
      );
    }
    assertIssue(
      errorFor({ oidc: { ...oidc, extra_params: { response_mode: 'form_post' } } }),
      'oidc.extra_params.response_mode',
      /callback URL's query/,
    );
    // Names are case-sensitive; only the exact parameter is weft's. Prototype names are plain names.
    assert.deepEqual(
      parse({ oidc: { ...oidc, extra_params: { State: 'x', constructor: 'y' } } }).oidc?.extra_params,
      { State: 'x', constructor: 'y' },
    );
  });

  test('a public client (no client_secret_path) cannot turn PKCE off', () => {
    assertIssue(
      errorFor({ oidc: { ...oidc, pkce: { enabled: false } } }),
      'oidc.pkce.enabled',
      /without client_secret_path: a public client without PKCE/,
    );
    const confidential = { ...oidc, client_secret_path: '/run/secrets/oidc', pkce: { enabled: false } };
    assert.equal(parse({ oidc: confidential }).oidc?.pkce.enabled, false);
    assert.equal(parse({ oidc }).oidc?.pkce.enabled, true);
  });

  test('pkce.method is S256 or plain', () => {
    assertIssue(errorFor({ oidc: { ...oidc, pkce: { method: 'S512' } } }), 'oidc.pkce.method', /S256/);
  });

  test('issuer and client_id are required when the section is present', () => {
    const error = errorFor({ oidc: { allowed_users: ['a@example.com'] } });
    assertIssue(error, 'oidc.issuer', /required/);
    assertIssue(error, 'oidc.client_id', /required/);
  });

  test('plain http is only allowed for a loopback issuer', () => {
    parse({ oidc: { ...oidc, issuer: 'http://127.0.0.1:9000' } });
    parse({ oidc: { ...oidc, issuer: 'http://localhost:9000/realms/x' } });
    parse({ oidc: { ...oidc, issuer: 'http://[::1]:9000' } });
    assertIssue(
      errorFor({ oidc: { ...oidc, issuer: 'http://idp.example.com' } }),
      'oidc.issuer',
      /must use https/,
    );
  });
});

describe('ephemeral_node_inactivity_timeout and log', () => {
  test('the timeout is parsed to milliseconds', () => {
    assert.equal(
      parse({ ephemeral_node_inactivity_timeout: '1h30m' }).ephemeral_node_inactivity_timeout,
      5_400_000,
    );
  });

  test('a bad or zero timeout is rejected', () => {
    const accepted = /expected a duration such as 90s/;
    assertIssue(
      errorFor({ ephemeral_node_inactivity_timeout: '30' }),
      'ephemeral_node_inactivity_timeout',
      accepted,
    );
    assertIssue(
      errorFor({ ephemeral_node_inactivity_timeout: '0s' }),
      'ephemeral_node_inactivity_timeout',
      /longer than 0s/,
    );
    assertIssue(
      errorFor({ ephemeral_node_inactivity_timeout: 30 }),
      'ephemeral_node_inactivity_timeout',
      /expected a string/,
    );
  });

  test('log level and format', () => {
    assert.deepEqual(parse({ log: { level: 'debug', format: 'json' } }).log, {
      level: 'debug',
      format: 'json',
    });
  });
});

describe('derp and tls', () => {
  test('tls_cert_path and tls_key_path go together', () => {
    assertIssue(errorFor({ tls_cert_path: 'a.crt', server_url: 'https://h' }), 'tls_key_path', /go together/);
    assertIssue(errorFor({ tls_key_path: 'a.key' }), 'tls_cert_path', /go together/);
  });

  test('advertised addresses must be of their family, and a mesh needs its key', () => {
    const error = errorFor({
      derp: { server: { ipv4: '::1', ipv6: '10.0.0.1', mesh_with: ['https://derp2.example.com/derp'] } },
    });
    assertIssue(error, 'derp.server.ipv4', /IPv4/);
    assertIssue(error, 'derp.server.ipv6', /IPv6/);
    assertIssue(error, 'derp.server.mesh_key_path', /mesh_with/);
  });

  test('TLS needs an https server_url; the mesh key only crosses the network over https', () => {
    assertIssue(
      errorFor({ tls_cert_path: 'a.crt', tls_key_path: 'a.key' }),
      'server_url',
      /https:\/\/ when tls_cert_path/,
    );
    assertIssue(
      errorFor({ derp: { server: { mesh_key_path: 'k', mesh_with: ['http://derp2.example.com/derp'] } } }),
      'derp.server.mesh_with[0]',
      /must use https/,
    );
    assert.deepEqual(
      parse({ derp: { server: { mesh_key_path: 'k', mesh_with: ['http://127.0.0.1:8081/derp'] } } }).derp
        .server.mesh_with,
      ['http://127.0.0.1:8081/derp'],
    );
    assertIssue(
      errorFor({ derp: { server: { private_key_path: 'noise_private.key' } } }),
      'derp.server.private_key_path',
      /Noise key/,
    );
  });

  test('an empty stun_listen_addr turns STUN off', () => {
    assert.equal(parse({ derp: { server: { stun_listen_addr: '' } } }).derp.server.stun_listen_addr, '');
  });
});
