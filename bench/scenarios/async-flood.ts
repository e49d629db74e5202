// Scenario "async-flood": tenant B sends synchronous chat requests at a steady rate, alone and then while tenant A's
// 10,000 async jobs (POST /v1/jobs, batch class) drain through saturated workers: what the backlog costs B.
import { summarize, type Summary } from '../support/stats.ts';
import { TENANT_A_KEY, TENANT_B_KEY } from '../support/stack.ts';
import { CHAT_PATH, type Target } from '../support/targets.ts';
import type { Scenario } from '../support/scenario.ts';

const FLOOD = 10_000;
/** Worker slots in all (per worker: this ÷ workers): the flood keeps every one busy. */
const SLOTS = 32;
const LATENCY_MS = 50;
const B_RATE_PER_S = 5;
const SUBMITTERS = 100;

export const asyncFlood: Scenario = {
  name: 'async-flood',
  summary: `${SLOTS} worker slots, upstream latency ${LATENCY_MS} ms: tenant B's synchronous requests (${B_RATE_PER_S}/s) alone, then while tenant A's ${FLOOD} async jobs drain`,
  rows: [
    { label: "B's latency p50, alone", unit: 'ms', spillway: 'b_alone_p50' },
    { label: "B's latency p50, during A's async flood", unit: 'ms', spillway: 'b_flood_p50', compare: { metric: 'b_added_p50', unit: 'ms' } },
    { label: "B's latency p99, alone", unit: 'ms', spillway: 'b_alone_p99' },
    { label: "B's latency p99, during A's async flood", unit: 'ms', spillway: 'b_flood_p99', compare: { metric: 'b_added_p99', unit: 'ms' } },
    { label: "B's requests refused or failed", unit: 'count', spillway: 'b_failed' },
    { label: "A's submissions per second (202)", unit: 'req/s', spillway: 'a_submit_rps' },
    { label: "A's jobs still queued when B's flood phase ended", unit: 'count', spillway: 'a_backlog_at_end' },
  ],
  targets: [{ label: "B's added p50 under the flood, at most one upstream latency", metric: 'b_added_p50', op: '<=', limit: LATENCY_MS, unit: 'ms' }],
  async run(ctx) {
    const perWorker = Math.max(1, Math.floor(SLOTS / ctx.workers));
    await ctx.stack.reconfigure({ worker: { concurrency: perWorker } });
    try {
      const { spillway } = ctx.stack.targets('open');
      const seconds = Math.max(3, Math.round(ctx.durationMs / 1000));
      const alone = await steadyRequests(spillway, seconds);

      const submitStarted = performance.now();
      let next = 0;
      let accepted = 0;
      await Promise.all(
        Array.from({ length: SUBMITTERS }, async () => {
          while (next < FLOOD) {
            next++;
            if (await submitAsync(spillway)) accepted++;
          }
        }),
      );
      const submitSeconds = (performance.now() - submitStarted) / 1000;
      const during = await steadyRequests(spillway, seconds);
      const counts = await ctx.stack.queue.getJobCounts('waiting', 'prioritized', 'delayed');
      const backlog = Object.values(counts).reduce((sum, n) => sum + n, 0);
      // Let the rest drain before the stack is reconfigured back (its jobs would otherwise run for nobody).
      for (let i = 0; i < 600; i++) {
        const left = await ctx.stack.queue.getJobCounts('waiting', 'prioritized', 'delayed', 'active');
        if (Object.values(left).every((n) => n === 0)) break;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      return {
        metrics: {
          b_alone_p50: alone.latency.p50,
          b_alone_p99: alone.latency.p99,
          b_flood_p50: during.latency.p50,
          b_flood_p99: during.latency.p99,
          b_added_p50: during.latency.p50 - alone.latency.p50,
          b_added_p99: during.latency.p99 - alone.latency.p99,
          b_failed: alone.failed + during.failed,
          a_submit_rps: accepted / submitSeconds,
          a_backlog_at_end: backlog,
        },
        details: { accepted, submitSeconds, alone, during },
      };
    } finally {
      await ctx.stack.reconfigure({});
    }
  },
};

/** B's requests, one every 1/B_RATE_PER_S s for `seconds`, each timed end to end. */
async function steadyRequests(target: Target, seconds: number): Promise<{ latency: Summary; failed: number }> {
  const latencies: number[] = [];
  let failed = 0;
  const calls: Promise<void>[] = [];
  for (let i = 0; i < seconds * B_RATE_PER_S; i++) {
    const started = performance.now();
    calls.push(
      fetch(target.origin + CHAT_PATH, {
        method: 'POST',
        headers: { authorization: `Bearer ${TENANT_B_KEY}`, 'content-type': 'application/json', 'x-mock-latency-ms': String(LATENCY_MS) },
        body: JSON.stringify({ model: target.model, messages: [{ role: 'user', content: 'hi' }] }),
        signal: AbortSignal.timeout(60_000),
      }).then(
        async (response) => {
          await response.arrayBuffer();
          if (response.ok) latencies.push(performance.now() - started);
          else failed++;
        },
        () => void failed++,
      ),
    );
    await new Promise((resolve) => setTimeout(resolve, 1000 / B_RATE_PER_S));
  }
  await Promise.all(calls);
  return { latency: summarize(latencies), failed };
}

async function submitAsync(target: Target): Promise<boolean> {
  const response = await fetch(`${target.origin}/v1/jobs`, {
    method: 'POST',
    headers: { authorization: `Bearer ${TENANT_A_KEY}`, 'content-type': 'application/json', 'x-mock-latency-ms': String(LATENCY_MS) },
    body: JSON.stringify({ endpoint: '/v1/chat/completions', body: { model: target.model, messages: [{ role: 'user', content: 'hi' }] } }),
    signal: AbortSignal.timeout(60_000),
  }).catch(() => undefined);
  if (response === undefined) return false;
  await response.arrayBuffer();
  return response.status === 202;
}
