// The metrics registry: Node's default metrics under their standard names, and each role exporting only its own.
import { describe, expect, it, vi } from 'vitest';
import { createMetrics } from '../../src/observability/metrics.ts';
import { createRoleMetrics } from '../../src/roles/context.ts';
import type { Metrics, QueueDepth } from '../../src/observability/metrics.ts';

const INGRESS = [
  'spillway_admission_decisions_total',
  'spillway_cache_misses_total',
  'spillway_http_request_duration_seconds',
  'spillway_http_requests_total',
  'spillway_ingress_pending_requests',
  'spillway_queue_depth',
  'spillway_reply_reconciliations_total',
  'spillway_stream_interruptions_total',
  'spillway_time_to_first_token_seconds',
];
const WORKER = [
  'spillway_cost_usd_total',
  'spillway_jobs_processed_total',
  'spillway_queue_wait_seconds',
  'spillway_tokens_total',
  'spillway_upstream_breaker_state',
  'spillway_upstream_duration_seconds',
  'spillway_upstream_fallbacks_total',
  'spillway_upstream_pool_connections',
  'spillway_upstream_pool_requests',
  'spillway_upstream_rate_limits_absorbed_total',
  'spillway_upstream_requests_total',
  'spillway_upstream_retries_total',
  'spillway_webhook_deliveries_total',
];
/** Recorded by both roles: each process reports its own Redis connections; the ingress serves fresh hits, a worker stale ones. */
const BOTH = ['spillway_cache_hits_total', 'spillway_redis_connection_up'];

const names = (metrics: Metrics): string[] => metrics.registry.getMetricsAsArray().map((m) => m.name);
const spillwayNames = (metrics: Metrics): string[] => names(metrics).filter((n) => n.startsWith('spillway_')).sort();

describe('metrics registry', () => {
  it('exports Node.js process metrics under their standard names, as stock dashboards query them', () => {
    const all = names(createMetrics({ roles: ['ingress'] }));
    expect(all).toEqual(expect.arrayContaining(['process_cpu_seconds_total', 'process_resident_memory_bytes', 'nodejs_heap_size_used_bytes', 'nodejs_eventloop_lag_seconds']));
    expect(all.filter((n) => n.startsWith('spillway_process_'))).toEqual([]);
  });

  it('an ingress process registers the HTTP, stream, admission, queue-depth and cache-lookup metrics, and no worker metric', () => {
    expect(spillwayNames(createRoleMetrics('ingress'))).toEqual([...INGRESS, ...BOTH].sort());
  });

  it('a worker process registers the queue-wait, upstream, token, cost, job and webhook metrics, and no ingress metric', () => {
    expect(spillwayNames(createRoleMetrics('worker'))).toEqual([...WORKER, ...BOTH].sort());
  });

  it('`spillway start` runs both roles and registers both sets, the shared ones once', () => {
    expect(spillwayNames(createRoleMetrics('start'))).toEqual([...INGRESS, ...WORKER, ...BOTH].sort());
  });

  it("a metric of a role the process does not run can be recorded, but is never exported", async () => {
    const ingress = createMetrics({ roles: ['ingress'], defaultMetrics: false });
    ingress.queueWait.observe({ model: 'm', tenant: 't', priority: 'normal' }, 0.5);
    ingress.jobsProcessed.inc({ outcome: 'ok' });
    const text = await ingress.registry.metrics();
    expect(text).not.toContain('spillway_queue_wait_seconds');
    expect(text).not.toContain('spillway_jobs_processed_total');
    expect(text).toContain('spillway_http_request_duration_seconds');
  });

  it('reads queue depth, breaker states, pool stats and Redis connection state from their sources at scrape time', async () => {
    const metrics = createMetrics({ defaultMetrics: false });
    const depths: QueueDepth[] = [
      { queue: 'completions', counts: { waiting: 3, active: 1 } },
      { queue: 'webhooks', counts: { failed: 2 } },
    ];
    metrics.queueDepthSource.read = async () => depths;
    metrics.breakerSource.read = () => [{ provider: 'p', deployment: 'p/m', state: 'half-open' }];
    metrics.poolSource.read = () => [{ provider: 'p', stats: { connected: 4, free: 1, pending: 2, queued: 5, running: 3 } }];
    const redis = { status: 'reconnecting' };
    metrics.trackRedis('worker', redis);
    let text = await metrics.registry.metrics();
    expect(text).toContain('spillway_queue_depth{queue="completions",state="waiting"} 3');
    expect(text).toContain('spillway_queue_depth{queue="webhooks",state="failed"} 2');
    expect(text).toContain('spillway_upstream_breaker_state{provider="p",deployment="p/m",state="half-open"} 1');
    expect(text).toContain('spillway_upstream_breaker_state{provider="p",deployment="p/m",state="open"} 0');
    expect(text).toContain('spillway_upstream_pool_requests{provider="p",state="queued"} 5');
    expect(text).toContain('spillway_upstream_pool_connections{provider="p",state="connected"} 4');
    expect(text).toContain('spillway_redis_connection_up{connection="worker"} 0');
    redis.status = 'ready';
    text = await metrics.registry.metrics();
    expect(text).toContain('spillway_redis_connection_up{connection="worker"} 1');
  });

  it('a queue-depth read that hangs does not hang the scrape; its answer shows in a later scrape, and reads never pile up', async () => {
    const metrics = createMetrics({ defaultMetrics: false, roles: ['ingress'] });
    let release: (depth: QueueDepth) => void = () => undefined;
    let reads = 0;
    metrics.queueDepthSource.read = () => {
      reads++;
      return new Promise<QueueDepth>((resolve) => (release = resolve));
    };
    // Three scrapes while Redis does not answer: each completes, and only one read is outstanding.
    for (let i = 0; i < 3; i++) expect(await metrics.registry.metrics()).not.toContain('spillway_queue_depth{');
    expect(reads).toBe(1);
    release({ queue: 'completions', counts: { waiting: 7 } });
    await vi.waitFor(async () => expect(await metrics.registry.metrics()).toContain('spillway_queue_depth{queue="completions",state="waiting"} 7'));
  });

  it('a queue-depth source that fails leaves the scrape working', async () => {
    const metrics = createMetrics({ defaultMetrics: false, roles: ['ingress'] });
    metrics.queueDepthSource.read = () => Promise.reject(new Error('redis down'));
    expect(await metrics.registry.metrics()).toContain('# TYPE spillway_queue_depth gauge');
  });
});
