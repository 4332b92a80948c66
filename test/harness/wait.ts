/** Polling for a condition in tests, bounded in time. */
import { setTimeout as sleep } from 'node:timers/promises';

export interface EventuallyOptions {
  timeoutMs: number;
  /** Pause between checks; default 50 ms. */
  intervalMs?: number;
}

/**
 * Calls `check` until it returns something other than undefined, and returns that. A check that throws
 * counts as "not yet"; after `timeoutMs` this rejects naming `what` and the last error.
 */
export async function eventually<T>(
  what: string,
  check: () => T | undefined | Promise<T | undefined>,
  options: EventuallyOptions,
): Promise<T> {
  const deadline = Date.now() + options.timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (err) {
      last = err;
    }
    if (Date.now() >= deadline) {
      const reason = last === undefined ? '' : ` (last error: ${(last as Error).message})`;
      throw new Error(`${what}: not within ${options.timeoutMs} ms${reason}`);
    }
    await sleep(options.intervalMs ?? 50);
  }
}
