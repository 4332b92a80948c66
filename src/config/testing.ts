/**
 * Helpers shared by the config tests (not used by the config code itself).
 */
import assert from 'node:assert/strict';
import { ConfigError } from './errors.ts';

/** Runs `action`, which must throw a ConfigError, and returns it for closer inspection. */
export function configErrorFrom(action: () => unknown): ConfigError {
  try {
    action();
  } catch (error) {
    if (error instanceof ConfigError) return error;
    throw error;
  }
  assert.fail('expected a ConfigError, but nothing was thrown');
}

/** Asserts that exactly one issue is at `path` and its message matches `pattern`. */
export function assertIssue(error: ConfigError, path: string, pattern: RegExp): void {
  const atPath = error.issues.filter((issue) => issue.path === path);
  assert.equal(atPath.length, 1, `expected one issue at "${path}", got:\n${error.message}`);
  assert.match(atPath[0]?.message ?? '', pattern, `issue at "${path}": ${error.message}`);
}
