/**
 * Go `time.Duration` text, for SSH `checkPeriod`: Tailscale parses it with `time.ParseDuration` and quotes
 * Go's own formatting back in its errors (`checkPeriod 200h0m0s is above the max (168h)`), so both
 * directions follow Go exactly rather than weft's friendlier config durations.
 */

const UNIT_NS: Record<string, bigint> = {
  ns: 1n,
  us: 1_000n,
  µs: 1_000n,
  μs: 1_000n,
  ms: 1_000_000n,
  s: 1_000_000_000n,
  m: 60_000_000_000n,
  h: 3_600_000_000_000n,
};

const SECOND = 1_000_000_000n;
const MINUTE = 60n * SECOND;
const HOUR = 60n * MINUTE;

const PART = /^([0-9]*)(?:\.([0-9]*))?(ns|us|µs|μs|ms|s|m|h)/;

/** Nanoseconds, or undefined when Go would answer `time: invalid duration`. */
export function parseGoDuration(text: string): bigint | undefined {
  let rest = text;
  let sign = 1n;
  if (rest.startsWith('-') || rest.startsWith('+')) {
    sign = rest.startsWith('-') ? -1n : 1n;
    rest = rest.slice(1);
  }
  if (rest === '0') return 0n;
  if (rest === '') return undefined;
  let total = 0n;
  while (rest !== '') {
    const match = PART.exec(rest);
    if (match === null) return undefined;
    const [whole, intText = '', fracText = '', unit = ''] = match;
    if (intText === '' && fracText === '') return undefined;
    const scale = UNIT_NS[unit] ?? 0n;
    total += BigInt(intText || '0') * scale;
    if (fracText !== '') total += (BigInt(fracText) * scale) / 10n ** BigInt(fracText.length);
    rest = rest.slice(whole.length);
  }
  return sign * total;
}

/** Go's `Duration.String()`: `200h0m0s`, `-1m0s`, `1.5s`, `500ms`, `0s`. */
export function formatGoDuration(ns: bigint): string {
  if (ns === 0n) return '0s';
  const negative = ns < 0n;
  const abs = negative ? -ns : ns;
  const sign = negative ? '-' : '';
  if (abs < SECOND) {
    const [unit, scale] = abs < 1_000n ? ['ns', 1n] : abs < 1_000_000n ? ['µs', 1_000n] : ['ms', 1_000_000n];
    return `${sign}${decimal(abs, scale)}${unit}`;
  }
  const hours = abs / HOUR;
  const minutes = (abs % HOUR) / MINUTE;
  const seconds = decimal(abs % MINUTE, SECOND);
  if (hours > 0n) return `${sign}${hours}h${minutes}m${seconds}s`;
  if (minutes > 0n) return `${sign}${minutes}m${seconds}s`;
  return `${sign}${seconds}s`;
}

/** `value / scale` in decimal with trailing zeros of the fraction dropped. */
function decimal(value: bigint, scale: bigint): string {
  const whole = value / scale;
  const fraction = value % scale;
  if (fraction === 0n) return String(whole);
  const digits = String(scale).length - 1;
  return `${whole}.${String(fraction).padStart(digits, '0').replace(/0+$/, '')}`;
}
