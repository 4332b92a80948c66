/**
 * Environment variables that override single config keys.
 *
 * ENV_TABLE is the whole mapping: one variable per key, written out, no derived names and no nesting
 * rules. Lists and maps (derp.urls, dns.nameservers, …) have no variable; they belong in the file.
 * Any other WEFT_* variable is an error, because a misspelt override that silently does nothing is worse
 * than a refusal to start; NON_CONFIG_ENV lists the WEFT_* variables that are legitimately not keys.
 */
import type { ConfigIssue } from './errors.ts';
import { closestName } from './suggest.ts';

/** How the variable's text becomes the key's value. */
export type EnvKind = 'string' | 'boolean' | 'integer';

export interface EnvBinding {
  /** Dotted key path. */
  readonly path: string;
  readonly kind: EnvKind;
}

export const ENV_TABLE = {
  WEFT_SERVER_URL: { path: 'server_url', kind: 'string' },
  WEFT_LISTEN_ADDR: { path: 'listen_addr', kind: 'string' },
  WEFT_METRICS_LISTEN_ADDR: { path: 'metrics_listen_addr', kind: 'string' },
  WEFT_DATA_DIR: { path: 'data_dir', kind: 'string' },
  WEFT_TLS_CERT_PATH: { path: 'tls_cert_path', kind: 'string' },
  WEFT_TLS_KEY_PATH: { path: 'tls_key_path', kind: 'string' },
  WEFT_DATABASE_TYPE: { path: 'database.type', kind: 'string' },
  WEFT_DATABASE_URL: { path: 'database.url', kind: 'string' },
  WEFT_PREFIXES_V4: { path: 'prefixes.v4', kind: 'string' },
  WEFT_PREFIXES_V6: { path: 'prefixes.v6', kind: 'string' },
  WEFT_PREFIXES_ALLOCATION: { path: 'prefixes.allocation', kind: 'string' },
  WEFT_DERP_SERVER_ENABLED: { path: 'derp.server.enabled', kind: 'boolean' },
  WEFT_DERP_SERVER_REGION_ID: { path: 'derp.server.region_id', kind: 'integer' },
  WEFT_DERP_SERVER_REGION_CODE: { path: 'derp.server.region_code', kind: 'string' },
  WEFT_DERP_SERVER_REGION_NAME: { path: 'derp.server.region_name', kind: 'string' },
  WEFT_STUN_LISTEN_ADDR: { path: 'derp.server.stun_listen_addr', kind: 'string' },
  WEFT_DERP_SERVER_VERIFY_CLIENTS: { path: 'derp.server.verify_clients', kind: 'boolean' },
  WEFT_DERP_SERVER_PRIVATE_KEY_PATH: { path: 'derp.server.private_key_path', kind: 'string' },
  WEFT_DERP_SERVER_IPV4: { path: 'derp.server.ipv4', kind: 'string' },
  WEFT_DERP_SERVER_IPV6: { path: 'derp.server.ipv6', kind: 'string' },
  WEFT_DERP_SERVER_MESH_KEY_PATH: { path: 'derp.server.mesh_key_path', kind: 'string' },
  WEFT_DERP_SERVER_AUTOMATICALLY_ADD_EMBEDDED_DERP_REGION: {
    path: 'derp.server.automatically_add_embedded_derp_region',
    kind: 'boolean',
  },
  WEFT_DNS_MAGIC_DNS: { path: 'dns.magic_dns', kind: 'boolean' },
  WEFT_DNS_BASE_DOMAIN: { path: 'dns.base_domain', kind: 'string' },
  WEFT_POLICY_MODE: { path: 'policy.mode', kind: 'string' },
  WEFT_POLICY_PATH: { path: 'policy.path', kind: 'string' },
  WEFT_OIDC_ISSUER: { path: 'oidc.issuer', kind: 'string' },
  WEFT_OIDC_CLIENT_ID: { path: 'oidc.client_id', kind: 'string' },
  WEFT_OIDC_CLIENT_SECRET_PATH: { path: 'oidc.client_secret_path', kind: 'string' },
  WEFT_EPHEMERAL_NODE_INACTIVITY_TIMEOUT: { path: 'ephemeral_node_inactivity_timeout', kind: 'string' },
  WEFT_NODE_EXPIRY: { path: 'node.expiry', kind: 'string' },
  WEFT_NODE_DEVICE_APPROVAL: { path: 'node.device_approval', kind: 'boolean' },
  WEFT_LOG_LEVEL: { path: 'log.level', kind: 'string' },
  WEFT_LOG_FORMAT: { path: 'log.format', kind: 'string' },
} as const satisfies Record<string, EnvBinding>;

