// Scenario "hold": 10,000 requests held open at once, on fresh (warmed) processes. Through Spillway the queue is paused:
// every job waits in Redis while the ingress holds its connection, then the queue resumes. RSS before, held, after.
import { startBurst, type BurstResult } from '../support/burst-load.ts';
import { listenDrops, sleep } from '../support/processes.ts';
import { chatRequest } from '../support/targets.ts';
import { MB, type Scenario, type ScenarioContext } from '../support/scenario.ts';

const REQUESTS = 10_000;
const WARMUP_REQUESTS = 1_000;
/** Direct, the mock itself holds each request this long (it has no queue to pause): longer than opening 10k connections. */
const DIRECT_HOLD_MS = 8_000;
/** Time allowed to open all the connections, and to hold them while RSS is sampled. */
const RAMP_TIMEOUT_MS = 45_000;
const HOLD_SAMPLE_MS = 2_000;
/** Idle time after the drain before the "after" RSS is read (and after the warm-up, before the baseline). */
const SETTLE_MS = 5_000;
const WARM_SETTLE_MS = 2_000;
const CLIENT_TIMEOUT_MS = 120_000;
const SAMPLE_EVERY_MS = 200;

export const hold: Scenario = {
  name: 'hold',
  summary: `${REQUESTS.toLocaleString('en')} requests held open at once (Spillway: queue paused, then resumed), non-streaming, on fresh processes`,
  rows: [
    { label: 'requests held at once', unit: 'count', direct: 'direct_held', spillway: 'spillway_held' },
    { label: 'RSS before (direct: mock, Spillway: ingress)', unit: 'MB', direct: 'direct_rss_baseline_mb', spillway: 'ingress_rss_baseline_mb' },
    { label: 'RSS while held', unit: 'MB', direct: 'direct_rss_held_mb', spillway: 'ingress_rss_held_mb' },
    { label: 'RSS per 1,000 held requests', unit: 'MB', direct: 'direct_mb_per_1k_held', spillway: 'ingress_mb_per_1k_held' },
    { label: 'RSS after drain', unit: 'MB', direct: 'direct_rss_after_mb', spillway: 'ingress_rss_after_mb' },
    { label: 'RSS after drain, % of before', unit: '%', direct: 'direct_rss_after_pct', spillway: 'ingress_rss_after_pct' },
    { label: 'ingress V8 heap used: before', unit: 'MB', spillway: 'ingress_heap_baseline_mb' },
    { label: 'ingress V8 heap used: while held', unit: 'MB', spillway: 'ingress_heap_held_mb' },
    { label: 'ingress V8 heap used: after drain', unit: 'MB', spillway: 'ingress_heap_after_mb' },
    { label: 'worker RSS before (largest worker)', unit: 'MB', spillway: 'worker_rss_baseline_mb' },
    { label: 'worker RSS peak while draining', unit: 'MB', spillway: 'worker_rss_peak_mb' },
    { label: 'worker RSS after drain', unit: 'MB', spillway: 'worker_rss_after_mb' },
    { label: 'time until all 10,000 are held', unit: 's', direct: 'direct_ramp_s', spillway: 'spillway_ramp_s' },
    { label: 'SYNs dropped, accept queue full (system-wide)', unit: 'count', direct: 'direct_listen_drops', spillway: 'spillway_listen_drops' },
    { label: 'time to drain after resume', unit: 's', spillway: 'spillway_drain_s' },
    { label: 'answered 200', unit: 'count', direct: 'direct_ok', spillway: 'spillway_ok' },
  ],
  targets: [
    { label: 'ingress RSS with 10,000 held', metric: 'ingress_rss_held_mb', op: '<=', limit: 400, unit: 'MB' },
    { label: 'ingress RSS after drain, % of baseline', metric: 'ingress_rss_after_pct', op: '<=', limit: 110, unit: '%' },
  ],
  async run(ctx) {
    // Fresh processes, warmed by a small burst: the baseline must not depend on which scenarios ran before.
    await ctx.stack.restart();
    const { direct, spillway } = ctx.stack.targets('open');
    for (const target of [direct, spillway]) {
      await startBurst(chatRequest(target, { stream: false, mock: { latencyMs: 0 } }), WARMUP_REQUESTS, CLIENT_TIMEOUT_MS).done;
    }
    await sleep(WARM_SETTLE_MS);
    const d = await holdDirect(ctx);
    const s = await holdSpillway(ctx);
    ctx.stack.assertAlive();
    return { metrics: { ...d.metrics, ...s.metrics }, details: { direct: d.details, spillway: s.details } };
  },
};

