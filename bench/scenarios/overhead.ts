// Scenario "overhead": 10 keep-alive clients, non-streaming, upstream latency 0 — the latency Spillway adds to a call.
// Same request, same mock, measured direct then through Spillway; the difference of the percentiles is the overhead.
import { runFixedLoad, warmUp } from '../support/fixed-load.ts';
import { recordJobTimings } from '../support/job-timings.ts';
import { rawRoundTrip } from '../support/raw-round-trip.ts';
import { idleMetrics, redisComparison, redisCost, redisMetrics } from '../support/redis-cost.ts';
import { flatten } from '../support/stats.ts';
import { chatRequest } from '../support/targets.ts';
import type { Scenario } from '../support/scenario.ts';

const CONNECTIONS = 10;

export const overhead: Scenario = {
  name: 'overhead',
  summary: `${CONNECTIONS} concurrent clients, non-streaming, upstream latency 0 ms: latency added by Spillway (and the raw BullMQ floor)`,
  rows: [
    { label: 'latency p50', unit: 'ms', direct: 'direct_latency_p50', spillway: 'spillway_latency_p50', compare: { metric: 'added_p50', unit: 'ms' } },
    { label: 'latency p90', unit: 'ms', direct: 'direct_latency_p90', spillway: 'spillway_latency_p90', compare: { metric: 'added_p90', unit: 'ms' } },
    { label: 'latency p99', unit: 'ms', direct: 'direct_latency_p99', spillway: 'spillway_latency_p99', compare: { metric: 'added_p99', unit: 'ms' } },
    { label: 'requests/s', unit: 'req/s', direct: 'direct_rps', spillway: 'spillway_rps', compare: { metric: 'spillway_pct_of_direct_rps', unit: '%' } },
    { label: 'failed requests', unit: 'count', direct: 'direct_failed', spillway: 'spillway_failed' },
    // The floor: a bare BullMQ round trip (no HTTP) at the same concurrency, in the same topology.
    { label: 'raw BullMQ round trip p50 (floor)', unit: 'ms', spillway: 'raw_latency_p50' },
    { label: 'raw BullMQ round trip p99 (floor)', unit: 'ms', spillway: 'raw_latency_p99' },
    // BullMQ's event times during the warm-up (same load, ms resolution): where Spillway's latency goes.
    { label: 'of which job waiting in Redis (added → taken), p50', unit: 'ms', spillway: 'job_wait_p50' },
    { label: 'of which job waiting in Redis, p99', unit: 'ms', spillway: 'job_wait_p99' },
    { label: 'of which job in a worker (taken → finished), p50', unit: 'ms', spillway: 'job_run_p50' },
    { label: 'of which job in a worker, p99', unit: 'ms', spillway: 'job_run_p99' },
    { label: 'rest of p50: ingress, HTTP, reply', unit: 'ms', spillway: 'rest_p50' },
    // Redis's own counters around each measured phase (the direct phase does not touch Redis).
    { label: 'Redis commands per request', unit: 'calls', spillway: 'spillway_redis_cmds_per_req' },
    { label: 'raw BullMQ round trip: Redis commands per request', unit: 'calls', spillway: 'raw_redis_cmds_per_req', compare: { metric: 'spillway_redis_cmds_pct_of_raw', unit: '%' } },
    { label: 'Redis CPU per request', unit: 'µs', spillway: 'spillway_redis_cpu_us_per_req' },
    { label: 'raw BullMQ round trip: Redis CPU per request', unit: 'µs', spillway: 'raw_redis_cpu_us_per_req', compare: { metric: 'spillway_redis_cpu_pct_of_raw', unit: '%' } },
  ],
  targets: [
    { label: 'added latency p50', metric: 'added_p50', op: '<=', limit: 3, unit: 'ms' },
    { label: 'added latency p99', metric: 'added_p99', op: '<=', limit: 10, unit: 'ms' },
  ],
  async run(ctx) {
    const { direct, spillway } = ctx.stack.targets('open');
    const options = { stream: false, mock: { latencyMs: 0 } };
    const measure = async (request: ReturnType<typeof chatRequest>, timed = false) => {
      const recorder = timed ? await recordJobTimings(ctx.stack.queue) : undefined;
      const amount = await warmUp(request, CONNECTIONS, ctx.durationMs);
      const jobs = await recorder?.stop();
      const before = await ctx.stack.redisStats();
      const load = await runFixedLoad(request, CONNECTIONS, amount);
      return { ...load, redis: redisCost(before, await ctx.stack.redisStats()), jobs };
    };
    const d = await measure(chatRequest(direct, options));
    const s = await measure(chatRequest(spillway, options), true);
    ctx.stack.assertAlive();
    const jobs = s.jobs!;
    const raw = await rawRoundTrip(ctx, CONNECTIONS);
    const redis = { ...redisMetrics('spillway', s.redis, s.ok), ...redisMetrics('raw', raw.redis, raw.completed) };
    return {
      metrics: {
        ...redis,
        ...redisComparison(redis),
        ...idleMetrics(d.redis, d.durationS),
        ...flatten('direct_latency', d.latency),
        ...flatten('spillway_latency', s.latency),
        added_p50: s.latency.p50 - d.latency.p50,
        added_p90: s.latency.p90 - d.latency.p90,
        added_p99: s.latency.p99 - d.latency.p99,
        direct_rps: d.rps,
        spillway_rps: s.rps,
        spillway_pct_of_direct_rps: (100 * s.rps) / d.rps,
        direct_failed: d.failed,
        spillway_failed: s.failed,
        job_wait_p50: jobs.wait.p50,
        job_wait_p99: jobs.wait.p99,
        job_run_p50: jobs.run.p50,
        job_run_p99: jobs.run.p99,
        rest_p50: s.latency.p50 - jobs.wait.p50 - jobs.run.p50,
        ...flatten('raw_latency', raw.latency),
      },
      details: {
        direct: { statuses: d.statuses, ok: d.ok, timeouts: d.timeouts, durationS: d.durationS },
        spillway: { statuses: s.statuses, ok: s.ok, timeouts: s.timeouts, durationS: s.durationS },
        jobsTimed: jobs.jobs,
      },
    };
  },
};
