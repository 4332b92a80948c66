/**
 * Building blocks for decoding JSON the way Go's encoding/json decodes tailcfg structs, on top of zod.
 *
 * Go's decoder matches object keys to struct fields case-insensitively (an exact match wins), ignores
 * keys it does not know, and treats `null` for a plain field as "leave the zero value". The official
 * client always sends the exact names, but other clients and hand-written files (Headscale's DERP map
 * YAML uses `regionid`, `hostname`, …) rely on that leniency, so `goStruct` reproduces it before zod
 * checks types. Problems are reported as one sentence naming the field path.
 */
import { z } from 'zod';
import { WeftError } from '../types/errors.ts';
import type { PublicKey, PublicKeyKind } from '../types/keys.ts';
import {
  canonicalPrefix,
  formatAddr,
  formatAddrPort,
  isIPv6LinkLocal,
  type ParsedAddrPort,
  parseAddr,
  parseAddrPort,
} from './netip.ts';

/** A request body a client sent is malformed; `field` is the path of the first bad value. */
export class WireError extends WeftError {
  readonly field: string;

  constructor(field: string, reason: string) {
    super('BAD_REQUEST', field === '' ? reason : `${field}: ${reason}`);
    this.name = 'WireError';
    this.field = field;
  }
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Renames keys to the struct's field names the way Go matches them and drops nulls for known fields.
 * Unknown keys are kept (loose structs keep them, strict ones let zod strip them); `__proto__` never
 * survives, so no decoded object can have its prototype replaced.
 */
function foldKeys(fields: readonly string[]): (value: unknown) => unknown {
  const exact = new Set(fields);
  const folded = new Map(fields.map((name) => [name.toLowerCase(), name]));
  return (value) => {
    if (!isPlainObject(value)) return value;
    const out: Record<string, unknown> = {};
    for (const [key, item] of Object.entries(value)) {
      if (key === '__proto__') continue;
      const name = exact.has(key) ? key : (folded.get(key.toLowerCase()) ?? key);
      if (item === null && exact.has(name)) delete out[name];
      else out[name] = item;
    }
    return out;
  };
}

/** A Go struct: every listed field optional unless its schema says otherwise, unknown keys ignored. */
export function goStruct<S extends z.ZodRawShape>(shape: S) {
  return z.preprocess(foldKeys(Object.keys(shape)), z.object(shape));
}

/** Like `goStruct` but keeps unknown keys, for objects (Hostinfo) the client extends all the time. */
export function goLooseStruct<S extends z.ZodRawShape>(shape: S) {
  return z.preprocess(foldKeys(Object.keys(shape)), z.looseObject(shape));
}

/** A Go map with string keys; null entries pass through when `value` accepts them. */
export function goMap<V extends z.ZodType>(value: V) {
  return z.preprocess(foldKeys([]), z.record(z.string(), value));
}

/** A Go slice capped at `max` entries, so one request cannot make the server hold unbounded state. */
export function cappedArray<T extends z.ZodType>(item: T, max: number) {
  return z.array(item).check((ctx) => {
    if (ctx.value.length > max) {
      ctx.issues.push({
        code: 'custom',
        input: ctx.value,
        message: `at most ${max} entries are accepted, got ${ctx.value.length}`,
      });
    }
  });
}

/** A public key of one kind; the all-zero key and "" (Go's "no key") become undefined. */
export function publicKey<K extends string>(kind: PublicKeyKind<K>) {
  return z.string().transform((text, ctx): PublicKey<K> | undefined => {
    if (text === '') return undefined;
    const key = kind.tryParse(text);
    if (key === undefined) {
      ctx.addIssue({ code: 'custom', message: `expected "${kind.prefix}" followed by 64 hex digits` });
      return z.NEVER;
    }
    return kind.isZero(key) ? undefined : key;
  });
}

const RFC3339 =
  /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:[Zz]|([+-])(\d{2}):(\d{2}))$/;

/**
 * Parses RFC 3339 text as Go writes `time.Time`. Nanoseconds beyond the millisecond are dropped
 * (JavaScript dates have no finer resolution). Returns undefined for text that is not a real time.
 */
