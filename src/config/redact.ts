/**
 * The printable form of a Config, for `weft serve --print-config` and for logging the effective config.
 *
 * SECRET_FIELDS lists every key that can hold a secret and how to hide it; a new secret key must be
 * added there. Redaction hides only the secret part (a connection URL keeps its host and database, so an
 * admin can still see where weft connects). Values the schema turned into numbers go back to the text
 * form the file uses, so the printed YAML is itself a valid config file.
 */
import { stringify } from 'yaml';
import { formatDuration } from './duration.ts';
import type { Config } from './schema.ts';

export const REDACTED = '***';

/** The Config as it would be written in a file, with secrets replaced by REDACTED. */
export type PrintableConfig = Omit<Config, 'ephemeral_node_inactivity_timeout'> & {
  ephemeral_node_inactivity_timeout: string;
};

interface SecretField {
  /** Dotted key path. */
  readonly path: string;
  readonly redact: (value: string) => string;
}

const SECRET_FIELDS: readonly SecretField[] = [{ path: 'database.url', redact: redactUrlSecrets }];

export function redactConfig(config: Config): PrintableConfig {
  const printable: PrintableConfig = {
    ...structuredClone(config),
    ephemeral_node_inactivity_timeout: formatDuration(config.ephemeral_node_inactivity_timeout),
  };
  for (const field of SECRET_FIELDS)
    redactAt(printable as Record<string, unknown>, field.path.split('.'), field.redact);
  return printable;
}

/** YAML text of redactConfig(config). */
export function formatConfig(config: Config): string {
  return stringify(redactConfig(config), { lineWidth: 0 });
}

function redactAt(
  node: Record<string, unknown>,
  path: readonly string[],
  redact: (value: string) => string,
): void {
  const [key, ...rest] = path;
  if (key === undefined) return;
  const value = node[key];
  if (rest.length === 0) {
    if (typeof value === 'string') node[key] = redact(value);
  } else if (typeof value === 'object' && value !== null) {
    redactAt(value as Record<string, unknown>, rest, redact);
  }
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
