/**
 * A load-generator process of the scale benchmark (forked by bench/scale.ts): it runs a slice of the
 * simulated clients and answers the parent's commands over IPC. Every phase is bounded in time by the
 * parent; this process only does what it is told and reports what its clients saw.
 *
 *   parent → worker   {cmd: 'join', …}     connect + register + open a map stream for every client
 *                     {cmd: 'churn', …}    the mover (if ours) sends lite endpoint updates
 *                     {cmd: 'report', …}   per-phase results, then {cmd: 'exit'}
 *   worker → parent   {ev: 'joined' | 'full' | 'report' | 'error', …}
 */
import type { MachinePublic } from '../../src/types/keys.ts';
import { now, SimClient } from './scale-client.ts';

export interface JoinCommand {
  cmd: 'join';
  url: string;
  serverKey: MachinePublic;
  authKey: string;
  capVersion: number;
  /** Global index of this worker's first client, and how many it runs. */
  first: number;
  count: number;
  /** Clients in the whole run: each must end up with nodes − 1 peers. */
  nodes: number;
  concurrency: number;
}

export interface ChurnCommand {
  cmd: 'churn';
  /** Global index of the client whose endpoints change; -1 when it is not this worker's. */
  mover: number;
  changes: number;
  intervalMs: number;
}

export interface PolicyCommand {
  cmd: 'policy-watch';
  /** Text that only the new policy's packet filter contains. */
  marker: string;
}

type Command = JoinCommand | ChurnCommand | PolicyCommand | { cmd: 'report' } | { cmd: 'exit' };

/** `203.0.113.7:<port>`: the churning node's endpoint; port 20000 + change number. */
export const CHURN_HOST = '203.0.113.7';
const CHURN_PORT_BASE = 20_000;
const CHURN_MARK = new RegExp(`${CHURN_HOST.replace(/\./g, '\\.')}:(\\d+)`, 'g');

const clients: SimClient[] = [];
let join: JoinCommand | undefined;
let fullReported = false;
let fullCount = 0;
const fullAt: number[] = [];
/** churnSeen[change] = [latest first-sighting among our clients, how many clients saw it]. */
let churnSeen: Array<[number, number]> = [];
/** The newest change each client has seen. */
let churnLatest: Map<SimClient, number> = new Map();
let policyMarker: string | undefined;
const policySeen = new Map<SimClient, number>();
const sentAt: number[] = [];

function send(message: unknown): void {
  process.send?.(message);
}

function onMessage(client: SimClient, text: string, at: number): void {
  const slot = client.options.slot;
  if (join !== undefined && client.peers.size >= join.nodes - 1 && fullAt[slot] === undefined) {
    fullAt[slot] = at;
    fullCount += 1;
    if (fullCount === clients.length && !fullReported) {
      fullReported = true;
      send({ ev: 'full', at: Math.max(...fullAt) });
    }
  }
  if (churnSeen.length > 0 && text.includes(CHURN_HOST)) {
    // A newer endpoint supersedes older ones: a server may coalesce changes inside its batch window,
    // and a peer holding change j is up to date for every change before it.
    let newest = -1;
    for (const match of text.matchAll(CHURN_MARK))
      newest = Math.max(newest, Number(match[1]) - CHURN_PORT_BASE);
    const before = churnLatest.get(client) ?? -1;
    if (newest > before) {
      churnLatest.set(client, newest);
      for (let change = before + 1; change <= newest; change++) {
        const slot = churnSeen[change];
        if (slot === undefined) continue;
        slot[0] = Math.max(slot[0], at);
        slot[1] += 1;
      }
    }
  }
  if (policyMarker !== undefined && !policySeen.has(client) && text.includes(policyMarker))
    policySeen.set(client, at);
}

async function runJoin(command: JoinCommand): Promise<void> {
  join = command;
  for (let i = 0; i < command.count; i++) {
    const index = command.first + i;
    clients.push(
      new SimClient({
        slot: i,
        url: command.url,
        serverKey: command.serverKey,
        capVersion: command.capVersion,
        hostname: `sim-${index}`,
        onMessage,
      }),
    );
  }
  const registeredAt: number[] = new Array(clients.length).fill(0);
  let next = 0;
  let failures = 0;
  let firstError: string | undefined;
  const lane = async () => {
    for (;;) {
      const i = next++;
      const client = clients[i];
      if (client === undefined) return;
      try {
        await client.connect();
        await client.register(command.authKey);
        registeredAt[i] = now();
        client.openStream([`192.0.2.${(command.first + i) % 250}:41641`]);
      } catch (err) {
        failures += 1;
        firstError ??= (err as Error).message;
      }
    }
  };
  await Promise.all(Array.from({ length: command.concurrency }, lane));
  send({ ev: 'joined', registeredAt, failures, firstError });
}

async function runChurn(command: ChurnCommand): Promise<void> {
  churnSeen = Array.from({ length: command.changes }, () => [0, 0] as [number, number]);
  churnLatest = new Map();
  const mover = command.mover >= 0 ? clients[command.mover - (join?.first ?? 0)] : undefined;
  if (mover === undefined) return;
  for (let change = 0; change < command.changes; change++) {
    const started = now();
    sentAt[change] = started;
    mover.lite([`${CHURN_HOST}:${CHURN_PORT_BASE + change}`]).catch((err: Error) => {
      send({ ev: 'error', message: `lite update ${change}: ${err.message}` });
    });
    const wait = started + command.intervalMs - now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
  }
}

function report(): void {
  const errors = clients.reduce((sum, c) => sum + c.reconnects, 0);
  const cpu = process.cpuUsage();
  send({
    ev: 'report',
    cpuSeconds: (cpu.user + cpu.system) / 1e6,
    churn: churnSeen,
    sentAt,
    policy: { count: policySeen.size, last: Math.max(0, ...policySeen.values()) },
    errors,
    firstError: clients.find((c) => c.error !== undefined)?.error,
    messages: clients.reduce((sum, c) => sum + c.messages, 0),
    bytes: clients.reduce((sum, c) => sum + c.bytes, 0),
    peerCounts: {
      min: Math.min(...clients.map((c) => c.peers.size)),
      max: Math.max(...clients.map((c) => c.peers.size)),
    },
  });
}

process.on('message', (raw: unknown) => {
  const command = raw as Command;
  switch (command.cmd) {
    case 'join':
      runJoin(command).catch((err: Error) => send({ ev: 'error', message: err.message }));
      break;
    case 'churn':
      runChurn(command).catch((err: Error) => send({ ev: 'error', message: err.message }));
      break;
    case 'policy-watch':
      policyMarker = command.marker;
      break;
    case 'report':
      report();
      break;
    case 'exit':
      for (const client of clients) client.close();
      process.exit(0);
  }
});
// The parent going away (a crash, Ctrl-C) must not leave this process holding thousands of sockets.
process.on('disconnect', () => process.exit(0));
