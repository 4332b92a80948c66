/** One worker thread of the relay load: runs its share of the pairs, on command from the main thread. */
import { parentPort, workerData } from 'node:worker_threads';
import { COUNTER_SLOTS, RelayLoad, type WorkerCommand, type WorkerInit } from './relay.ts';

const { options, counters, slot } = workerData as WorkerInit & { slot: number };
const load = new RelayLoad(
  options,
  new Float64Array(counters, slot * Float64Array.BYTES_PER_ELEMENT, COUNTER_SLOTS),
);
const port = parentPort;
if (port === null) throw new Error('relay-worker.ts runs as a worker thread only');

port.on('message', (command: WorkerCommand) => {
  const done = () => port.postMessage({ done: command });
  const fail = (err: unknown) => port.postMessage({ error: (err as Error).message ?? String(err) });
  switch (command) {
    case 'connect':
      load.connect().then(done, fail);
      return;
    case 'start':
      load.start();
      done();
      return;
    case 'stop':
      load.stop().then(done, fail);
      return;
    case 'close':
      load.close();
      done();
      port.close();
      return;
  }
});
