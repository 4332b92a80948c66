/**
 * ConfigError and the translation of zod issues into lines an admin can act on.
 *
 * Every problem found while loading is collected first and reported together, one line each, so that
 * fixing a config file is one round trip rather than one per mistake. A line names where the value came
 * from (the file, or the WEFT_* variable), the dotted key path, and the reason.
 */
import type { z } from 'zod';
import { closestName } from './suggest.ts';

export interface ConfigIssue {
  /** Dotted key path such as "derp.server.region_id"; "" for the document as a whole. */
  readonly path: string;
  readonly message: string;
  /** The config file name, "config" for in-memory input, "environment", or "" when the message names the source itself. */
  readonly source: string;
  /** The WEFT_* variable the bad value came from, when it came from the environment. */
  readonly variable?: string;
}

export class ConfigError extends Error {
  readonly issues: readonly ConfigIssue[];

  constructor(issues: readonly ConfigIssue[]) {
    super(issues.map(formatIssue).join('\n'));
    this.name = 'ConfigError';
    this.issues = issues;
  }
}

/** `WEFT_X (key.path): reason`, `file: key.path: reason`, or `file: reason` for the whole document; empty parts are left out. */
export function formatIssue(issue: ConfigIssue): string {
  if (issue.variable !== undefined) {
    return issue.path === '' ? issue.message : `${issue.variable} (${issue.path}): ${issue.message}`;
  }
  return [issue.source, issue.path, issue.message].filter((part) => part !== '').join(': ');
}

/** `derp.server.region_id`, `dns.extra_records[0].name`, `dns.nameservers.split["corp.example"]`. */
export function joinPath(path: readonly PropertyKey[]): string {
  let text = '';
  for (const segment of path) {
    if (typeof segment === 'number') text += `[${segment}]`;
    else if (/^[a-z_][a-z0-9_]*$/i.test(String(segment)))
      text += text === '' ? String(segment) : `.${String(segment)}`;
    else text += `[${JSON.stringify(String(segment))}]`;
  }
  return text;
}

/**
 * Per-parse zod error map: plainer wording for the generic issues. Issues raised by our own checks carry
 * their message already and fall through (undefined keeps zod's).
 */
export function describeZodIssue(issue: z.core.$ZodRawIssue): string | undefined {
  switch (issue.code) {
    case 'invalid_type':
      return issue.input === undefined
        ? 'required'
        : `expected ${typeName(issue.expected)}, got ${describeValue(issue.input)}`;
    case 'invalid_value':
      return `must be one of ${issue.values.map((value) => JSON.stringify(value)).join(', ')}; got ${describeValue(issue.input)}`;
    default:
      return undefined;
  }
}

/**
 * Flattens one zod issue into ours: one per unknown key (with the likely intended key when `knownKeys`
 * finds one close enough), and the inner reason for a bad map key.
 */
export function fromZodIssue(
  issue: z.core.$ZodIssue,
  knownKeys: (path: readonly PropertyKey[]) => readonly string[],
): { path: string; message: string }[] {
  const path = joinPath(issue.path);
  switch (issue.code) {
    case 'unrecognized_keys':
      return issue.keys.map((key) => ({ path, message: unknownKeyMessage(key, knownKeys(issue.path)) }));
    case 'invalid_key':
      return issue.issues.map((inner) => ({ path, message: `bad key: ${inner.message}` }));
    default:
      return [{ path, message: issue.message }];
  }
}

function unknownKeyMessage(key: string, knownKeys: readonly string[]): string {
  const suggestion = closestName(key, knownKeys);
  return `unknown key ${JSON.stringify(key)}${suggestion === undefined ? '' : ` (did you mean "${suggestion}"?)`}`;
}

const TYPE_NAMES: Record<string, string> = {
  string: 'a string',
  number: 'a number',
  int: 'a whole number',
  boolean: 'true or false',
  object: 'a mapping',
  record: 'a mapping',
  array: 'a list',
};

function typeName(expected: string): string {
  return TYPE_NAMES[expected] ?? expected;
}

function describeValue(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  if (typeof value === 'string') return `the string ${JSON.stringify(value)}`;
  return `the ${typeof value} ${String(value)}`;
}
