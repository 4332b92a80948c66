/**
 * How the CLI prints: a plain aligned table for people, or JSON (`-o json`) for scripts. JSON output
 * uses the API's field names, which are stable.
 */
import { Option } from '@commander-js/extra-typings';

export type OutputFormat = 'table' | 'json';

/** `-o/--output`, taken by every command that prints data. */
export function outputOption() {
  return new Option('-o, --output <format>', 'output format')
    .choices(['table', 'json'] as const)
    .default('table' as const);
}

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

export function printLine(text: string): void {
  process.stdout.write(`${text}\n`);
}

/** What a command did: `value` as JSON with `-o json`, otherwise one line for people. */
export function printResult(options: { output: OutputFormat }, value: unknown, line: string): void {
  if (options.output === 'json') printJson(value);
  else printLine(line);
}

/** Left-aligned columns separated by two spaces; an empty list prints just the header. */
export function formatTable(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((cell, i) => (i === cells.length - 1 ? cell : cell.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  return [line(headers), ...rows.map(line)].join('\n');
}

export function printTable(headers: readonly string[], rows: readonly (readonly string[])[]): void {
  printLine(formatTable(headers, rows));
}

/** A timestamp for tables: UTC, to the second, marked when it has passed (for expirations). */
export function formatTime(iso: string | null, options: { markPast?: boolean; now?: Date } = {}): string {
  if (iso === null) return '-';
  const when = new Date(iso);
  const text = `${when.toISOString().slice(0, 19).replace('T', ' ')}Z`;
  const now = options.now ?? new Date();
  return options.markPast && when <= now ? `${text} (expired)` : text;
}

export function yesNo(value: boolean): string {
  return value ? 'yes' : 'no';
}
