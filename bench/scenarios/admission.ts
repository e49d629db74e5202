// Scenario "admission": the throughput scenario's load (200 keep-alive clients, non-streaming, upstream latency 0, each
// user message unique) sent as a tenant without limits and as a tenant whose rpm and tpm are configured but never
// binding: what admission costs.
import { runFixedLoad, UNIQUE_MARK, warmUp } from '../support/fixed-load.ts';
import { redisCost, redisMetrics } from '../support/redis-cost.ts';
import type { Stack } from '../support/stack.ts';
import { LIMITED_TENANT_KEY } from '../support/stack.ts';
import { chatRequest, type PreparedRequest } from '../support/targets.ts';
import type { Scenario } from '../support/scenario.ts';

const CONNECTIONS = 200;

export const admission: Scenario = {
  name: 'admission',
  summary: `${CONNECTIONS} concurrent clients, non-streaming: a tenant without limits, then one with rpm and tpm set but not binding (admission: one script call per tenant per event-loop turn)`,
  rows: [
    { label: 'requests/s, no limits', unit: 'req/s', spillway: 'unlimited_rps' },
    { label: 'requests/s, limits not binding', unit: 'req/s', spillway: 'limited_rps', compare: { metric: 'limited_pct_of_unlimited', unit: '%' } },
    { label: 'latency p50, no limits', unit: 'ms', spillway: 'unlimited_latency_p50' },
    { label: 'latency p50, limits not binding', unit: 'ms', spillway: 'limited_latency_p50' },
    { label: 'Redis commands per request, no limits', unit: 'calls', spillway: 'unlimited_redis_cmds_per_req' },
    { label: 'Redis commands per request, limits not binding', unit: 'calls', spillway: 'limited_redis_cmds_per_req' },
    { label: 'ingress CPU per request, no limits', unit: 'µs', spillway: 'unlimited_ingress_cpu_us_per_req' },
    { label: 'ingress CPU per request, limits not binding', unit: 'µs', spillway: 'limited_ingress_cpu_us_per_req' },
    { label: 'worker CPU per request, no limits', unit: 'µs', spillway: 'unlimited_workers_cpu_us_per_req' },
    { label: 'worker CPU per request, limits not binding', unit: 'µs', spillway: 'limited_workers_cpu_us_per_req' },
    { label: 'failed requests', unit: 'count', spillway: 'failed' },
  ],
  targets: [{ label: 'throughput with admission, % of without', metric: 'limited_pct_of_unlimited', op: '>=', limit: 90, unit: '%' }],
  async run(ctx) {
    const { spillway } = ctx.stack.targets('open');
    const options = { stream: false, mock: { latencyMs: 0 } };
    // As an application sends them: the same system prompt every time, a user message never seen before (a number of
    // its own in each), so the token estimate tokenizes the user message of every request.
    const unlimitedRequest = uniqueUserMessage(chatRequest(spillway, options));
    const limitedRequest = uniqueUserMessage(chatRequest({ ...spillway, headers: { authorization: `Bearer ${LIMITED_TENANT_KEY}` } }, options));
    // The first phase after the stack starts runs slower (JIT, pools), and so does the first phase of a code path not
    // run yet (the admission script, the tokenizer, the rate-limit headers): a throw-away pass of each, then the two
    // side by side, in an order that alternates between runs so that neither always goes first.
    await measure(ctx.stack, unlimitedRequest, ctx.durationMs / 2);
    await measure(ctx.stack, limitedRequest, ctx.durationMs / 2);
    let limited: Measured;
    let unlimited: Measured;
    if (ctx.run % 2 === 0) {
      limited = await measure(ctx.stack, limitedRequest, ctx.durationMs);
      unlimited = await measure(ctx.stack, unlimitedRequest, ctx.durationMs);
    } else {
      unlimited = await measure(ctx.stack, unlimitedRequest, ctx.durationMs);
      limited = await measure(ctx.stack, limitedRequest, ctx.durationMs);
    }
    ctx.stack.assertAlive();
    const u = redisMetrics('unlimited', unlimited.redis, unlimited.load.ok);
    const l = redisMetrics('limited', limited.redis, limited.load.ok);
    return {
      metrics: {
        ...u,
        ...l,
        ...cpuMetrics('unlimited', unlimited),
        ...cpuMetrics('limited', limited),
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

type Measured = Awaited<ReturnType<typeof measure>>;

/** The request with a number of its own appended to its last message (the load generator counts them). */
function uniqueUserMessage(request: PreparedRequest): PreparedRequest {
  const body = JSON.parse(request.body) as { messages: { content: string }[] };
  const last = body.messages.at(-1)!;
  last.content = `${last.content} This is request number ${UNIQUE_MARK}.`;
  return { ...request, body: JSON.stringify(body) };
}

async function measure(stack: Stack, request: PreparedRequest, durationMs: number) {
  const amount = await warmUp(request, CONNECTIONS, durationMs);
  const before = await stack.redisStats();
  const cpuBefore = stack.cpu();
  const load = await runFixedLoad(request, CONNECTIONS, amount);
  const cpuAfter = stack.cpu();
  return { load, redis: redisCost(before, await stack.redisStats()), cpu: { ingress: cpuAfter.ingress - cpuBefore.ingress, workers: cpuAfter.workers - cpuBefore.workers } };
}

/** CPU µs per answered request of the ingress and of all workers together: where admission's cost lands. */
function cpuMetrics(phase: string, measured: Measured): Record<string, number> {
  const per = (seconds: number) => (measured.load.ok > 0 ? (seconds * 1e6) / measured.load.ok : Number.NaN);
  return { [`${phase}_ingress_cpu_us_per_req`]: per(measured.cpu.ingress), [`${phase}_workers_cpu_us_per_req`]: per(measured.cpu.workers) };
}
