/**
 * The config schema: every key, its default and its validation, as one zod schema. docs/config.md is
 * the prose version of this file; keep them in step.
 *
 * Keys stay snake_case exactly as written in YAML so that an error path, the printed config and the file
 * all use the same names. Every object is strict (unknown keys are errors: a typo must not silently fall
 * back to a default). Nested sections use `.prefault({})` so their own defaults apply when the section is
 * absent. Values are parsed once here: durations become milliseconds, prefixes and server_url become
 * canonical text, and either/or sections (database, policy) become discriminated unions.
 */
import { isIPv4 } from 'node:net';
import { z } from 'zod';
import { DurationError, parseDuration } from './duration.ts';
import {
  checkPrefixInside,
  dnsNameProblem,
  hostPortProblem,
  type IpFamily,
  ipProblem,
  isIpAddress,
  isLoopbackHost,
  isSameOrSubdomain,
  resolverProblem,
  trustedProxyProblem,
  urlProblem,
} from './net.ts';

/** The ranges Tailscale clients assume for node addresses (CGNAT space and Tailscale's ULA). */
export const TAILSCALE_V4_RANGE = '100.64.0.0/10';
export const TAILSCALE_V6_RANGE = 'fd7a:115c:a1e0::/48';

/** A string that must pass `problem` (which returns a reason when it does not). */
function checkedString(problem: (text: string) => string | undefined) {
  return z.string().superRefine((text, ctx) => {
    const reason = problem(text);
    if (reason !== undefined) ctx.addIssue({ code: 'custom', message: reason });
  });
}

const nonEmptyString = z.string().min(1, 'must not be empty');
const hostPort = checkedString(hostPortProblem);
const ipAddress = checkedString(ipProblem);
const resolver = checkedString(resolverProblem);
const httpUrl = checkedString((text) => urlProblem(text, ['http:', 'https:']));
/** Names under which MagicDNS answers need two labels (a bare TLD would capture all of its names). */
const domainName = checkedString((text) => dnsNameProblem(text, 2));
const dnsName = checkedString((text) => dnsNameProblem(text, 1));

/** Origin-only http(s) URL; output is the canonical origin, so a trailing slash disappears. */
const serverUrl = checkedString(serverUrlProblem).transform((text) => new URL(text).origin);

function serverUrlProblem(text: string): string | undefined {
  const problem = urlProblem(text, ['http:', 'https:']);
  if (problem !== undefined) return problem;
  const url = new URL(text);
  if (url.pathname !== '/' || url.search !== '' || url.hash !== '') {
    return `${JSON.stringify(text)} must be scheme://host[:port] only, without a path, query or fragment`;
  }
  return undefined;
}

const duration = z.string().transform((text, ctx) => {
  try {
    return parseDuration(text);
  } catch (error) {
    if (!(error instanceof DurationError)) throw error;
    ctx.addIssue({ code: 'custom', message: error.message });
    return z.NEVER;
  }
});

const positiveDuration = duration.refine((ms) => ms > 0, 'must be longer than 0s');

/** A prefix of `family` inside `range`, or "" to disable that address family; output is canonical text. */
function nodePrefix(family: IpFamily, range: string) {
  return z.string().transform((text, ctx) => {
    if (text === '') return '';
    const checked = checkPrefixInside(text, family, range);
    if ('canonical' in checked) return checked.canonical;
    ctx.addIssue({ code: 'custom', message: checked.problem });
    return z.NEVER;
  });
}

const prefixesSchema = z
  .strictObject({
    v4: nodePrefix(4, TAILSCALE_V4_RANGE).default(TAILSCALE_V4_RANGE),
    v6: nodePrefix(6, TAILSCALE_V6_RANGE).default(TAILSCALE_V6_RANGE),
    allocation: z.enum(['sequential', 'random']).default('sequential'),
  })
  .refine((prefixes) => prefixes.v4 !== '' || prefixes.v6 !== '', {
    message: 'v4 and v6 are both "": keep at least one address family enabled',
  });

export type DatabaseConfig = { type: 'sqlite' } | { type: 'postgres'; url: string };

const postgresUrl = checkedString((text) =>
  /^postgres(ql)?:\/\//.test(text) && URL.canParse(text)
    ? undefined
    : 'must be a postgres:// or postgresql:// URL, e.g. postgres://weft:secret@db.example.com:5432/weft',
);

