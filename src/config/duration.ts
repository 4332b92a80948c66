/**
 * Duration strings in the Go / Headscale style: one or more `<number><unit>` parts, e.g. `90s`, `30m`,
 * `1h30m`, `1.5h`, `90d`, `2w`, `500ms`. Units: ms, s, m, h, d (24 h), w (7 d).
 *
 * Values are whole milliseconds. Arithmetic is done on BigInt so that `1.1h` is exactly 3 960 000 ms
 * rather than whatever binary floating point makes of it. Used by the config (`ephemeral_node_inactivity_timeout`)
 * and the CLI (`--expiration 1h`).
 */

const MS_PER_UNIT = {
  ms: 1n,
  s: 1_000n,
  m: 60_000n,
  h: 3_600_000n,
  d: 86_400_000n,
  w: 604_800_000n,
} as const satisfies Record<string, bigint>;

type Unit = keyof typeof MS_PER_UNIT;

/** Largest unit first; weeks are accepted on input but never printed, because `90d` reads better than `12w6d`. */
const FORMAT_UNITS: readonly Unit[] = ['d', 'h', 'm', 's', 'ms'];

const ACCEPTED = 'a duration such as 90s, 30m, 1h30m, 1.5h, 90d, 2w or 500ms (units: ms, s, m, h, d, w)';

/** `ms` must come before `m` in the alternations so `500ms` is not read as `500m` followed by garbage. */
const WHOLE = /^(?:\d+(?:\.\d+)?(?:ms|s|m|h|d|w))+$/;
const PARTS = /(\d+)(?:\.(\d+))?(ms|s|m|h|d|w)/g;
const ANY_PART = /\d+(?:\.\d+)?([^\d.]*)/g;

/** Thrown for text that is not a duration; the message says what is accepted. */
export class DurationError extends Error {
  constructor(text: string, reason: string) {
    super(`${JSON.stringify(text)} is not a valid duration (${reason}); expected ${ACCEPTED}`);
    this.name = 'DurationError';
  }
}

/** Parses a duration string into whole milliseconds. Throws DurationError. */
export function parseDuration(text: string): number {
  const trimmed = text.trim();
  if (!WHOLE.test(trimmed)) throw new DurationError(text, whyNotADuration(trimmed));
  let total = 0n;
  for (const [, whole = '', fraction = '', unit] of trimmed.matchAll(PARTS)) {
    total += partMilliseconds(text, whole, fraction, unit as Unit);
  }
  if (total > BigInt(Number.MAX_SAFE_INTEGER)) throw new DurationError(text, 'it is too long');
  return Number(total);
}

/** The most helpful reason we can give for text that does not match the grammar. */
function whyNotADuration(trimmed: string): string {
  if (trimmed === '') return 'it is empty';
  if (trimmed.startsWith('-')) return 'durations cannot be negative';
  if (/^\d+(\.\d+)?$/.test(trimmed)) return 'the number has no unit';
  for (const [, unit = ''] of trimmed.matchAll(ANY_PART)) {
    if (unit === '') return 'a number has no unit';
    if (!Object.hasOwn(MS_PER_UNIT, unit)) return `unknown unit ${JSON.stringify(unit)}`;
  }
  return 'it is not a sequence of <number><unit> parts';
}

/** `whole.fraction` times the unit, which must come out as a whole number of milliseconds. */
function partMilliseconds(text: string, whole: string, fraction: string, unit: Unit): bigint {
  const scale = 10n ** BigInt(fraction.length);
  const scaled = BigInt(whole + fraction) * MS_PER_UNIT[unit];
  if (scaled % scale !== 0n) throw new DurationError(text, 'it is not a whole number of milliseconds');
  return scaled / scale;
}

/**
 * Formats whole milliseconds with the largest units first and no zero parts: `1h30m`, `90d`, `1s500ms`,
 * and `0s` for zero. parseDuration(formatDuration(ms)) === ms for every valid input.
 */
export function formatDuration(ms: number): string {
  if (!Number.isSafeInteger(ms) || ms < 0) {
    throw new RangeError(`formatDuration needs a non-negative whole number of milliseconds, got ${ms}`);
  }
  if (ms === 0) return '0s';
  let rest = BigInt(ms);
  let text = '';
  for (const unit of FORMAT_UNITS) {
    const count = rest / MS_PER_UNIT[unit];
    if (count > 0n) text += `${count}${unit}`;
    rest -= count * MS_PER_UNIT[unit];
  }
  return text;
}
