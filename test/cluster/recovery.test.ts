// Recovery on a real Redis Cluster (3 masters + 3 replicas), Spillway in split mode with 6 queue shards: a waiting job
// removed when its client leaves, a SIGKILLed worker's job taken over by the other worker, and a master killed during
// load, after which requests succeed again without restarting Spillway (the replica took over its slots).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import OpenAI from 'openai';
import type { Job, Queue } from 'bullmq';
import { startRedisCluster, type RedisCluster } from '../support/redis-cluster.ts';
import { startSpillwayOnCluster, type SpillwayOnCluster } from '../support/spillway-on-redis-cluster.ts';
import { TENANT_KEY } from '../support/spillway-cluster.ts';
import { waitFor } from '../support/wait.ts';

const SHARDS = 6;
let cluster: RedisCluster;
let spillway: SpillwayOnCluster;
let client: OpenAI;

beforeAll(async () => {
  cluster = await startRedisCluster({ nodeTimeoutMs: 2_000 });
  spillway = await startSpillwayOnCluster({
    cluster,
    shards: SHARDS,
    workers: 2,
    config: {
      // One slot per shard per worker process (concurrency is split over the shards); short locks so that a dead
      // worker's job is taken over in seconds; short deadlines so that nothing a failover loses waits minutes.
      worker: { concurrency: 1, lockDurationMs: 1_500, stalledIntervalMs: 500 },
      server: { maxQueueWaitMs: 10_000, requestTimeoutMs: 10_000 },
    },
  });
  client = new OpenAI({ baseURL: `${spillway.baseUrl}/v1`, apiKey: TENANT_KEY, maxRetries: 0, timeout: 30_000 });
}, 90_000);

afterAll(async () => {
  await spillway?.close();
  await cluster?.close();
});

const chat = (tag: string, headers: Record<string, string> = {}, signal?: AbortSignal) =>
  client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: tag }] }, { headers: { 'x-mock-tag': tag, ...headers }, ...(signal ? { signal } : {}) });

/** A job of any shard in one of these states, found by its x-mock-tag, with its shard's queue. */
async function findJob(tag: string, state: 'active' | 'waiting'): Promise<{ job: Job; queue: Queue } | undefined> {
  for (const queue of spillway.queues) {
    const jobs = state === 'active' ? await queue.getActive() : await queue.getWaiting();
    const job = jobs.find((j) => (j.data as { headers?: Record<string, string> }).headers?.['x-mock-tag'] === tag && (state === 'waiting' || j.processedBy));
    if (job) return { job, queue };
  }
  return undefined;
}

