// Scenario "spike": 5,000 requests at once against an upstream that takes 100 concurrent calls and answers 429 beyond.
// Direct, the clients see the 429s; through Spillway, the queue should absorb them. Every outcome is counted.
import { startBurst, type Refusal } from '../support/burst-load.ts';
import { listenDrops } from '../support/processes.ts';
import { redisCost, redisMetrics } from '../support/redis-cost.ts';
import { LIMITED_UPSTREAM_CONCURRENCY } from '../support/stack.ts';
import { chatRequest } from '../support/targets.ts';
import type { Scenario } from '../support/scenario.ts';

const REQUESTS = 5_000;
const UPSTREAM_LATENCY_MS = 200;
/** A client gives up on a request after this long: that is a timeout. */
const CLIENT_TIMEOUT_MS = 60_000;

/**
 * "upstream-429": the provider's rate limit reached the client, as the mock's own 429 or as Spillway's 503
 * `upstream_overloaded` (retries exhausted). "refused-early": a 429/503 with Retry-After that did not come from upstream.
 */
function label(r: Refusal): string {
  let code: unknown;
  try {
    code = (JSON.parse(r.body) as { error?: { code?: unknown } }).error?.code;
  } catch {
    code = undefined;
  }
  if ((r.status === 429 && r.body.includes('mock upstream')) || code === 'upstream_overloaded') return 'upstream-429';
  if ((r.status === 429 || r.status === 503) && r.retryAfter !== undefined) return 'refused-early';
  return `other-${r.status}${typeof code === 'string' ? `-${code}` : ''}`;
}

export const spike: Scenario = {
  name: 'spike',
  summary: `${REQUESTS.toLocaleString('en')} requests at once, upstream latency ${UPSTREAM_LATENCY_MS} ms, upstream takes ${LIMITED_UPSTREAM_CONCURRENCY} concurrent calls (429 beyond)`,
  rows: [
    { label: 'answered 200 or refused early', unit: '%', direct: 'direct_answered_pct', spillway: 'spillway_answered_pct' },
    { label: 'answered 200', unit: 'count', direct: 'direct_ok', spillway: 'spillway_ok' },
    { label: 'upstream 429s reaching a client', unit: 'count', direct: 'direct_upstream_429', spillway: 'spillway_upstream_429' },
    { label: 'timeouts', unit: 'count', direct: 'direct_timeouts', spillway: 'spillway_timeouts' },
    { label: 'other failures', unit: 'count', direct: 'direct_other', spillway: 'spillway_other' },
    { label: 'time to drain', unit: 's', direct: 'direct_drain_s', spillway: 'spillway_drain_s' },
    { label: 'latency p99 of the 200s', unit: 's', direct: 'direct_latency_p99_s', spillway: 'spillway_latency_p99_s' },
    { label: 'upstream: 429s it answered', unit: 'count', direct: 'direct_upstream_rejected', spillway: 'spillway_upstream_rejected' },
    { label: 'upstream: max concurrent calls', unit: 'count', direct: 'direct_upstream_max_in_flight', spillway: 'spillway_upstream_max_in_flight' },
    { label: 'SYNs dropped, accept queue full (system-wide)', unit: 'count', direct: 'direct_listen_drops', spillway: 'spillway_listen_drops' },
    // Redis's own counters around the burst, per request sent (retries and waiting in the queue included).
    { label: 'Redis commands per request', unit: 'calls', spillway: 'spillway_redis_cmds_per_req' },
    { label: 'Redis CPU per request', unit: 'µs', spillway: 'spillway_redis_cpu_us_per_req' },
  ],
  targets: [
    { label: 'answered 200 or refused early with Retry-After', metric: 'spillway_answered_pct', op: '>=', limit: 100, unit: '%' },
    { label: 'timeouts', metric: 'spillway_timeouts', op: '<=', limit: 0, unit: 'count' },
    { label: 'upstream 429s reaching a client', metric: 'spillway_upstream_429', op: '<=', limit: 0, unit: 'count' },
  ],
  async run(ctx) {
    const upstream = ctx.stack.limitedMock;
    const { direct, spillway } = ctx.stack.targets('limited');
    const options = { stream: false, mock: { latencyMs: UPSTREAM_LATENCY_MS } };
    const metrics: Record<string, number> = {};
    const details: Record<string, unknown> = {};
    for (const target of [direct, spillway]) {
      await upstream.reset();
      const dropsBefore = listenDrops();
      const redisBefore = await ctx.stack.redisStats();
      const result = await startBurst(chatRequest(target, options), REQUESTS, CLIENT_TIMEOUT_MS, label).done;
      const redis = redisCost(redisBefore, await ctx.stack.redisStats());
      const drops = listenDrops() - dropsBefore;
      const stats = await upstream.stats();
      const refused = result.refusals['refused-early'] ?? 0;
      const upstream429 = result.refusals['upstream-429'] ?? 0;
      const other = REQUESTS - result.ok - refused - upstream429 - result.timeouts;
      const p = target.name;
      Object.assign(metrics, {
        [`${p}_answered_pct`]: (100 * (result.ok + refused)) / REQUESTS,
        [`${p}_ok`]: result.ok,
        [`${p}_refused_early`]: refused,
        [`${p}_upstream_429`]: upstream429,
        [`${p}_timeouts`]: result.timeouts,
        [`${p}_other`]: other,
        [`${p}_drain_s`]: result.durationMs / 1000,
        [`${p}_latency_p50_s`]: result.latency.p50 / 1000,
        [`${p}_latency_p99_s`]: result.latency.p99 / 1000,
        [`${p}_upstream_rejected`]: stats.rejected,
        [`${p}_upstream_max_in_flight`]: stats.maxInFlight,
        [`${p}_listen_drops`]: drops,
      });
      // Direct, Redis only sees the idle Spillway processes' background work: kept in the details, not as a figure.
      if (p === 'spillway') Object.assign(metrics, redisMetrics(p, redis, REQUESTS));
      details[p] = { redisCommands: redis.commands, redisCpuUs: redis.cpuUs, refusals: result.refusals, errors: result.errors, upstream: stats };
      ctx.log(`  spike ${p}: ${result.ok} ok, ${refused} refused early, ${upstream429} upstream 429, ${result.timeouts} timeouts in ${(result.durationMs / 1000).toFixed(1)} s`);
    }
    ctx.stack.assertAlive();
    return { metrics, details };
  },
};
