/** Parsers for option values shared by several commands; a bad value is a usage error (exit 2). */
import { InvalidArgumentError } from '@commander-js/extra-typings';
import { parseDuration } from '../config/index.ts';
import { tagProblem } from '../types/names.ts';

/** Expirations further out than this are surely typos (and past JavaScript's date range soon after). */
const MAX_EXPIRATION_MS = 100 * 365 * 24 * 3_600_000;

/** `--expiration 1h` → milliseconds: positive and at most a century. */
export function durationArgument(text: string): number {
  let ms: number;
  try {
    ms = parseDuration(text);
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
  if (ms <= 0) throw new InvalidArgumentError('it must be longer than zero');
  if (ms > MAX_EXPIRATION_MS) throw new InvalidArgumentError('it must be at most 100 years (36500d)');
  return ms;
}

/** `--tags tag:a,tag:b` → the list, each checked against Tailscale's tag syntax. */
export function tagsArgument(text: string): string[] {
  const tags = text
    .split(',')
    .map((t) => t.trim())
    .filter((t) => t !== '');
  for (const tag of tags) {
    const problem = tagProblem(tag);
    if (problem) throw new InvalidArgumentError(problem);
  }
  return tags;
}

/** A node id as `weft nodes list` shows it: a positive decimal integer. */
export function nodeIdArgument(text: string): string {
  const id = text.trim();
  if (!/^[1-9][0-9]{0,14}$/.test(id)) {
    throw new InvalidArgumentError('it must be a positive integer id, as weft nodes list shows it');
  }
  return id;
}
