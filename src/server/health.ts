/**
 * GET /health: does the server's database answer? The endpoint needs no key, so the answer names the
 * failing part but not the driver's message (hosts, ports, paths); that goes to the log, once when the
 * database goes down and once when it is back, however often a load balancer asks.
 */
import type { HealthJson } from '../api/wire.ts';
import type { Store } from '../db/store.ts';
import type { Logger } from '../observe/logger.ts';

/** How long /health waits for the database before calling it down. */
export const HEALTH_TIMEOUT_MS = 3_000;

const PASS: HealthJson = { status: 'pass', checks: { database: { status: 'pass' } } };

function failing(output: string): HealthJson {
  return { status: 'fail', checks: { database: { status: 'fail', output } } };
}

export function databaseHealthCheck(
  store: Store,
  log: Logger,
  timeoutMs = HEALTH_TIMEOUT_MS,
): () => Promise<HealthJson> {
  let wasFailing = false;
  return async () => {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), timeoutMs);
    });
    try {
      if ((await Promise.race([store.ping(), timeout])) === 'timeout') {
        if (!wasFailing) log.warn({ timeout_ms: timeoutMs }, 'database health check: no answer');
        wasFailing = true;
        return failing(`the database did not answer within ${timeoutMs} ms`);
      }
      if (wasFailing) log.info('database health check: answering again');
      wasFailing = false;
      return PASS;
    } catch (err) {
      if (!wasFailing) log.warn({ err }, 'database health check: query failed');
      wasFailing = true;
      return failing('the database query failed; the server log has the details');
    } finally {
      clearTimeout(timer);
    }
  };
}
