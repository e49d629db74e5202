// Scenario "stream-relay": 500 concurrent streams of 100 chunks, which the mock writes as fast as the socket drains —
// the rate of chunks relayed to clients, direct vs Spillway (each client opens its next stream when one ends).
import { runStreamLoad } from '../support/stream-load.ts';
import { redisCost, redisMetrics } from '../support/redis-cost.ts';
import type { CpuTimes } from '../support/stack.ts';
import { chatRequest, type PreparedRequest } from '../support/targets.ts';
import { WARMUP_MS, type Scenario } from '../support/scenario.ts';

const CLIENTS = 500;
const CHUNKS = 100;

export const streamRelay: Scenario = {
  name: 'stream-relay',
  summary: `${CLIENTS} concurrent streams, ${CHUNKS} chunks each, no delay between chunks: chunks relayed per second`,
  rows: [
    { label: 'chunks/s', unit: 'chunks/s', direct: 'direct_chunks_per_s', spillway: 'spillway_chunks_per_s', compare: { metric: 'spillway_pct_of_direct', unit: '%' } },
    { label: 'streams completed', unit: 'count', direct: 'direct_streams', spillway: 'spillway_streams' },
    { label: 'TTFT p50', unit: 'ms', direct: 'direct_ttft_p50', spillway: 'spillway_ttft_p50', compare: { metric: 'added_ttft_p50', unit: 'ms' } },
    { label: 'CPU per 1,000 chunks: ingress', unit: 'ms', spillway: 'cpu_ms_per_kchunk_ingress' },
    { label: 'CPU per 1,000 chunks: workers', unit: 'ms', spillway: 'cpu_ms_per_kchunk_workers' },
    { label: 'CPU per 1,000 chunks: Redis', unit: 'ms', spillway: 'cpu_ms_per_kchunk_redis' },
    // Redis's own counters around the measured phase (INFO commandstats, INFO cpu); a stream is one request.
    { label: 'Redis commands per stream', unit: 'calls', spillway: 'spillway_redis_cmds_per_req' },
    { label: 'Redis commands per chunk', unit: 'calls', spillway: 'spillway_redis_cmds_per_chunk' },
    { label: 'Redis CPU per stream', unit: 'µs', spillway: 'spillway_redis_cpu_us_per_req' },
    { label: 'Redis CPU per chunk', unit: 'µs', spillway: 'spillway_redis_cpu_us_per_chunk' },
    { label: 'failed streams', unit: 'count', direct: 'direct_failed', spillway: 'spillway_failed' },
  ],
  targets: [
    { label: 'chunks relayed per second', metric: 'spillway_chunks_per_s', op: '>=', limit: 50_000, unit: 'chunks/s' },
    { label: 'Redis CPU per chunk', metric: 'spillway_redis_cpu_us_per_chunk', op: '<=', limit: 1, unit: 'µs' },
  ],
  async run(ctx) {
    const { direct, spillway } = ctx.stack.targets('open');
    const options = { stream: true, mock: { latencyMs: 0, chunks: CHUNKS, chunkDelayMs: 0 } };
    const measure = async (request: PreparedRequest) => {
      await runStreamLoad(request, CLIENTS, WARMUP_MS);
      const redisBefore = await ctx.stack.redisStats();
      const before = ctx.stack.cpu();
      const load = await runStreamLoad(request, CLIENTS, ctx.durationMs);
      const after = ctx.stack.cpu();
      const redis = redisCost(redisBefore, await ctx.stack.redisStats());
      const perKChunk = (key: keyof CpuTimes) => (1e6 * (after[key] - before[key])) / load.chunks;
      return { load, perKChunk, redis };
    };
    const d = await measure(chatRequest(direct, options));
    const s = await measure(chatRequest(spillway, options));
    ctx.stack.assertAlive();
    return {
      metrics: {
        ...redisMetrics('spillway', s.redis, s.load.completed, s.load.chunks),
        direct_chunks_per_s: d.load.chunksPerSecond,
        spillway_chunks_per_s: s.load.chunksPerSecond,
        spillway_pct_of_direct: (100 * s.load.chunksPerSecond) / d.load.chunksPerSecond,
        direct_streams: d.load.completed,
        spillway_streams: s.load.completed,
        direct_ttft_p50: d.load.ttft.p50,
        spillway_ttft_p50: s.load.ttft.p50,
        added_ttft_p50: s.load.ttft.p50 - d.load.ttft.p50,
        cpu_ms_per_kchunk_ingress: s.perKChunk('ingress'),
        cpu_ms_per_kchunk_workers: s.perKChunk('workers'),
        cpu_ms_per_kchunk_redis: s.perKChunk('redis'),
        direct_failed: d.load.failed,
        spillway_failed: s.load.failed,
      },
      details: {
        direct: { statuses: d.load.statuses, errors: d.load.errors, chunks: d.load.chunks, durationS: d.load.durationS },
        spillway: { statuses: s.load.statuses, errors: s.load.errors, chunks: s.load.chunks, durationS: s.load.durationS },
      },
    };
  },
};
