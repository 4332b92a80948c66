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
  };
}
