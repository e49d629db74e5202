// Every spillway_* metric, defined in one place on the process's own prom-client Registry (no global registry).
// Labels are bounded: route, status class, model and provider names come from config, never from client input.
import { Registry, Histogram, Counter, Gauge, collectDefaultMetrics } from 'prom-client';

const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];

/** Which role's metrics a process exports: an ingress-only process shows no worker metric, and the other way round. */
export type MetricsRole = 'ingress' | 'worker';

export interface Metrics {
  registry: Registry;
  // ingress
  httpRequestDuration: Histogram<'route' | 'status'>;
  pendingReplies: Gauge;
  // worker
  queueWait: Histogram<'model'>;
  upstreamDuration: Histogram<'provider' | 'status'>;
  upstreamRequests: Counter<'provider' | 'outcome'>;
  jobsProcessed: Counter<'outcome'>;
}

export interface MetricsOptions {
  /** Node's process_* and nodejs_* metrics, under their standard names (stock dashboards read them). Default: on. */
  defaultMetrics?: boolean;
  /** Roles whose metrics are registered (exported). Default: both, as `spillway start` runs. */
  roles?: readonly MetricsRole[];
}

export function createMetrics(options: MetricsOptions = {}): Metrics {
  const registry = new Registry();
  // No prefix: `process_cpu_seconds_total`, `nodejs_heap_size_used_bytes`… are what Node.js dashboards query.
  if (options.defaultMetrics ?? true) collectDefaultMetrics({ register: registry });
  const roles = new Set(options.roles ?? ['ingress', 'worker']);
  // A metric of a role this process does not run is still created, so code shared by both roles records without
  // checks, but it is registered nowhere: it is never exported.
  const registersFor = (role: MetricsRole): Registry[] => (roles.has(role) ? [registry] : []);
  const ingress = registersFor('ingress');
  const worker = registersFor('worker');
  return {
    registry,
    httpRequestDuration: new Histogram({
      name: 'spillway_http_request_duration_seconds',
      help: 'Time from request received to response finished (streams: to the last byte), by route and status.',
      labelNames: ['route', 'status'],
      buckets: LATENCY_BUCKETS,
      registers: ingress,
    }),
    pendingReplies: new Gauge({
      name: 'spillway_ingress_pending_requests',
      help: 'Requests this ingress holds open while their jobs wait or run.',
      registers: ingress,
    }),
    queueWait: new Histogram({
      name: 'spillway_queue_wait_seconds',
      help: 'Time a job waited in the queue before a worker took it.',
      labelNames: ['model'],
      buckets: LATENCY_BUCKETS,
      registers: worker,
    }),
    upstreamDuration: new Histogram({
      name: 'spillway_upstream_duration_seconds',
      help: 'Duration of upstream calls (streams: to the last chunk), by provider and HTTP status (0: no response).',
      labelNames: ['provider', 'status'],
      buckets: LATENCY_BUCKETS,
      registers: worker,
    }),
    upstreamRequests: new Counter({
      name: 'spillway_upstream_requests_total',
      help: 'Upstream calls by provider and outcome (ok, error, retry, aborted).',
      labelNames: ['provider', 'outcome'],
      registers: worker,
    }),
    jobsProcessed: new Counter({
      name: 'spillway_jobs_processed_total',
      help: 'Completion jobs finished by workers, by outcome (ok, error, expired, cancelled).',
      labelNames: ['outcome'],
      registers: worker,
    }),
  };
}
