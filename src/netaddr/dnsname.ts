/**
 * Node names: turning a client's raw host name into a DNS label (the node's "given name"), keeping
 * given names unique in a tailnet, and validating names admins choose.
 *
 * `sanitizeHostname` follows Tailscale's `dnsname.SanitizeHostname` byte for byte, because the client
 * runs the same function to decide whether to show "name (hostname)" in `tailscale status`; Headscale
 * ≥ 0.29 uses it verbatim too, so names carry over when a tailnet moves between servers.
 */

export const MAX_LABEL_LENGTH = 63;

/** Suffixes a host name often carries from the LAN; stripped in this order, each at most once. */
const COMMON_SUFFIXES = ['.local', '.localdomain', '.lan'] as const;

const SEPARATORS = new Set([0x20, 0x2e, 0x40, 0x5f]); // ' ' '.' '@' '_'

function isAlnum(byte: number): boolean {
  return (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5a) || (byte >= 0x61 && byte <= 0x7a);
}

function isDnsChar(byte: number): boolean {
  return isAlnum(byte) || byte === 0x2d;
}

/** Tailscale's TrimCommonSuffixes: `.local`, then `.localdomain`, then `.lan`, case-sensitively. */
export function trimCommonSuffixes(hostname: string): string {
  let name = hostname;
  for (const suffix of COMMON_SUFFIXES) if (name.endsWith(suffix)) name = name.slice(0, -suffix.length);
  return name;
}

/**
 * Tailscale's SanitizeLabel, on the UTF-8 bytes: cut to 63 bytes, drop leading and trailing bytes that
 * are not ASCII letters or digits, turn interior ' ', '.', '@', '_' into '-', keep letters (lowercased),
 * digits and '-', drop every other byte (so all non-ASCII text disappears). May return ''.
 */
export function sanitizeLabel(label: string): string {
  const bytes = new TextEncoder().encode(label);
  let start = 0;
  let end = Math.min(bytes.length, MAX_LABEL_LENGTH);
  while (start < end && !isAlnum(bytes[start] ?? 0)) start++;
  while (start < end && !isAlnum(bytes[end - 1] ?? 0)) end--;
  let out = '';
  for (let i = start; i < end; i++) {
    const byte = bytes[i] ?? 0;
    const boundary = i === start || i === end - 1;
    if (!boundary && SEPARATORS.has(byte)) out += '-';
    else if (isDnsChar(byte)) out += String.fromCharCode(byte).toLowerCase();
  }
  return out;
}

/**
 * The given name derived from a client's host name (`Joe's Mac mini` → `joes-mac-mini`,
 * `build01.local` → `build01`). A name with nothing usable left (`我的电脑`) becomes `node`, as in
 * Headscale, so every node has a MagicDNS name.
 */
export function sanitizeHostname(hostname: string): string {
  return sanitizeLabel(trimCommonSuffixes(hostname)) || 'node';
}

/** Why `label` is not a usable given name (one DNS label, lowercase), or undefined if it is. */
export function labelProblem(label: string): string | undefined {
  if (label.length === 0) return 'a name cannot be empty';
  if (label.length > MAX_LABEL_LENGTH) return `a name has at most ${MAX_LABEL_LENGTH} characters`;
  if (!/^[a-z0-9-]+$/.test(label)) return 'a name contains only lowercase letters, digits and "-"';
  if (label.startsWith('-') || label.endsWith('-')) return 'a name cannot start or end with "-"';
  return undefined;
}

function withSuffix(base: string, n: number): string {
  const suffix = `-${n}`;
  return base.slice(0, MAX_LABEL_LENGTH - suffix.length) + suffix;
}

/**
 * `base` if it is free, else `base-1`, `base-2`, … (Headscale ≥ 0.29 and Tailscale's own choice); the
 * base is shortened as needed so the result stays a 63-character label. `isTaken` should look at every
 * other node of the tailnet, since all names share one domain.
 */
export function uniqueGivenName(base: string, isTaken: (name: string) => boolean): string {
  const label = base.slice(0, MAX_LABEL_LENGTH);
  if (!isTaken(label)) return label;
  for (let n = 1; ; n++) {
    const candidate = withSuffix(label, n);
    if (!isTaken(candidate)) return candidate;
  }
}

/**
 * Whether `givenName` is what the server derived from `hostname` (the sanitised name, possibly with a
 * `-<digits>` collision suffix) rather than a name an admin chose. Only derived names follow the
 * client's host name when it changes; an admin's rename sticks.
 */
export function isAutoDerivedGivenName(givenName: string, hostname: string): boolean {
  const base = sanitizeHostname(hostname).slice(0, MAX_LABEL_LENGTH);
  if (givenName === base) return true;
  const match = /^(.+)-([0-9]+)$/.exec(givenName);
  if (match === null) return false;
  const suffixLength = givenName.length - (match[1] ?? '').length;
  return match[1] === base.slice(0, MAX_LABEL_LENGTH - suffixLength);
}
