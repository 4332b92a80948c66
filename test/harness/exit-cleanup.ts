/**
 * Last-resort cleanup for processes a test harness started.
 *
 * Test hooks normally stop every server and daemon, but a test that throws before its `after` hook is
 * registered, a forgotten `stop()`, or a node:test file timeout (the runner turns SIGTERM into
 * `process.exit()`) would otherwise leave PostgreSQL or tailscaled running after the test process is
 * gone. Each harness registers a synchronous callback here; one `process.on('exit')` listener runs them
 * all. Only synchronous work is possible at that point, so callbacks send signals and remove
 * directories with the *Sync APIs, and must never throw.
 *
 * SIGINT/SIGTERM skip 'exit' when nobody listens for them (a harness used from a plain script, or
 * Ctrl-C), so they run the callbacks too, then re-raise the signal for its default effect unless some
 * other listener (node:test's own) takes care of exiting.
 */

type Cleanup = () => void;

const pending = new Set<Cleanup>();
let installed = false;

const SIGNALS = ['SIGINT', 'SIGTERM'] as const;

function onSignal(signal: NodeJS.Signals): void {
  runAll();
  if (process.listenerCount(signal) > 1) return;
  process.removeListener(signal, onSignal);
  process.kill(process.pid, signal);
}

function runAll(): void {
  for (const cleanup of pending) {
    try {
      cleanup();
    } catch {
      // Best effort: one failing cleanup must not stop the others.
    }
  }
  pending.clear();
}

/** Registers `cleanup` to run when the process exits; the returned function unregisters it. */
export function onProcessExit(cleanup: Cleanup): () => void {
  if (!installed) {
    process.on('exit', runAll);
    for (const signal of SIGNALS) process.on(signal, onSignal);
    installed = true;
  }
  pending.add(cleanup);
  return () => {
    pending.delete(cleanup);
  };
}

/** Sends `signal` to a child by pid, ignoring "no such process" and every other error. */
export function killQuietly(pid: number | undefined, signal: NodeJS.Signals): void {
  if (pid === undefined) return;
  try {
    process.kill(pid, signal);
  } catch {
    // Already gone.
  }
}
