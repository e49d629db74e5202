// Every spillway_* metric, defined in one place on the process's own prom-client Registry (no global registry).
// Labels are bounded: route, status, tenant, model, provider and deployment come from config, never from client input.
import { Registry, Histogram, Counter, Gauge, collectDefaultMetrics } from 'prom-client';

const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];

/** Longest a scrape waits for the queue-depth read from Redis (the last values are served past it). */
const QUEUE_DEPTH_WAIT_MS = 250;

/** Resolves when `promise` settles or after `ms`, whichever comes first. */
async function settledWithin(promise: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([promise, new Promise((resolve) => (timer = setTimeout(resolve, ms)))]);
  clearTimeout(timer);
}

/** Which role's metrics a process exports: an ingress-only process shows no worker metric, and the other way round. */
export type MetricsRole = 'ingress' | 'worker';

/** A queue's job counts by state, as BullMQ's getJobCounts returns them. */
export interface QueueDepth {
  queue: string;
  counts: Record<string, number>;
}

/** A deployment's circuit breaker as this worker holds it in memory. */
export interface BreakerReading {
  provider: string;
  deployment: string;
  state: 'closed' | 'half-open' | 'open';
}

/** An undici pool's own counters (`Pool#stats`): connections, and requests by where they are. */
export interface PoolReading {
  provider: string;
  stats: { connected: number; free: number; pending: number; queued: number; running: number };
}

/** Anything with ioredis's `status` ('ready' when usable). */
export interface RedisStatus {
  readonly status: string;
}

export const BREAKER_STATES = ['closed', 'half-open', 'open'] as const;

