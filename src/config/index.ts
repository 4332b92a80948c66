/**
 * weft's configuration: a YAML file plus WEFT_* environment overrides, validated into one typed Config.
 * A leaf layer: imports nothing from the rest of src/. See docs/config.md for every key.
 */
export { DurationError, formatDuration, parseDuration } from './duration.ts';
export { type ConfigEnvVariable, ENV_TABLE, type EnvBinding, type EnvKind, NON_CONFIG_ENV } from './env.ts';
export { ConfigError, type ConfigIssue } from './errors.ts';
export { type LoadOptions, loadConfig, type ParseOptions, parseConfig } from './load.ts';
export { type HostPort, parseHostPort } from './net.ts';
export { formatConfig, type PrintableConfig, REDACTED, redactConfig } from './redact.ts';
export {
  type Config,
  type DatabaseConfig,
  type DerpConfig,
  type DnsConfig,
  dnsSettingsSchema,
  type LogConfig,
  type OidcConfig,
  type PolicyConfig,
  type PrefixesConfig,
  TAILSCALE_V4_RANGE,
  TAILSCALE_V6_RANGE,
} from './schema.ts';
