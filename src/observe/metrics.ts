/**
 * Prometheus metrics on their own registry (so tests and several servers in one process don't collide).
 * Node's default metrics (event-loop lag, GC, heap) come first: they are what matters on Node.
 * Label values stay bounded: route patterns, never ids or keys.
 */
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

export interface Metrics {
  readonly registry: Registry;
  readonly httpRequests: Counter<'method' | 'route' | 'status'>;
  readonly httpDuration: Histogram<'method' | 'route'>;
  /** Refused control connections and requests, by reason (a small fixed set). */
  readonly controlRefused: Counter<'reason'>;
  /**
   * Reports live gauges read from the running server at scrape time (nodes, online nodes, map streams),
   * so nothing has to keep them in step on the hot path.
   */
  observeTailnet(read: () => { nodes: number; online: number; streams: number }): void;
  /** Reports the embedded DERP relay's connection gauges and packet counters at scrape time. */
  observeDerp(read: () => DerpCounters): void;
}

/** The embedded DERP relay's tallies (its `stats`). */
export interface DerpCounters {
  connections: number;
  /** Distinct node keys connected. */
  keys: number;
  accepted: number;
  refused: number;
  packetsRelayed: number;
  bytesRelayed: number;
  packetsForwarded: number;
  dropUnknownDestination: number;
  dropDuplicateClient: number;
  dropQueueFull: number;
  /** Connections closed for a protocol violation, a timeout or a write that did not drain. */
  closedForError: number;
}

export function createMetrics(): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'weft_' });
  return {
    registry,
    httpRequests: new Counter({
      name: 'weft_http_requests_total',
      help: 'HTTP requests answered, by method, route pattern and status code',
      labelNames: ['method', 'route', 'status'],
      registers: [registry],
    }),
    httpDuration: new Histogram({
      name: 'weft_http_request_duration_seconds',
      help: 'Time to answer HTTP requests, by method and route pattern',
      labelNames: ['method', 'route'],
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5],
      registers: [registry],
    }),
    controlRefused: new Counter({
      name: 'weft_control_refused_total',
      help: 'Control-plane connections or requests refused, by reason',
      labelNames: ['reason'],
      registers: [registry],
    }),
    observeTailnet(read) {
      liveGauge(registry, read, 'weft_nodes', 'Nodes registered in the tailnet', (v) => v.nodes);
      liveGauge(registry, read, 'weft_nodes_online', 'Nodes with an open map stream', (v) => v.online);
      liveGauge(registry, read, 'weft_map_streams', 'Open streaming map sessions', (v) => v.streams);
    },
    observeDerp(read) {
      for (const [name, help, pick] of DERP_GAUGES) liveGauge(registry, read, name, help, pick);
      for (const [name, help, pick] of DERP_COUNTERS) liveCounter(registry, read, name, help, pick);
    },
  };
}

type Reading<T> = [name: string, help: string, pick: (v: T) => number];

const DERP_GAUGES: Array<Reading<DerpCounters>> = [
  ['weft_derp_connections', 'Open DERP client connections', (v) => v.connections],
  ['weft_derp_clients', 'Distinct node keys connected to DERP', (v) => v.keys],
];

// Read from the relay's own tallies at scrape time: the packet path only bumps plain numbers.
const DERP_COUNTERS: Array<Reading<DerpCounters>> = [
  ['weft_derp_accepted_total', 'DERP connections admitted', (v) => v.accepted],
  ['weft_derp_refused_total', 'DERP connections refused by admission or a wrong mesh key', (v) => v.refused],
  ['weft_derp_packets_relayed_total', 'Packets relayed to a local client', (v) => v.packetsRelayed],
  ['weft_derp_bytes_relayed_total', 'Packet bytes relayed to local clients', (v) => v.bytesRelayed],
  ['weft_derp_packets_forwarded_total', 'Packets forwarded to a mesh peer', (v) => v.packetsForwarded],
  [
    'weft_derp_dropped_unknown_dest_total',
    'Packets dropped: destination not connected',
    (v) => v.dropUnknownDestination,
  ],
  [
    'weft_derp_dropped_dup_client_total',
    'Packets dropped: destination has duplicate connections, none active',
    (v) => v.dropDuplicateClient,
  ],
  [
    'weft_derp_dropped_queue_full_total',
    "Packets dropped: the receiver's queue was full",
    (v) => v.dropQueueFull,
  ],
  [
    'weft_derp_closed_for_error_total',
    'DERP connections closed for a protocol error or a write timeout',
    (v) => v.closedForError,
  ],
];

/** A gauge whose value is read from the running server at scrape time. */
function liveGauge<T>(registry: Registry, read: () => T, ...[name, help, pick]: Reading<T>): void {
  new Gauge({
    name,
    help,
    registers: [registry],
    collect() {
      this.set(pick(read()));
    },
  });
}

/** A counter kept by the server itself (monotonic), copied at scrape time. */
function liveCounter<T>(registry: Registry, read: () => T, ...[name, help, pick]: Reading<T>): void {
  new Counter({
    name,
    help,
    registers: [registry],
    collect() {
      this.reset();
      this.inc(pick(read()));
    },
  });
}