export function parseRfc3339(text: string): Date | undefined {
  const match = RFC3339.exec(text);
  if (match === null) return undefined;
  const [, year, month, day, hour, minute, second, fraction = '', sign, offsetHours, offsetMinutes] = match;
  const fields = [year, month, day, hour, minute, second].map(Number) as [
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  const [y, mo, d, h, mi, s] = fields;
  const date = new Date(0);
  date.setUTCFullYear(y, mo - 1, d);
  date.setUTCHours(h, mi, s, Number(fraction.padEnd(3, '0').slice(0, 3)));
  // Date rolls out-of-range fields over (Feb 30 → Mar 2); Go refuses them, so must we.
  if (
    date.getUTCFullYear() !== y ||
    date.getUTCMonth() !== mo - 1 ||
    date.getUTCDate() !== d ||
    date.getUTCHours() !== h ||
    date.getUTCMinutes() !== mi ||
    date.getUTCSeconds() !== s
  ) {
    return undefined;
  }
  if (sign !== undefined) {
    const oh = Number(offsetHours);
    const om = Number(offsetMinutes);
    if (oh > 23 || om > 59) return undefined;
    const offsetMs = (oh * 60 + om) * 60_000 * (sign === '-' ? -1 : 1);
    date.setTime(date.getTime() - offsetMs);
  }
  return date;
}

/** `0001-01-01T00:00:00Z`, the Go zero time that fields without omitempty carry when unset. */
export const GO_ZERO_TIME = parseRfc3339('0001-01-01T00:00:00Z') as Date;

/** An RFC 3339 time; Go's zero time becomes undefined ("unset"). */
export function goTime() {
  return z.string().transform((text, ctx): Date | undefined => {
    const date = parseRfc3339(text);
    if (date === undefined) {
      ctx.addIssue({ code: 'custom', message: 'expected an RFC 3339 time such as "2026-08-22T11:48:56Z"' });
      return z.NEVER;
    }
    return date.getTime() === GO_ZERO_TIME.getTime() ? undefined : date;
  });
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** A Go `[]byte`: standard padded base64; "" (empty slice) becomes undefined. */
export function goBytes() {
  return z.string().transform((text, ctx): string | undefined => {
    if (!BASE64.test(text)) {
      ctx.addIssue({ code: 'custom', message: 'expected standard base64 with padding' });
      return z.NEVER;
    }
    return text === '' ? undefined : text;
  });
}

/** A JSON number that is a whole number in [min, max]. */
export function goInt(min: number, max: number) {
  return z.number().check((ctx) => {
    if (!Number.isInteger(ctx.value) || ctx.value < min || ctx.value > max) {
      ctx.issues.push({
        code: 'custom',
        input: ctx.value,
        message:
          max >= Number.MAX_SAFE_INTEGER
            ? `expected a whole number of at least ${min}, got ${ctx.value}`
            : `expected a whole number from ${min} to ${max}, got ${ctx.value}`,
      });
    }
  });
}

/** An IP prefix in canonical text. */
export function goPrefix() {
  return z.string().transform((text, ctx): string => {
    const result = canonicalPrefix(text);
    if (typeof result === 'string') return result;
    ctx.addIssue({ code: 'custom', message: result.problem });
    return z.NEVER;
  });
}

/** An IP address (no zone) in canonical text. */
export function goAddr() {
  return z.string().transform((text, ctx): string => {
    const addr = parseAddr(text);
    if (addr === undefined || addr.zone !== undefined) {
      ctx.addIssue({ code: 'custom', message: `${JSON.stringify(text.slice(0, 64))} is not an IP address` });
      return z.NEVER;
    }
    return formatAddr(addr);
  });
}

/**
 * An `ip:port` endpoint, or null for one the server should not keep: IPv6 link-local and zoned
 * addresses only make sense on the sender's own link (testcontrol drops them too).
 */
export function goEndpoint() {
  return z.string().transform((text, ctx): string | null => {
    const parsed: ParsedAddrPort | string = parseAddrPort(text);
    if (typeof parsed === 'string') {
      ctx.addIssue({ code: 'custom', message: `expected ip:port (IPv6 in brackets): ${parsed}` });
      return z.NEVER;
    }
    if (parsed.addr.zone !== undefined || isIPv6LinkLocal(parsed.addr)) return null;
    return formatAddrPort(parsed);
  });
}

/** `Hostinfo.RoutableIPs[3]`, `NetInfo.DERPLatency["1-v4"]`. */
export function joinPath(path: readonly PropertyKey[]): string {
  let text = '';
  for (const segment of path) {
    if (typeof segment === 'number') text += `[${segment}]`;
    else if (/^[A-Za-z_][A-Za-z0-9_]*$/.test(String(segment))) {
      text += text === '' ? String(segment) : `.${String(segment)}`;
    } else text += `[${JSON.stringify(String(segment))}]`;
  }
  return text;
}

const TYPE_NAMES: Record<string, string> = {
  string: 'a string',
  number: 'a number',
  int: 'a whole number',
  boolean: 'true or false',
  object: 'an object',
  record: 'an object',
  array: 'an array',
};

function describeValue(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object') return 'an object';
  if (typeof value === 'string')
    return `the string ${JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value)}`;
  return `the ${typeof value} ${String(value)}`;
}

/** Plain wording for zod's generic issues; our own checks already carry their sentence. */
function describeIssue(issue: z.core.$ZodRawIssue): string | undefined {
  if (issue.code === 'invalid_type') {
    return issue.input === undefined
      ? 'required'
      : `expected ${TYPE_NAMES[issue.expected] ?? issue.expected}, got ${describeValue(issue.input)}`;
  }
  return undefined;
}

/** Runs `schema` and returns its output, or the first problem as `[path, reason]`. */
export function decode<T extends z.ZodType>(
  schema: T,
  json: unknown,
): { ok: true; value: z.output<T> } | { ok: false; path: string; reason: string } {
  const result = schema.safeParse(json, { error: describeIssue });
  if (result.success) return { ok: true, value: result.data };
  const issue = result.error.issues[0];
  return { ok: false, path: joinPath(issue?.path ?? []), reason: issue?.message ?? 'invalid' };
}