export type ConfigEnvVariable = keyof typeof ENV_TABLE;

/** WEFT_* variables that are not config keys: the config file itself, and the CLI's remote mode. */
export const NON_CONFIG_ENV = ['WEFT_CONFIG', 'WEFT_SERVER', 'WEFT_API_KEY'] as const;

export interface EnvOverlay {
  /** A copy of the input document with the overrides applied; the input is not modified. */
  readonly document: Record<string, unknown>;
  /** Key path → the variable that set it, to blame the variable when the value is invalid. */
  readonly setBy: ReadonlyMap<string, string>;
  readonly issues: ConfigIssue[];
}

/** Applies every WEFT_* variable in `env` to `document`. Variables are visited in name order. */
export function overlayEnv(document: Record<string, unknown>, env: NodeJS.ProcessEnv): EnvOverlay {
  let result = document;
  const setBy = new Map<string, string>();
  const issues: ConfigIssue[] = [];
  for (const variable of Object.keys(env).sort()) {
    const text = env[variable];
    if (!variable.startsWith('WEFT_') || text === undefined || isNonConfigVariable(variable)) continue;
    if (!isConfigVariable(variable)) {
      issues.push(unknownVariableIssue(variable));
      continue;
    }
    const { path, kind } = ENV_TABLE[variable];
    const value = parseEnvValue(text, kind);
    if (typeof value === 'object') {
      issues.push({ path, message: value.problem, source: 'environment', variable });
      continue;
    }
    result = setPath(result, path.split('.'), value);
    setBy.set(path, variable);
  }
  return { document: result, setBy, issues };
}

function isConfigVariable(name: string): name is ConfigEnvVariable {
  return Object.hasOwn(ENV_TABLE, name);
}

function isNonConfigVariable(name: string): boolean {
  return (NON_CONFIG_ENV as readonly string[]).includes(name);
}

function parseEnvValue(text: string, kind: EnvKind): string | boolean | number | { problem: string } {
  switch (kind) {
    case 'string':
      return text;
    case 'boolean': {
      const lower = text.toLowerCase();
      if (lower === 'true' || lower === '1') return true;
      if (lower === 'false' || lower === '0') return false;
      return { problem: `expected true, false, 1 or 0; got ${JSON.stringify(text)}` };
    }
    case 'integer':
      return /^\d+$/.test(text)
        ? Number(text)
        : { problem: `expected a whole number; got ${JSON.stringify(text)}` };
  }
}

function unknownVariableIssue(variable: string): ConfigIssue {
  const known = [...Object.keys(ENV_TABLE), ...NON_CONFIG_ENV];
  const suggestion = closestName(variable, known);
  const hint = suggestion === undefined ? '' : ` (did you mean ${suggestion}?)`;
  return {
    path: '',
    message: `unknown environment variable ${variable}${hint}; known: ${known.join(', ')}`,
    source: 'environment',
    variable,
  };
}

/** Copy-on-write set: clones each mapping along the path. Leaves a non-mapping in the way alone, so the schema reports it. */
function setPath(
  document: Record<string, unknown>,
  path: readonly string[],
  value: unknown,
): Record<string, unknown> {
  const [key, ...rest] = path;
  if (key === undefined) return document;
  if (rest.length === 0) return { ...document, [key]: value };
  const child = document[key] ?? {};
  if (!isMapping(child)) return document;
  return { ...document, [key]: setPath(child, rest, value) };
}

export function isMapping(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
