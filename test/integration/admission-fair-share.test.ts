// Fair share on a real BullMQ Queue + Worker (concurrency 1) on real Redis: priorities from admitRequest keep a
// flooding tenant from pushing another tenant's few jobs behind its own, honour weights, and order classes first.
import { afterEach, beforeEach, describe, expect, inject, it } from 'vitest';
import { Redis } from 'ioredis';
import { Queue, Worker } from 'bullmq';
import { admitRequest } from '../../src/admission/admit.ts';
import { fairShareUnitMs } from '../../src/admission/fair-share.ts';
import type { TenantLimits } from '../../src/admission/limits.ts';
import type { PriorityClass } from '../../src/config/schema.ts';
import { createRedisKeys, type RedisKeys } from '../../src/queue/keys.ts';
import { uniquePrefix } from '../support/redis.ts';
import { waitFor } from '../support/wait.ts';

const QUEUE = 'fairness';
let keys: RedisKeys;
let admission: Redis;
let queueConnection: Redis;
let workerConnection: Redis;
let queue: Queue<{ tenant: string }>;

beforeEach(() => {
  const url = inject('redisUrl');
  keys = createRedisKeys(uniquePrefix('fair'));
  admission = new Redis(url);
  queueConnection = new Redis(url, { maxRetriesPerRequest: null });
  workerConnection = new Redis(url, { maxRetriesPerRequest: null });
  queue = new Queue(QUEUE, { connection: queueConnection, prefix: keys.bullPrefix });
});

afterEach(async () => {
  await queue.obliterate({ force: true });
  await queue.close();
  admission.disconnect();
  queueConnection.disconnect();
  workerConnection.disconnect();
});

function tenant(tenantId: string, priority: PriorityClass = 'normal', weight = 1): TenantLimits {
  return { tenantId, rpm: undefined, burst: 1, tpm: undefined, tokenBurst: 1, maxConcurrent: undefined, maxQueueWaitMs: 60_000, priority, weight, estimatedCompletionTokens: 0 };
}

// The unit as the ingress derives it from the measured drain rate: the worker is stopped while the jobs are enqueued,
// so take it as draining 1 job a second (any faster enqueueing is a flood), not as whatever this machine's speed is.
const fairShare = { unitMs: fairShareUnitMs(1) };

/** Admits and enqueues `count` jobs of a tenant the way the ingress will: admission's priority on each job. */
async function enqueue(limits: TenantLimits, count: number): Promise<void> {
  for (let i = 0; i < count; i++) {
    const admitted = await admitRequest(admission, keys, limits, { tokens: 0, maxQueueWaitMs: 60_000, fairShare });
    if (admitted.decision !== 'now') throw new Error(`unexpected ${admitted.decision}`);
    await queue.add('job', { tenant: limits.tenantId }, { priority: admitted.priority, removeOnComplete: true });
  }
}

/** Runs every queued job through one worker of concurrency 1 and returns the tenants in processing order. */
async function processAll(total: number): Promise<string[]> {
  const order: string[] = [];
  const worker = new Worker<{ tenant: string }>(QUEUE, async (job) => void order.push(job.data.tenant), {
    connection: workerConnection,
    prefix: keys.bullPrefix,
    concurrency: 1,
    autorun: false,
  });
  void worker.run();
  try {
    await waitFor(() => order.length === total, { timeoutMs: 20_000, what: `${total} jobs processed` });
  } finally {
    await worker.close();
  }
  return order;
}

const positions = (order: string[], tenantId: string) => order.flatMap((t, i) => (t === tenantId ? [i] : []));

describe('fair share through BullMQ priorities', () => {
  it("a tenant that floods 200 jobs does not push another tenant's 10 jobs behind its own", async () => {
    await enqueue(tenant('flood'), 200);
    await enqueue(tenant('light'), 10);
    const order = await processAll(210);
    const light = positions(order, 'light');
    const flood = positions(order, 'flood');
    // Round robin from the start: the light tenant's k-th job runs next to the flood's k-th (ties go to the older).
    expect(Math.max(...light)).toBeLessThan(25);
    expect(flood.filter((p) => p > Math.max(...light)).length).toBeGreaterThanOrEqual(200 - 12);
  });

  it('a tenant of weight 3 gets about three jobs for every one of a weight-1 tenant while both have work', async () => {
    await enqueue(tenant('one'), 60);
    await enqueue(tenant('three', 'normal', 3), 60);
    const order = await processAll(120);
    const first40 = order.slice(0, 40);
    const heavy = first40.filter((t) => t === 'three').length;
    expect(heavy).toBeGreaterThanOrEqual(28);
    expect(heavy).toBeLessThanOrEqual(31);
  });

  it('every high job runs before every normal one, and every normal before every batch, whatever came first', async () => {
    await enqueue(tenant('bulk', 'batch'), 5);
    await enqueue(tenant('regular'), 50);
    await enqueue(tenant('urgent', 'high'), 5);
    const order = await processAll(60);
    expect(order.slice(0, 5)).toEqual(Array(5).fill('urgent'));
    expect(order.slice(5, 55)).toEqual(Array(50).fill('regular'));
    expect(order.slice(55)).toEqual(Array(5).fill('bulk'));
  });
});