/** `type` may be left out: a `url` alone means PostgreSQL (so WEFT_DATABASE_URL is enough), nothing means SQLite. */
const databaseSchema = z
  .strictObject({
    type: z.enum(['sqlite', 'postgres']).optional(),
    url: postgresUrl.optional(),
  })
  .superRefine((database, ctx) => {
    if (database.type === 'postgres' && database.url === undefined) {
      ctx.addIssue({ code: 'custom', path: ['url'], message: 'required when type is postgres' });
    }
    if (database.type === 'sqlite' && database.url !== undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['url'],
        message: 'only used with type: postgres (SQLite lives in data_dir)',
      });
    }
  })
  .transform(
    (database): DatabaseConfig =>
      database.url !== undefined ? { type: 'postgres', url: database.url } : { type: 'sqlite' },
  );

/**
 * A mesh peer's DERP URL. The link sends the region's mesh key to whoever answers there, so only TLS
 * (which proves who answers) may carry it; plain http is tolerable on loopback only (tests, one host).
 */
const meshUrl = checkedString((text) => {
  const problem = urlProblem(text, ['http:', 'https:']);
  if (problem !== undefined) return problem;
  const url = new URL(text);
  if (url.protocol === 'http:' && !isLoopbackHost(url.hostname)) {
    return `${JSON.stringify(text)} must use https:// (the mesh key must not cross the network in the clear; http:// is only allowed for loopback addresses)`;
  }
  return undefined;
});

const derpServerSchema = z.strictObject({
  enabled: z.boolean().default(true),
  region_id: z.int().min(1, 'must be from 1 to 65535').max(65535, 'must be from 1 to 65535').default(999),
  region_code: z
    .string()
    .regex(/^[a-z0-9-]+$/, 'must be non-empty and use only a-z, 0-9 and "-"')
    .default('weft'),
  region_name: nonEmptyString.default('weft embedded DERP'),
  /** "" turns the STUN server off (clients then cannot learn their public address from this region). */
  stun_listen_addr: checkedString((text) => (text === '' ? undefined : hostPortProblem(text))).default(
    '0.0.0.0:3478',
  ),
  verify_clients: z.boolean().default(true),
  /** The relay's own key; relative to data_dir. Must not be the Noise key file. */
  private_key_path: nonEmptyString.default('derp_server_private.key'),
  automatically_add_embedded_derp_region: z.boolean().default(true),
  /** Addresses advertised in the DERP map; default: the host of server_url when it is an IP literal. */
  ipv4: ipAddress.optional(),
  ipv6: ipAddress.optional(),
  /** File holding the region's 64-hex-digit mesh key, shared by every DERP server of the region. */
  mesh_key_path: nonEmptyString.optional(),
  /** DERP URLs of the other servers of this region (e.g. https://derp2.example.com/derp). */
  mesh_with: z.array(meshUrl).default(() => []),
});

const derpSchema = z
  .strictObject({
    server: derpServerSchema.prefault({}),
    urls: z.array(httpUrl).default(() => []),
    paths: z.array(nonEmptyString).default(() => []),
  })
  .superRefine((derp, ctx) => {
    const { ipv4, ipv6, mesh_with, mesh_key_path } = derp.server;
    if (ipv4 !== undefined && !isIPv4(ipv4)) {
      ctx.addIssue({ code: 'custom', path: ['server', 'ipv4'], message: 'must be an IPv4 address' });
    }
    if (ipv6 !== undefined && isIPv4(ipv6)) {
      ctx.addIssue({ code: 'custom', path: ['server', 'ipv6'], message: 'must be an IPv6 address' });
    }
    if (derp.server.private_key_path === 'noise_private.key') {
      ctx.addIssue({
        code: 'custom',
        path: ['server', 'private_key_path'],
        message: "must not be the control plane's Noise key file (noise_private.key)",
      });
    }
    if (mesh_with.length > 0 && mesh_key_path === undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['server', 'mesh_key_path'],
        message: 'required when mesh_with is set',
      });
    }
  });

const extraRecordSchema = z
  .strictObject({ name: dnsName, type: z.enum(['A', 'AAAA']), value: ipAddress })
  .superRefine((record, ctx) => {
    if (!isIpAddress(record.value)) return; // already reported
    if ((record.type === 'A') !== isIPv4(record.value)) {
      const wanted = record.type === 'A' ? 'an IPv4' : 'an IPv6';
      ctx.addIssue({
        code: 'custom',
        path: ['value'],
        message: `a type ${record.type} record needs ${wanted} address`,
      });
    }
  });

const dnsSchema = z.strictObject({
  magic_dns: z.boolean().default(true),
  base_domain: domainName.default('tailnet.internal'),
  nameservers: z
    .strictObject({
      global: z.array(resolver).default(() => []),
      split: z.record(dnsName, z.array(resolver)).default(() => ({})),
    })
    .prefault({}),
  search_domains: z.array(dnsName).default(() => []),
  extra_records: z.array(extraRecordSchema).default(() => []),
});