async function holdDirect(ctx: ScenarioContext) {
  const mock = ctx.stack.mock;
  const rss = () => ctx.stack.rss().mock;
  await mock.reset();
  const baseline = rss();
  const dropsBefore = listenDrops();
  const startedAt = performance.now();
  const burst = startBurst(chatRequest(ctx.stack.targets('open').direct, { stream: false, mock: { latencyMs: DIRECT_HOLD_MS } }), REQUESTS, CLIENT_TIMEOUT_MS);
  let held = 0;
  let heldRss = 0;
  // Until the first answers come back, every request received is held by the mock.
  const stopAt = Date.now() + DIRECT_HOLD_MS + RAMP_TIMEOUT_MS;
  let rampS = Number.NaN;
  while (burst.settled() === 0 && Date.now() < stopAt) {
    held = Math.max(held, (await mock.stats()).inFlight);
    if (held >= REQUESTS && Number.isNaN(rampS)) rampS = (performance.now() - startedAt) / 1000;
    heldRss = Math.max(heldRss, rss());
    await sleep(SAMPLE_EVERY_MS);
  }
  const result = await burst.done;
  await sleep(SETTLE_MS);
  const after = rss();
  return {
    metrics: {
      direct_held: held,
      direct_ramp_s: rampS,
      direct_listen_drops: listenDrops() - dropsBefore,
      direct_rss_baseline_mb: baseline / MB,
      direct_rss_held_mb: heldRss / MB,
      direct_mb_per_1k_held: ((heldRss - baseline) / MB / Math.max(1, held)) * 1000,
      direct_rss_after_mb: after / MB,
      direct_rss_after_pct: (100 * after) / baseline,
      direct_ok: result.ok,
      direct_failed: REQUESTS - result.ok,
    },
    details: outcome(result),
  };
}

async function holdSpillway(ctx: ScenarioContext) {
  const { stack } = ctx;
  const heapUsed = async () => (await stack.ingressMetrics())['nodejs_heap_size_used_bytes'] ?? Number.NaN;
  const baseline = stack.rss();
  const baselineHeap = await heapUsed();
  await stack.queue.pause();
  let burst: ReturnType<typeof startBurst> | undefined;
  try {
    const dropsBefore = listenDrops();
    const startedAt = performance.now();
    burst = startBurst(chatRequest(stack.targets('open').spillway, { stream: false, mock: { latencyMs: 0 } }), REQUESTS, CLIENT_TIMEOUT_MS);
    let held = 0;
    const rampBy = Date.now() + RAMP_TIMEOUT_MS;
    while (held < REQUESTS && burst.settled() === 0 && Date.now() < rampBy) {
      held = Math.max(held, (await stack.ingressMetrics())['spillway_ingress_pending_requests'] ?? 0);
      await sleep(SAMPLE_EVERY_MS);
    }
    const rampS = held >= REQUESTS ? (performance.now() - startedAt) / 1000 : Number.NaN;
    const drops = listenDrops() - dropsBefore;
    const counts = await stack.queue.getJobCounts('wait', 'paused', 'prioritized', 'delayed');
    const waiting = Object.values(counts).reduce((a, b) => a + b, 0);
    ctx.log(`  hold: ${held} requests held by the ingress, ${waiting} jobs waiting in Redis`);
    let heldRss = 0;
    const sampleUntil = Date.now() + HOLD_SAMPLE_MS;
    while (Date.now() < sampleUntil) {
      heldRss = Math.max(heldRss, stack.rss().ingress);
      await sleep(SAMPLE_EVERY_MS);
    }
    const heldHeap = await heapUsed();

    await stack.queue.resume();
    const resumedAt = performance.now();
    let workerPeak = 0;
    let finished = false;
    const done = burst.done.finally(() => {
      finished = true;
    });
    // Bounded: every request of the burst has its own timeout, so `done` always settles.
    while (!finished) {
      workerPeak = Math.max(workerPeak, ...stack.rss().workers);
      await Promise.race([done, sleep(SAMPLE_EVERY_MS)]);
    }
    const drained = await done;
    const drainS = (performance.now() - resumedAt) / 1000;
    await sleep(SETTLE_MS);
    const after = stack.rss();
    const afterHeap = await heapUsed();
    return {
      metrics: {
        spillway_held: held,
        spillway_ramp_s: rampS,
        spillway_listen_drops: drops,
        spillway_jobs_waiting: waiting,
        ingress_rss_baseline_mb: baseline.ingress / MB,
        ingress_rss_held_mb: heldRss / MB,
        ingress_mb_per_1k_held: ((heldRss - baseline.ingress) / MB / Math.max(1, held)) * 1000,
        ingress_rss_after_mb: after.ingress / MB,
        ingress_rss_after_pct: (100 * after.ingress) / baseline.ingress,
        ingress_heap_baseline_mb: baselineHeap / MB,
        ingress_heap_held_mb: heldHeap / MB,
        ingress_heap_after_mb: afterHeap / MB,
        worker_rss_baseline_mb: Math.max(...baseline.workers) / MB,
        worker_rss_peak_mb: workerPeak / MB,
        worker_rss_after_mb: Math.max(...after.workers) / MB,
        spillway_drain_s: drainS,
        spillway_ok: drained.ok,
        spillway_failed: REQUESTS - drained.ok,
      },
      details: { ...outcome(drained), jobCounts: counts, rssBytes: { baseline, after } },
    };
  } finally {
    // Never leave the deployment paused, whatever happened; let the requests finish before the next scenario.
    await stack.queue.resume();
    await burst?.done;
  }
}

function outcome(r: BurstResult) {
  return { ok: r.ok, refusals: r.refusals, timeouts: r.timeouts, errors: r.errors, durationMs: r.durationMs };
}
