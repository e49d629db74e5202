// Scenario "fairness": with fair share on and few worker slots, tenant B sends 20 requests alone, then again while
// tenant A has flooded the queue with 2,000: B's median queue wait with and without the flood, in the same run.
import type { Queue } from 'bullmq';
import { summarize } from '../support/stats.ts';
import { TENANT_A_KEY, TENANT_B_KEY } from '../support/stack.ts';
import { CHAT_PATH, type Target } from '../support/targets.ts';
import type { Scenario } from '../support/scenario.ts';

const FLOOD = 2_000;
const LIGHT = 20;
/** Worker slots in all (per worker: this ÷ workers): few enough that B's 20 alone already queue. */
const SLOTS = 8;
const LATENCY_MS = 20;

export const fairness: Scenario = {
  name: 'fairness',
  summary: `fair share on, ${SLOTS} worker slots, upstream latency ${LATENCY_MS} ms: tenant B's ${LIGHT} requests alone, then while tenant A has ${FLOOD} queued`,
  rows: [
    { label: "B's queue wait p50, alone", unit: 'ms', spillway: 'b_wait_alone_p50' },
    { label: "B's queue wait p50, during A's flood", unit: 'ms', spillway: 'b_wait_flood_p50', compare: { metric: 'b_wait_ratio_pct', unit: '%' } },
    { label: "A's jobs waiting when B's requests were sent", unit: 'count', spillway: 'a_backlog_when_b_sent' },
    { label: "A's jobs finished before B's last one", unit: 'count', spillway: 'a_before_last_b' },
    { label: 'failed requests', unit: 'count', spillway: 'failed' },
  ],
  targets: [{ label: "B's median wait under A's flood, % of its wait alone", metric: 'b_wait_ratio_pct', op: '<=', limit: 300, unit: '%' }],
  async run(ctx) {
    const perWorker = Math.max(1, Math.floor(SLOTS / ctx.workers));
    // Completed jobs are kept here (the default removes them at once): their timestamps are B's queue waits.
    await ctx.stack.reconfigure({ server: { fairShare: 'on' }, worker: { concurrency: perWorker }, jobs: { keepCompletedSeconds: 600 } });
    try {
      const { spillway } = ctx.stack.targets('open');
      const send = (key: string, tag: string) => post(spillway, key, tag);
      let failed = 0;
      const count = (ok: boolean) => {
        if (!ok) failed++;
      };

      const aloneSince = Date.now();
      (await Promise.all(Array.from({ length: LIGHT }, () => send(TENANT_B_KEY, 'b-alone')))).forEach(count);
      const alone = await waits(ctx.stack.queue, 'tenant-b', aloneSince);

      const total = async () => Object.values(await ctx.stack.queue.getJobCounts('prioritized', 'waiting', 'active', 'completed')).reduce((sum, n) => sum + n, 0);
      // Jobs kept from before the flood (B's alone, earlier runs'): not part of it.
      const before = await total();
      const floodSince = Date.now();
      const flood = Array.from({ length: FLOOD }, () => send(TENANT_A_KEY, 'a-flood').then(count));
      // B arrives once 90 % of A's flood has been added (completed jobs are kept, so a job that already ran counts): the
      // workers drain while the ingress adds, so what is still waiting then is the backlog B's requests meet.
      let backlog = 0;
      for (let i = 0; i < 600; i++) {
        const added = (await total()) - before;
        const counts = await ctx.stack.queue.getJobCounts('prioritized', 'waiting');
        backlog = (counts.prioritized ?? 0) + (counts.waiting ?? 0);
        if (added >= FLOOD * 0.9) break;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      const light = Array.from({ length: LIGHT }, () => send(TENANT_B_KEY, 'b-flood').then(count));
      await Promise.all([...flood, ...light]);
      const during = await waits(ctx.stack.queue, 'tenant-b', floodSince);
      return {
        metrics: {
          b_wait_alone_p50: alone.p50,
          b_wait_flood_p50: during.p50,
          b_wait_ratio_pct: (100 * during.p50) / Math.max(1, alone.p50),
          a_before_last_b: await finishedBeforeLast(ctx.stack.queue, 'tenant-a', 'tenant-b', floodSince),
          a_backlog_when_b_sent: backlog,
          failed,
        },
        details: { alone, during },
      };
    } finally {
      await ctx.stack.reconfigure({});
    }
  },
};

async function post(target: Target, key: string, tag: string): Promise<boolean> {
  const response = await fetch(target.origin + CHAT_PATH, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'x-mock-latency-ms': String(LATENCY_MS), 'x-mock-tag': tag },
    body: JSON.stringify({ model: target.model, messages: [{ role: 'user', content: 'hi' }] }),
    signal: AbortSignal.timeout(120_000),
  }).catch(() => undefined);
  if (response === undefined) return false;
  await response.arrayBuffer();
  return response.ok;
}

/**
 * How many of `flooder`'s jobs a worker finished before it finished `light`'s last one, from BullMQ's timestamps (the
 * order the clients read their answers in also counts their own HTTP connections, not the queue's order).
 */
async function finishedBeforeLast(queue: Queue, flooder: string, light: string, sinceMs: number): Promise<number> {
  const jobs = (await queue.getJobs(['completed'], 0, 4_999, false)).filter((job) => job.timestamp >= sinceMs && job.finishedOn !== undefined);
  const tenantOf = (job: (typeof jobs)[number]) => (job.data as { tenant?: string }).tenant;
  const lastLight = Math.max(...jobs.filter((job) => tenantOf(job) === light).map((job) => job.finishedOn!));
  return jobs.filter((job) => tenantOf(job) === flooder && job.finishedOn! < lastLight).length;
}

/** Queue waits (added → taken) of one tenant's completed jobs added since `sinceMs`, from BullMQ's timestamps. */
async function waits(queue: Queue, tenant: string, sinceMs: number) {
  const jobs = await queue.getJobs(['completed'], 0, 4_999, false);
  const values = jobs
    .filter((job) => job.timestamp >= sinceMs && job.processedOn !== undefined && (job.data as { tenant?: string }).tenant === tenant)
    .map((job) => job.processedOn! - job.timestamp);
  return summarize(values);
}