/**
 * The part of `dns` admins may change at run time (the REST API's camelCase names), checked by the same
 * rules as the keys above so that a value the config refuses is refused there too. Every field is
 * required: a partial update would leave it unclear whether a missing list means "keep" or "clear".
 */
export const dnsSettingsSchema = z.strictObject({
  nameservers: z.strictObject({
    global: z.array(resolver),
    split: z.record(dnsName, z.array(resolver)),
  }),
  searchDomains: z.array(dnsName),
  extraRecords: z.array(extraRecordSchema),
});

export type PolicyConfig = { mode: 'database' } | { mode: 'file'; path: string };

const policySchema = z
  .strictObject({
    mode: z.enum(['database', 'file']).default('database'),
    path: nonEmptyString.optional(),
  })
  .superRefine((policy, ctx) => {
    if (policy.mode === 'file' && policy.path === undefined) {
      ctx.addIssue({ code: 'custom', path: ['path'], message: 'required when mode is file' });
    }
    if (policy.mode === 'database' && policy.path !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['path'], message: 'only used with mode: file' });
    }
  })
  .transform(
    (policy): PolicyConfig =>
      policy.mode === 'file' ? { mode: 'file', path: policy.path ?? '' } : { mode: 'database' },
  );

/** The issuer is where tokens are verified from, so plain http is only tolerable on loopback (tests). */
const issuerUrl = checkedString((text) => {
  const problem = urlProblem(text, ['http:', 'https:']);
  if (problem !== undefined) return problem;
  const url = new URL(text);
  if (url.protocol === 'http:' && !isLoopbackHost(url.hostname)) {
    return `${JSON.stringify(text)} must use https:// (http:// is only allowed for localhost and loopback addresses)`;
  }
  return undefined;
});

/**
 * Authorization request parameters `extra_params` may not hold, with the reason: the ones weft sets
 * itself (src/auth/oidc.ts `begin` and openid-client's buildAuthorizationUrl), and ones that would take
 * the provider's answer somewhere the callback does not read it.
 */
const OIDC_RESERVED_PARAMS = new Map([
  ['client_id', 'is set by weft from oidc.client_id'],
  ['redirect_uri', 'is set by weft (server_url + /oidc/callback)'],
  ['response_type', 'is set by weft (code: the authorization code flow)'],
  ['scope', 'is set by weft from oidc.scope'],
  ['state', 'is set by weft (a fresh random value for each login)'],
  ['nonce', 'is set by weft (a fresh random value for each login)'],
  ['code_challenge', 'is set by weft (PKCE, see oidc.pkce)'],
  ['code_challenge_method', 'is set by weft from oidc.pkce.method'],
  [
    'response_mode',
    "would break the login: weft reads the provider's answer from the callback URL's query, the code flow's default",
  ],
  ['request', 'would break the login: a request object replaces the parameters weft sets'],
  ['request_uri', 'would break the login: a request object replaces the parameters weft sets'],
]);

const oidcExtraParams = z
  .record(z.string().regex(/^[A-Za-z0-9_.-]+$/, 'must be a plain parameter name'), z.string())
  .superRefine((params, ctx) => {
    for (const name of Object.keys(params)) {
      const reason = OIDC_RESERVED_PARAMS.get(name);
      if (reason !== undefined) {
        ctx.addIssue({ code: 'custom', path: [name], message: `${name} ${reason} and cannot be set here` });
      }
    }
  });

const oidcFields = z.strictObject({
  issuer: issuerUrl,
  client_id: nonEmptyString,
  /** Omitted for a public client (PKCE only). */
  client_secret_path: nonEmptyString.optional(),
  scope: z
    .array(nonEmptyString)
    .refine((scopes) => scopes.includes('openid'), 'must include openid')
    .default(() => ['openid', 'profile', 'email']),
  /** Added to the authorization request, e.g. `{ prompt: select_account }`. */
  extra_params: oidcExtraParams.default(() => ({})),
  pkce: z
    .strictObject({
      enabled: z.boolean().default(true),
      method: z.enum(['S256', 'plain']).default('S256'),
    })
    .prefault({}),
  allowed_domains: z.array(domainName).default(() => []),
  allowed_users: z.array(nonEmptyString).default(() => []),
  allowed_groups: z.array(nonEmptyString).default(() => []),
  email_verified_required: z.boolean().default(true),
  /** Node keys expire when the ID token does, instead of after node.expiry. */
  use_expiry_from_token: z.boolean().default(false),
  /** false: start anyway when discovery fails (CLI registration keeps working; OIDC retries at each login). */
  only_start_if_oidc_is_available: z.boolean().default(true),
  /** The `groups` claim of OIDC users becomes policy groups (`group:<name>`). */
  policy_groups: z.boolean().default(false),
});

