// Scenario "admission": the throughput scenario's load (200 keep-alive clients, non-streaming, upstream latency 0) sent
// as a tenant without limits and as a tenant whose rpm and tpm are configured but never binding: what admission costs.
import { runFixedLoad, warmUp } from '../support/fixed-load.ts';
import { redisCost, redisMetrics } from '../support/redis-cost.ts';
import type { Stack } from '../support/stack.ts';
import { LIMITED_TENANT_KEY } from '../support/stack.ts';
import { chatRequest, type PreparedRequest } from '../support/targets.ts';
import type { Scenario } from '../support/scenario.ts';

const CONNECTIONS = 200;

export const admission: Scenario = {
  name: 'admission',
  summary: `${CONNECTIONS} concurrent clients, non-streaming: a tenant without limits, then one with rpm and tpm set but not binding (one admission script per request)`,
  rows: [
    { label: 'requests/s, no limits', unit: 'req/s', spillway: 'unlimited_rps' },
    { label: 'requests/s, limits not binding', unit: 'req/s', spillway: 'limited_rps', compare: { metric: 'limited_pct_of_unlimited', unit: '%' } },
    { label: 'latency p50, no limits', unit: 'ms', spillway: 'unlimited_latency_p50' },
    { label: 'latency p50, limits not binding', unit: 'ms', spillway: 'limited_latency_p50' },
    { label: 'Redis commands per request, no limits', unit: 'calls', spillway: 'unlimited_redis_cmds_per_req' },
    { label: 'Redis commands per request, limits not binding', unit: 'calls', spillway: 'limited_redis_cmds_per_req' },
    { label: 'failed requests', unit: 'count', spillway: 'failed' },
  ],
  targets: [{ label: 'throughput with admission, % of without', metric: 'limited_pct_of_unlimited', op: '>=', limit: 90, unit: '%' }],
  async run(ctx) {
    const { spillway } = ctx.stack.targets('open');
    const options = { stream: false, mock: { latencyMs: 0 } };
    const unlimitedRequest = chatRequest(spillway, options);
    const limitedRequest = chatRequest({ ...spillway, headers: { authorization: `Bearer ${LIMITED_TENANT_KEY}` } }, options);
    // The first phase after the stack starts runs slower (JIT, pools): a throw-away pass, then the two side by side.
    await measure(ctx.stack, unlimitedRequest, ctx.durationMs / 2);
    const limited = await measure(ctx.stack, limitedRequest, ctx.durationMs);
    const unlimited = await measure(ctx.stack, unlimitedRequest, ctx.durationMs);
    ctx.stack.assertAlive();
    const u = redisMetrics('unlimited', unlimited.redis, unlimited.load.ok);
    const l = redisMetrics('limited', limited.redis, limited.load.ok);
    return {
      metrics: {
        ...u,
        ...l,
        unlimited_rps: unlimited.load.rps,
        limited_rps: limited.load.rps,
        limited_pct_of_unlimited: (100 * limited.load.rps) / unlimited.load.rps,
        unlimited_latency_p50: unlimited.load.latency.p50,
        limited_latency_p50: limited.load.latency.p50,
        failed: unlimited.load.failed + limited.load.failed,
      },
      details: { unlimited: unlimited.load.statuses, limited: limited.load.statuses },
    };
  },
};

async function measure(stack: Stack, request: PreparedRequest, durationMs: number) {
  const amount = await warmUp(request, CONNECTIONS, durationMs);
  const before = await stack.redisStats();
  const load = await runFixedLoad(request, CONNECTIONS, amount);
  return { load, redis: redisCost(before, await stack.redisStats()) };
}
