// Scenario "throughput": 200 keep-alive clients, non-streaming, upstream latency 0 — requests/s direct, through Spillway,
// and of the raw BullMQ round trip (add → worker → publish → subscriber) at the same concurrency: the broker's floor.
import { runFixedLoad, warmUp } from '../support/fixed-load.ts';
import { recordJobTimings, type JobTimings } from '../support/job-timings.ts';
import { rawRoundTrip } from '../support/raw-round-trip.ts';
import { idleMetrics, redisComparison, redisCost, redisMetrics } from '../support/redis-cost.ts';
import { flatten } from '../support/stats.ts';
import type { CpuTimes, Stack } from '../support/stack.ts';
import { chatRequest, type PreparedRequest } from '../support/targets.ts';
import type { Scenario } from '../support/scenario.ts';

const CONNECTIONS = 200;

export const throughput: Scenario = {
  name: 'throughput',
  summary: `${CONNECTIONS} concurrent clients, non-streaming, upstream latency 0 ms: requests/s, and the raw BullMQ round trip at the same concurrency`,
  rows: [
    { label: 'requests/s', unit: 'req/s', direct: 'direct_rps', spillway: 'spillway_rps', compare: { metric: 'spillway_pct_of_direct', unit: '%' } },
    { label: 'raw BullMQ round trips/s', unit: 'req/s', spillway: 'raw_rps', compare: { metric: 'spillway_pct_of_raw', unit: '%' } },
    { label: 'latency p50', unit: 'ms', direct: 'direct_latency_p50', spillway: 'spillway_latency_p50', compare: { metric: 'added_p50', unit: 'ms' } },
    { label: 'latency p99', unit: 'ms', direct: 'direct_latency_p99', spillway: 'spillway_latency_p99', compare: { metric: 'added_p99', unit: 'ms' } },
    { label: 'of which job waiting in Redis (added → taken), p50', unit: 'ms', spillway: 'job_wait_p50' },
    { label: 'of which job in a worker (taken → finished), p50', unit: 'ms', spillway: 'job_run_p50' },
    { label: 'CPU per request: ingress', unit: 'ms', spillway: 'cpu_ms_per_req_ingress' },
    { label: 'CPU per request: workers', unit: 'ms', spillway: 'cpu_ms_per_req_workers' },
    { label: 'CPU per request: Redis', unit: 'ms', spillway: 'cpu_ms_per_req_redis' },
    { label: 'CPU per request: mock upstream', unit: 'ms', direct: 'direct_cpu_ms_per_req_mock', spillway: 'cpu_ms_per_req_mock' },
    // Redis's own counters around each measured phase (the direct phase does not touch Redis).
    { label: 'Redis commands per request', unit: 'calls', spillway: 'spillway_redis_cmds_per_req' },
    { label: 'raw BullMQ round trip: Redis commands per request', unit: 'calls', spillway: 'raw_redis_cmds_per_req', compare: { metric: 'spillway_redis_cmds_pct_of_raw', unit: '%' } },
    { label: 'of which scripts (EVALSHA) per request', unit: 'calls', spillway: 'spillway_redis_scripts_per_req' },
    { label: 'raw BullMQ round trip: scripts per request', unit: 'calls', spillway: 'raw_redis_scripts_per_req' },
    { label: 'Redis CPU per request', unit: 'µs', spillway: 'spillway_redis_cpu_us_per_req' },
    { label: 'raw BullMQ round trip: Redis CPU per request', unit: 'µs', spillway: 'raw_redis_cpu_us_per_req', compare: { metric: 'spillway_redis_cpu_pct_of_raw', unit: '%' } },
    { label: 'failed requests', unit: 'count', direct: 'direct_failed', spillway: 'spillway_failed' },
  ],
  targets: [
    { label: 'Spillway requests/s', metric: 'spillway_rps', op: '>=', limit: 2500, unit: 'req/s' },
    { label: 'share of the raw BullMQ round-trip rate', metric: 'spillway_pct_of_raw', op: '>=', limit: 50, unit: '%' },
    { label: 'Redis commands per request', metric: 'spillway_redis_cmds_per_req', op: '<=', limit: 25, unit: 'calls' },
    { label: 'Redis CPU per request, % of the raw BullMQ round trip', metric: 'spillway_redis_cpu_pct_of_raw', op: '<=', limit: 70, unit: '%' },
  ],
  async run(ctx) {
    const { direct, spillway } = ctx.stack.targets('open');
    const options = { stream: false, mock: { latencyMs: 0 } };
    const d = await measure(ctx.stack, chatRequest(direct, options), ctx.durationMs);
    const s = await measure(ctx.stack, chatRequest(spillway, options), ctx.durationMs, true);
    ctx.stack.assertAlive();
    const jobs = s.jobs!;
    const raw = await rawRoundTrip(ctx, CONNECTIONS);
    const perReq = (seconds: number, requests: number) => (1000 * seconds) / requests;
    const redis = { ...redisMetrics('spillway', s.redis, s.load.ok), ...redisMetrics('raw', raw.redis, raw.completed) };
    return {
      metrics: {
        ...redis,
        ...redisComparison(redis),
        ...idleMetrics(d.redis, d.load.durationS),
        direct_rps: d.load.rps,
        spillway_rps: s.load.rps,
        raw_rps: raw.rps,
        spillway_pct_of_direct: (100 * s.load.rps) / d.load.rps,
        spillway_pct_of_raw: (100 * s.load.rps) / raw.rps,
        ...flatten('direct_latency', d.load.latency),
        ...flatten('spillway_latency', s.load.latency),
        ...flatten('raw_latency', raw.latency),
        added_p50: s.load.latency.p50 - d.load.latency.p50,
        added_p99: s.load.latency.p99 - d.load.latency.p99,
        cpu_ms_per_req_ingress: perReq(s.cpu.ingress, s.load.ok),
        cpu_ms_per_req_workers: perReq(s.cpu.workers, s.load.ok),
        cpu_ms_per_req_redis: perReq(s.cpu.redis, s.load.ok),
        cpu_ms_per_req_mock: perReq(s.cpu.mock, s.load.ok),
        direct_cpu_ms_per_req_mock: perReq(d.cpu.mock, d.load.ok),
        direct_failed: d.load.failed,
        spillway_failed: s.load.failed,
        job_wait_p50: jobs.wait.p50,
        job_run_p50: jobs.run.p50,
      },
      details: {
        direct: { statuses: d.load.statuses, ok: d.load.ok, durationS: d.load.durationS, cpuSeconds: d.cpu },
        spillway: { statuses: s.load.statuses, ok: s.load.ok, durationS: s.load.durationS, cpuSeconds: s.cpu },
        raw: { completed: raw.completed, lost: raw.lost, concurrency: CONNECTIONS, workers: ctx.workers },
      },
    };
  },
};

/**
 * Warm-up, then the measured run, with the CPU each process of the stack used during it and Redis's counters. `timed`:
 * where the jobs' time goes, read from BullMQ's events during the warm-up (the same load).
 */
async function measure(stack: Stack, request: PreparedRequest, durationMs: number, timed = false) {
  const recorder = timed ? await recordJobTimings(stack.queue) : undefined;
  const amount = await warmUp(request, CONNECTIONS, durationMs);
  const jobs: JobTimings | undefined = await recorder?.stop();
  const redisBefore = await stack.redisStats();
  const before = stack.cpu();
  const load = await runFixedLoad(request, CONNECTIONS, amount);
  const after = stack.cpu();
  const redis = redisCost(redisBefore, await stack.redisStats());
  const cpu = Object.fromEntries(Object.entries(after).map(([k, v]) => [k, v - before[k as keyof CpuTimes]])) as unknown as CpuTimes;
  return { load, cpu, redis, jobs };
}