const oidcSchema = oidcFields.superRefine((oidc, ctx) => {
  // A public client proves nothing at the token endpoint: PKCE is all that ties the code to this login.
  if (!oidc.pkce.enabled && oidc.client_secret_path === undefined) {
    ctx.addIssue({
      code: 'custom',
      path: ['pkce', 'enabled'],
      message:
        'cannot be false without client_secret_path: a public client without PKCE lets anyone who intercepts the authorization code redeem it',
    });
  }
});

const logSchema = z.strictObject({
  level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'),
  /** Absent means "decide at run time": pretty on a terminal, JSON otherwise. */
  format: z.enum(['json', 'pretty']).optional(),
});

export const configSchema = z
  .strictObject({
    server_url: serverUrl.default('http://127.0.0.1:8080'),
    listen_addr: hostPort.default('0.0.0.0:8080'),
    /** "" disables the metrics listener. */
    metrics_listen_addr: checkedString((text) => (text === '' ? undefined : hostPortProblem(text))).default(
      '127.0.0.1:9090',
    ),
    /**
     * Reverse proxies (IP addresses or CIDR prefixes) whose X-Forwarded-For weft believes: the client's
     * address then comes from it (rate limits, logs). Empty: the connection's own address.
     */
    trusted_proxies: z
      .array(checkedString(trustedProxyProblem))
      .max(256)
      .default(() => []),
    /** Made absolute against the working directory by parseConfig. */
    data_dir: nonEmptyString.default('./data'),
    /** PEM certificate chain and key: the main listener then serves HTTPS (needed for DERP on port 443). */
    tls_cert_path: nonEmptyString.optional(),
    tls_key_path: nonEmptyString.optional(),
    database: databaseSchema.prefault({}),
    prefixes: prefixesSchema.prefault({}),
    derp: derpSchema.prefault({}),
    dns: dnsSchema.prefault({}),
    policy: policySchema.prefault({}),
    oidc: oidcSchema.optional(),
    /** Milliseconds. */
    ephemeral_node_inactivity_timeout: positiveDuration.prefault('30m'),
    node: z
      .strictObject({
        /** Default node key expiry in milliseconds; 0 = keys never expire (Headscale's default). */
        expiry: duration.prefault('0s'),
        /** New devices wait for an admin's approval (`weft nodes approve`) before they join. */
        device_approval: z.boolean().default(false),
      })
      .prefault({}),
    log: logSchema.prefault({}),
  })
  .superRefine((config, ctx) => {
    if ((config.tls_cert_path === undefined) !== (config.tls_key_path === undefined)) {
      const missing = config.tls_cert_path === undefined ? 'tls_cert_path' : 'tls_key_path';
      ctx.addIssue({
        code: 'custom',
        path: [missing],
        message: 'tls_cert_path and tls_key_path go together',
      });
    }
    if (config.tls_cert_path !== undefined && config.server_url.startsWith('http:')) {
      ctx.addIssue({
        code: 'custom',
        path: ['server_url'],
        message: 'must be https:// when tls_cert_path is set (the listener then speaks only TLS)',
      });
    }
  })
  .superRefine(
    (config, ctx) => {
      const problem = magicDnsShadowProblem(config.server_url, config.dns.base_domain);
      if (problem !== undefined)
        ctx.addIssue({ code: 'custom', path: ['dns', 'base_domain'], message: problem });
    },
    // Compare only valid values: an invalid one is already reported, and comparing it would say nothing useful.
    {
      when: (payload) =>
        !payload.issues.some((issue) => ['server_url', 'dns'].includes(String(issue.path?.[0]))),
    },
  );

/**
 * Headscale's rule: the server's own host must not be base_domain or a name under it, or MagicDNS would
 * answer for it and clients could no longer reach the control server (or its DERP) by name.
 */
function magicDnsShadowProblem(serverUrlText: string, baseDomain: string): string | undefined {
  const host = new URL(serverUrlText).hostname;
  if (host.startsWith('[') || isIpAddress(host) || !isSameOrSubdomain(host, baseDomain)) return undefined;
  const relation = host === baseDomain ? 'is' : 'is a parent of';
  return `${baseDomain} ${relation} the host of server_url (${host}); MagicDNS would answer for the server's own name and clients could not reach it`;
}

export type Config = z.output<typeof configSchema>;
export type PrefixesConfig = Config['prefixes'];
export type DerpConfig = Config['derp'];
export type DnsConfig = Config['dns'];
export type OidcConfig = NonNullable<Config['oidc']>;
export type LogConfig = Config['log'];
