// Scenario "ttft": 50 concurrent streaming clients, 50 chunks 10 ms apart — time to first token and total stream time,
// direct vs Spillway. TTFT is the first byte of the first data event, timed by the client itself (undici).
import { runStreamLoad } from '../support/stream-load.ts';
import { redisCost, redisMetrics } from '../support/redis-cost.ts';
import { flatten } from '../support/stats.ts';
import { chatRequest, type PreparedRequest } from '../support/targets.ts';
import { WARMUP_MS, type Scenario } from '../support/scenario.ts';

const CLIENTS = 50;
const CHUNKS = 50;
const CHUNK_DELAY_MS = 10;

export const ttft: Scenario = {
  name: 'ttft',
  summary: `${CLIENTS} concurrent streaming clients, ${CHUNKS} chunks ${CHUNK_DELAY_MS} ms apart: time to first token and total time`,
  rows: [
    { label: 'TTFT p50', unit: 'ms', direct: 'direct_ttft_p50', spillway: 'spillway_ttft_p50', compare: { metric: 'added_ttft_p50', unit: 'ms' } },
    { label: 'TTFT p99', unit: 'ms', direct: 'direct_ttft_p99', spillway: 'spillway_ttft_p99', compare: { metric: 'added_ttft_p99', unit: 'ms' } },
    { label: 'total time p50', unit: 'ms', direct: 'direct_total_p50', spillway: 'spillway_total_p50', compare: { metric: 'added_total_p50', unit: 'ms' } },
    { label: 'total time p99', unit: 'ms', direct: 'direct_total_p99', spillway: 'spillway_total_p99', compare: { metric: 'added_total_p99', unit: 'ms' } },
    { label: 'Redis commands per stream', unit: 'calls', spillway: 'spillway_redis_cmds_per_req' },
    { label: 'Redis CPU per stream', unit: 'µs', spillway: 'spillway_redis_cpu_us_per_req' },
    { label: 'Redis CPU per chunk', unit: 'µs', spillway: 'spillway_redis_cpu_us_per_chunk' },
    { label: 'failed streams', unit: 'count', direct: 'direct_failed', spillway: 'spillway_failed' },
  ],
  targets: [{ label: 'added TTFT p50', metric: 'added_ttft_p50', op: '<=', limit: 3, unit: 'ms' }],
  async run(ctx) {
    const { direct, spillway } = ctx.stack.targets('open');
    const options = { stream: true, mock: { latencyMs: 0, chunks: CHUNKS, chunkDelayMs: CHUNK_DELAY_MS } };
    const measure = async (request: PreparedRequest) => {
      await runStreamLoad(request, CLIENTS, WARMUP_MS);
      const before = await ctx.stack.redisStats();
      const load = await runStreamLoad(request, CLIENTS, ctx.durationMs);
      return { ...load, redis: redisCost(before, await ctx.stack.redisStats()) };
    };
    const d = await measure(chatRequest(direct, options));
    const s = await measure(chatRequest(spillway, options));
    ctx.stack.assertAlive();
    return {
      metrics: {
        ...redisMetrics('spillway', s.redis, s.completed, s.chunks),
        ...flatten('direct_ttft', d.ttft),
        ...flatten('spillway_ttft', s.ttft),
        ...flatten('direct_total', d.total),
        ...flatten('spillway_total', s.total),
        added_ttft_p50: s.ttft.p50 - d.ttft.p50,
        added_ttft_p90: s.ttft.p90 - d.ttft.p90,
        added_ttft_p99: s.ttft.p99 - d.ttft.p99,
        added_total_p50: s.total.p50 - d.total.p50,
        added_total_p99: s.total.p99 - d.total.p99,
        direct_streams: d.completed,
        spillway_streams: s.completed,
        direct_failed: d.failed,
        spillway_failed: s.failed,
      },
      details: {
        direct: { statuses: d.statuses, errors: d.errors, chunks: d.chunks },
        spillway: { statuses: s.statuses, errors: s.errors, chunks: s.chunks },
      },
    };
  },
};
