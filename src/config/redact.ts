/**
 * The printable form of a Config, for `weft serve --print-config` and for logging the effective config.
 *
 * Redaction hides only the secret part (a connection URL keeps its host and database, so an
 * admin can still see where weft connects). Values the schema turned into numbers go back to the text
 * form the file uses, so the printed YAML is itself a valid config file.
 */
import { stringify } from 'yaml';
import { formatDuration } from './duration.ts';
import type { Config } from './schema.ts';

export const REDACTED = '***';

/** The Config as it would be written in a file, with secrets replaced by REDACTED. */
export type PrintableConfig = Omit<Config, 'ephemeral_node_inactivity_timeout' | 'node'> & {
  ephemeral_node_inactivity_timeout: string;
  node: { expiry: string };
};

/** Every key that can hold a secret is hidden here; a new secret key must be added. */
export function redactConfig(config: Config): PrintableConfig {
  const database =
    config.database.type === 'postgres'
      ? { ...config.database, url: redactUrlSecrets(config.database.url) }
      : config.database;
  return {
    ...structuredClone(config),
    database,
    ephemeral_node_inactivity_timeout: formatDuration(config.ephemeral_node_inactivity_timeout),
    node: { ...config.node, expiry: formatDuration(config.node.expiry) },
  };
}

/** YAML text of redactConfig(config). */
export function formatConfig(config: Config): string {
  return stringify(redactConfig(config), { lineWidth: 0 });
}

/**
 * Replaces the password in `scheme://user:password@host/…` and any `password=` query parameter, leaving
 * the rest of the text exactly as written. Works on text rather than URL objects so that nothing else is
 * re-encoded and forms URL cannot parse are still covered.
 */
export function redactUrlSecrets(url: string): string {
  return url
    .replace(/^([a-z][a-z0-9+.-]*:\/\/[^:@/?#]*:)[^@/?#]+@/i, `$1${REDACTED}@`)
    .replace(/([?&]password=)[^&#]*/gi, `$1${REDACTED}`);
}