describe('recovery on a Redis Cluster', () => {
  it('removes a waiting job (from its shard) when its client disconnects, and the upstream never sees it', async () => {
    // 2 worker slots per shard (1 per worker process): slow calls until every shard's slots are taken. Jobs land in
    // the shard their id hashes to, so waves of 12 are sent until none is left with a free slot.
    const busy: Promise<unknown>[] = [];
    const counts = () => Promise.all(spillway.queues.map(async (q) => ({ active: await q.getActiveCount(), waiting: await q.getWaitingCount() })));
    while ((await counts()).some((c) => c.active < 2)) {
      busy.push(...Array.from({ length: 12 }, () => chat('busy', { 'x-mock-latency-ms': '3000' })));
      // Every call so far is in Redis (running, waiting in its shard, or done) before the shards are looked at again.
      await waitFor(async () => {
        const inRedis = (await counts()).reduce((sum, c) => sum + c.active + c.waiting, 0);
        return inRedis + (spillway.mock.stats().byTag.busy?.completed ?? 0) >= busy.length;
      }, { what: 'the busy calls to be enqueued' });
    }
    const controller = new AbortController();
    const waiting = chat('waiting', {}, controller.signal).catch((e: unknown) => e);
    const { job, queue } = await waitFor(() => findJob('waiting', 'waiting'), { what: 'the waiting job' });
    controller.abort();
    expect(await waiting).toBeInstanceOf(OpenAI.APIUserAbortError);
    await waitFor(async () => (await queue.getJob(job.id!)) === undefined, { what: 'the waiting job to be removed' });
    await Promise.all(busy);
    await chat('after-waiting');
    expect(spillway.mock.stats().byTag.waiting).toBeUndefined();
  });

  it('answers a JSON request through the surviving worker when the worker holding it is SIGKILLed', async () => {
    const answer = chat('crash-json', { 'x-mock-latency-ms': '1000', 'x-mock-chunks': '3' });
    await waitFor(() => spillway.mock.stats().byTag['crash-json']?.received === 1, { what: 'the first upstream call' });
    const { job } = await waitFor(() => findJob('crash-json', 'active'), { what: 'the active job' });
    const pid = Number(String(job.processedBy).split('-').at(-2));
    const holder = spillway.workers.find((w) => w.child.pid === pid);
    expect(holder, `a worker with pid ${pid} holds the job`).toBeDefined();
    await holder!.kill('SIGKILL');

    const completion = await answer;
    expect(completion.choices[0]?.message.content).toBe('tok1 tok2 tok3');
    expect(spillway.mock.stats().byTag['crash-json']).toMatchObject({ received: 2, completed: 1 });
    // Two workers again for what follows.
    spillway.workers.splice(spillway.workers.indexOf(holder!), 1);
    await spillway.addWorker();
  });

  it('keeps serving through the failover of a master during load: requests succeed again without restarting Spillway', async () => {
    // The master of the ingress's reply channel: its replies, and 2 queue shards, move to the replica.
    const channel = spillway.keys.replyChannel(ingressInstanceId());
    const victim = await cluster.masterOf(channel);
    await throughFailover(async () => {
      const promoted = await cluster.killMaster(victim);
      expect(await cluster.masterOf(channel)).toBe(promoted);
    });
    // The killed node comes back as a replica of the new master: a full cluster for what follows.
    await cluster.restartNode(victim);
  });

  it('keeps serving through a manual failover (CLUSTER FAILOVER), which drops the sharded subscription on the old master', async () => {
    const channel = spillway.keys.replyChannel(ingressInstanceId());
    const master = await cluster.masterOf(channel);
    await throughFailover(async () => {
      const promoted = await cluster.failover(master);
      expect(await cluster.masterOf(channel)).toBe(promoted);
    });
  });
});

/** The instance id of the ingress, from its start-up log line. */
function ingressInstanceId(): string {
  const match = /"instanceId":"([^"]+)"/.exec(spillway.ingress.output());
  if (match === null) throw new Error(`no instanceId in the ingress log:\n${spillway.ingress.output()}`);
  return match[1]!;
}

/**
 * Runs `failover` under a steady load of 8 clients, then waits for 40 answers in a row. Every request caught by the
 * failover must have been answered, or refused with an OpenAI 503, never left to its deadline; every Spillway process
 * is still the one started before.
 */
async function throughFailover(failover: () => Promise<void>): Promise<void> {
  const outcomes: Array<'ok' | number | 'error'> = [];
  let stop = false;
  const load = Array.from({ length: 8 }, async (_, i) => {
    for (let n = 0; !stop; n++) {
      try {
        const completion = await chat(`load-${i}-${n}`, { 'x-mock-latency-ms': '20' });
        outcomes.push(completion.choices[0]?.message.content ? 'ok' : 'error');
      } catch (err) {
        outcomes.push(err instanceof OpenAI.APIError && err.status !== undefined ? err.status : 'error');
      }
    }
  });
  try {
    const before = outcomes.length;
    await waitFor(() => outcomes.length - before >= 20, { what: 'load before the failover' });
    await failover();
    const after = outcomes.length;
    const okInARow = () => {
      let run = 0;
      for (let i = outcomes.length - 1; i >= after && outcomes[i] === 'ok'; i--) run++;
      return run;
    };
    await waitFor(() => okInARow() >= 40, { timeoutMs: 45_000, what: '40 successful requests in a row after the failover' });
  } finally {
    stop = true;
    await Promise.all(load);
  }
  // Answered, or refused at once with the OpenAI 503 of an unavailable queue; none left to its deadline (504).
  expect(outcomes.filter((o) => o !== 'ok' && o !== 503)).toEqual([]);
  for (const p of [spillway.ingress, ...spillway.workers]) expect(p.child.exitCode).toBeNull();
  expect((await fetch(`${spillway.baseUrl}/ready`)).status).toBe(200);
}