export interface Metrics {
  registry: Registry;
  // ingress
  httpRequestDuration: Histogram<'route' | 'status'>;
  /** Requests by route, status, tenant and model ('' when the request named none the config knows). */
  httpRequests: Counter<'route' | 'status' | 'tenant' | 'model'>;
  /** Streams: request received to the first content chunk written to the client. */
  timeToFirstToken: Histogram<'model'>;
  /** Streams that ended without their last event, by cause. */
  streamInterruptions: Counter<'cause'>;
  pendingReplies: Gauge;
  admissionDecisions: Counter<'tenant' | 'outcome'>;
  /** Reconciliation passes after the reply channel came back (pub/sub may have dropped messages meanwhile). */
  replyReconciliations: Counter;
  /** Jobs in each queue by state, read from Redis at scrape time (KEDA's Prometheus trigger may read it). */
  queueDepth: Gauge<'queue' | 'state'>;
  /** Set by the ingress: reads the queues' job counts by state when /metrics is scraped. */
  queueDepthSource: { read?: () => Promise<QueueDepth | QueueDepth[] | undefined> };
  // both roles
  /** 1 while a Redis connection is ready, 0 otherwise; read at scrape time from the connections given to trackRedis. */
  redisConnectionUp: Gauge<'connection'>;
  /** Reports the connection's state under `name` (a fixed name per connection, never an address). */
  trackRedis(name: string, connection: RedisStatus): void;
  /** Answers served from the response cache: fresh (ingress), joined (an identical request's answer), stale (worker). */
  cacheHits: Counter<'kind'>;
  /** Cache lookups that found nothing usable: the request went to the queue. */
  cacheMisses: Counter;
  // worker
  queueWait: Histogram<'model' | 'tenant' | 'priority'>;
  upstreamDuration: Histogram<'provider' | 'deployment' | 'status'>;
  /** Upstream calls (attempts) by outcome: ok, error, rate_limited (a 429), aborted. */
  upstreamRequests: Counter<'provider' | 'deployment' | 'outcome'>;
  /** A call made again after a failed one, by the failure that caused it. */
  upstreamRetries: Counter<'provider' | 'deployment' | 'reason'>;
  /** A job carried on elsewhere: another deployment of its model, or another model. */
  upstreamFallbacks: Counter<'model' | 'kind'>;
  /** Upstream 429s the broker acted on (pause, wait, retry elsewhere) instead of passing them to the client. */
  upstreamRateLimitsAbsorbed: Counter<'provider' | 'deployment'>;
  /** One-hot: 1 for the deployment's current breaker state in this worker, 0 for the others. */
  breakerState: Gauge<'provider' | 'deployment' | 'state'>;
  breakerSource: { read?: () => BreakerReading[] };
  upstreamPoolConnections: Gauge<'provider' | 'state'>;
  upstreamPoolRequests: Gauge<'provider' | 'state'>;
  poolSource: { read?: () => PoolReading[] };
  /** Tokens the upstreams reported, by tenant, public model and kind (prompt, completion, cached: part of prompt). */
  tokens: Counter<'tenant' | 'model' | 'kind'>;
  /** Cost in USD from the config's price table, by tenant and public model. */
  costUsd: Counter<'tenant' | 'model'>;
  jobsProcessed: Counter<'outcome'>;
  /** Webhook delivery attempts by outcome: delivered, skipped, retrying, failed (dead-lettered or stopped). */
  webhookDeliveries: Counter<'outcome'>;
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
  const both = roles.size > 0 ? [registry] : [];
  const queueDepthSource: Metrics['queueDepthSource'] = {};
  const breakerSource: Metrics['breakerSource'] = {};
  const poolSource: Metrics['poolSource'] = {};
  const redisConnections = new Map<string, RedisStatus>();
  // One read at a time, and a scrape waits for it only so long: a Redis that hangs (or pauses writes: BullMQ's count
  // is a script) must not hang /metrics with it. A late answer still lands, for the next scrape.
  let depthRead: Promise<void> | undefined;
  const queueDepth: Gauge<'queue' | 'state'> = new Gauge({
    name: 'spillway_queue_depth',
    help: 'Jobs in a queue by state (waiting, prioritized, delayed, active; webhooks: failed too), read from Redis when scraped.',
    labelNames: ['queue', 'state'],
    registers: ingress,
    async collect() {
      if (queueDepthSource.read === undefined) return;
      depthRead ??= queueDepthSource
        .read()
        .then((depth) => {
          for (const { queue, counts } of depth === undefined ? [] : Array.isArray(depth) ? depth : [depth]) {
            for (const [state, count] of Object.entries(counts)) queueDepth.set({ queue, state }, count);
          }
        })
        .catch(() => undefined)
        .finally(() => {
          depthRead = undefined;
        });
      await settledWithin(depthRead, QUEUE_DEPTH_WAIT_MS);
    },
  });
  return {
    registry,
    httpRequestDuration: new Histogram({
      name: 'spillway_http_request_duration_seconds',
      help: 'Time from request received to response finished (streams: to the last byte), by route and status.',
      labelNames: ['route', 'status'],
      buckets: LATENCY_BUCKETS,
      registers: ingress,
    }),
    httpRequests: new Counter({
      name: 'spillway_http_requests_total',
      help: 'Requests answered, by route, status, tenant and public model (empty when none the config knows).',
      labelNames: ['route', 'status', 'tenant', 'model'],
      registers: ingress,
    }),
    timeToFirstToken: new Histogram({
      name: 'spillway_time_to_first_token_seconds',
      help: 'Streams: time from request received to the first content chunk sent to the client (queue wait included), by model.',
      labelNames: ['model'],
      buckets: LATENCY_BUCKETS,
      registers: ingress,
    }),
    streamInterruptions: new Counter({
      name: 'spillway_stream_interruptions_total',
      help: 'Streams ended before their last event, by cause (client_closed, deadline, stream_broken, slow_reader, job_missing, draining, upstream_error).',
      labelNames: ['cause'],
      registers: ingress,
    }),
    pendingReplies: new Gauge({
      name: 'spillway_ingress_pending_requests',
      help: 'Requests this ingress holds open while their jobs wait or run.',
      registers: ingress,
    }),
    admissionDecisions: new Counter({
      name: 'spillway_admission_decisions_total',
      help: 'Admission decisions by tenant and outcome (now, delayed: waits for its budget slot, rejected: 429, shed: 503).',
      labelNames: ['tenant', 'outcome'],
      registers: ingress,
    }),
    replyReconciliations: new Counter({
      name: 'spillway_reply_reconciliations_total',
      help: 'Reconciliations of pending requests after the reply channel reconnected (their jobs read back from Redis).',
      registers: ingress,
    }),
    queueDepth,
    queueDepthSource,
    redisConnectionUp: new Gauge({
      name: 'spillway_redis_connection_up',
      help: "1 while this process's Redis connection is ready, 0 while it is connecting or down, by connection.",
      labelNames: ['connection'],
      registers: both,
      collect() {
        for (const [connection, redis] of redisConnections) this.set({ connection }, redis.status === 'ready' ? 1 : 0);
      },
    }),
    trackRedis: (name, connection) => void redisConnections.set(name, connection),
    cacheHits: new Counter({
      name: 'spillway_cache_hits_total',
      help: 'Answers served from the response cache, by kind (fresh, joined: an identical request in flight, stale: every deployment failed).',
      labelNames: ['kind'],
      registers: both,
    }),
    cacheMisses: new Counter({
      name: 'spillway_cache_misses_total',
      help: 'Response-cache lookups that found no usable answer (the request was queued).',
      registers: ingress,
    }),
    queueWait: new Histogram({
      name: 'spillway_queue_wait_seconds',
      help: 'Time a job waited in the queue before a worker took it (a delayed job: its budget wait included), by model, tenant and priority class.',
      labelNames: ['model', 'tenant', 'priority'],
      buckets: LATENCY_BUCKETS,
      registers: worker,
    }),
    upstreamDuration: new Histogram({
      name: 'spillway_upstream_duration_seconds',
      help: 'Duration of upstream calls (streams: to the last chunk), by provider, deployment and HTTP status (0: no response).',
      labelNames: ['provider', 'deployment', 'status'],
      buckets: LATENCY_BUCKETS,
      registers: worker,
    }),
    upstreamRequests: new Counter({
      name: 'spillway_upstream_requests_total',
      help: 'Upstream calls (attempts) by provider, deployment and outcome (ok, error, rate_limited: a 429, aborted).',
      labelNames: ['provider', 'deployment', 'outcome'],
      registers: worker,
    }),
    upstreamRetries: new Counter({
      name: 'spillway_upstream_retries_total',
      help: 'Calls made again after a failed one, by the failed deployment and the reason (rate_limited, server_error, timeout, network…).',
      labelNames: ['provider', 'deployment', 'reason'],
      registers: worker,
    }),
    upstreamFallbacks: new Counter({
      name: 'spillway_upstream_fallbacks_total',
      help: 'Jobs carried on elsewhere after a failure, by public model and kind (deployment: another route target, model: a fallback model).',
      labelNames: ['model', 'kind'],
      registers: worker,
    }),
    upstreamRateLimitsAbsorbed: new Counter({
      name: 'spillway_upstream_rate_limits_absorbed_total',
      help: 'Upstream 429s the broker absorbed (deployment paused pool-wide, job retried elsewhere or later) rather than passed on.',
      labelNames: ['provider', 'deployment'],
      registers: worker,
    }),
    breakerState: new Gauge({
      name: 'spillway_upstream_breaker_state',
      help: "A deployment's circuit breaker in this worker: 1 for its current state (closed, half-open, open), 0 for the others.",
      labelNames: ['provider', 'deployment', 'state'],
      registers: worker,
      collect() {
        for (const { provider, deployment, state } of breakerSource.read?.() ?? []) {
          for (const s of BREAKER_STATES) this.set({ provider, deployment, state: s }, s === state ? 1 : 0);
        }
      },
    }),
    breakerSource,
    upstreamPoolConnections: new Gauge({
      name: 'spillway_upstream_pool_connections',
      help: "The undici pool's connections to a provider in this worker (connected, free).",
      labelNames: ['provider', 'state'],
      registers: worker,
      collect() {
        for (const { provider, stats } of poolSource.read?.() ?? []) {
          this.set({ provider, state: 'connected' }, stats.connected);
          this.set({ provider, state: 'free' }, stats.free);
        }
      },
    }),
    upstreamPoolRequests: new Gauge({
      name: 'spillway_upstream_pool_requests',
      help: "The undici pool's requests to a provider in this worker (running, pending: sent, no answer yet, queued: waiting for a connection).",
      labelNames: ['provider', 'state'],
      registers: worker,
      collect() {
        for (const { provider, stats } of poolSource.read?.() ?? []) {
          this.set({ provider, state: 'running' }, stats.running);
          this.set({ provider, state: 'pending' }, stats.pending);
          this.set({ provider, state: 'queued' }, stats.queued);
        }
      },
    }),
    poolSource,
    tokens: new Counter({
      name: 'spillway_tokens_total',
      help: 'Tokens reported by the upstreams, by tenant, public model and kind (prompt, completion, cached: the part of prompt served from the provider cache).',
      labelNames: ['tenant', 'model', 'kind'],
      registers: worker,
    }),
    costUsd: new Counter({
      name: 'spillway_cost_usd_total',
      help: "Upstream cost in US dollars from the config's price table (models[].price), by tenant and public model.",
      labelNames: ['tenant', 'model'],
      registers: worker,
    }),
    jobsProcessed: new Counter({
      name: 'spillway_jobs_processed_total',
      help: 'Completion jobs finished by workers, by outcome (ok, error, expired, cancelled).',
      labelNames: ['outcome'],
      registers: worker,
    }),
    webhookDeliveries: new Counter({
      name: 'spillway_webhook_deliveries_total',
      help: 'Webhook delivery attempts by outcome (delivered, skipped, retrying, failed: dead-lettered or stopped by a 410).',
      labelNames: ['outcome'],
      registers: worker,
    }),
  };
}
