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
      const gauge = (name: string, help: string, pick: (v: ReturnType<typeof read>) => number) =>
        new Gauge({
          name,
          help,
          registers: [registry],
          collect() {
            this.set(pick(read()));
          },
        });
      gauge('weft_nodes', 'Nodes registered in the tailnet', (v) => v.nodes);
      gauge('weft_nodes_online', 'Nodes with an open map stream', (v) => v.online);
      gauge('weft_map_streams', 'Open streaming map sessions', (v) => v.streams);
    },
    observeDerp(read) {
      // Counters read from the relay's own tallies: the hot path only bumps plain numbers.
      const reading = (
        name: string,
        help: string,
        type: 'gauge' | 'counter',
        pick: (v: DerpCounters) => number,
      ) =>
        new Gauge({
          name: type === 'counter' ? `${name}_total` : name,
          help,
          registers: [registry],
          collect() {
            this.set(pick(read()));
          },
        });
      reading('weft_derp_connections', 'Open DERP client connections', 'gauge', (v) => v.connections);
      reading('weft_derp_clients', 'Distinct node keys connected to DERP', 'gauge', (v) => v.keys);
      reading('weft_derp_accepted', 'DERP connections admitted', 'counter', (v) => v.accepted);
      reading('weft_derp_refused', 'DERP connections refused by admission', 'counter', (v) => v.refused);
      reading(
        'weft_derp_packets_relayed',
        'Packets relayed to a local client',
        'counter',
        (v) => v.packetsRelayed,
      );
      reading(
        'weft_derp_bytes_relayed',
        'Packet bytes relayed to local clients',
        'counter',
        (v) => v.bytesRelayed,
      );
      reading(
        'weft_derp_packets_forwarded',
        'Packets forwarded to a mesh peer',
        'counter',
        (v) => v.packetsForwarded,
      );
      reading(
        'weft_derp_dropped_unknown_dest',
        'Packets dropped: destination not connected',
        'counter',
        (v) => v.dropUnknownDestination,
      );
      reading(
        'weft_derp_dropped_dup_client',
        'Packets dropped: destination has duplicate connections, none active',
        'counter',
        (v) => v.dropDuplicateClient,
      );
      reading(
        'weft_derp_dropped_queue_full',
        "Packets dropped: the receiver's queue was full",
        'counter',
        (v) => v.dropQueueFull,
      );
      reading(
        'weft_derp_closed_for_error',
        'DERP connections closed for a protocol error or write timeout',
        'counter',
        (v) => v.closedForError,
      );
    },
  };
}
