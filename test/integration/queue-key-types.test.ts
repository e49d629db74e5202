// What kind of Redis value each queue-depth key of keys.ts holds, against real BullMQ: KEDA's redis scaler reads
// lists only (LLEN), so deploy/k8s may point it at `wait` and `active` but not at the prioritized or delayed sets.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { Redis } from 'ioredis';
import { Worker } from 'bullmq';
import { CompletionQueue } from '../../src/queue/completion-queue.ts';
import { createRedisKeys, QUEUE_NAMES } from '../../src/queue/keys.ts';
import { JOB_SCHEMA_VERSION, type CompletionJob } from '../../src/queue/jobs.ts';
import { uniquePrefix } from '../support/redis.ts';

function job(): CompletionJob {
  const now = Date.now();
  return {
    v: JOB_SCHEMA_VERSION,
    endpoint: 'chat.completions',
    requestId: randomUUID(),
    tenant: 't',
    model: 'm',
    body: { model: 'm', messages: [{ role: 'user', content: 'x' }] },
    stream: false,
    replyTo: 'nobody',
    headers: {},
    enqueuedAt: now,
    deadline: now + 60_000,
  };
}

describe('BullMQ keys read by the autoscaler', () => {
  const keys = createRedisKeys(uniquePrefix('keytypes'));
  let redis: Redis;
  let queue: CompletionQueue;
  let worker: Worker;

  beforeAll(async () => {
    redis = new Redis(inject('redisUrl'), { maxRetriesPerRequest: null });
    queue = new CompletionQueue({ connection: redis, keys, keepCompletedSeconds: 60, keepFailedSeconds: 60 });
    worker = new Worker(QUEUE_NAMES.completions, null, { connection: redis, prefix: keys.bullPrefix, autorun: false });
    // One job of each state: two waiting (one is taken, so it becomes active), one prioritized, one delayed.
    await queue.enqueue(randomUUID(), job());
    await queue.enqueue(randomUUID(), job());
    await queue.enqueue(randomUUID(), job(), { priority: 5 });
    await queue.enqueue(randomUUID(), job(), { delayMs: 60_000 });
    expect(await worker.getNextJob('token')).toBeDefined();
  });

  afterAll(async () => {
    await worker?.close();
    await queue?.queue.obliterate({ force: true });
    await queue?.close();
    redis?.disconnect();
  });

  it('wait and active are lists; prioritized and delayed are sorted sets', async () => {
    const depth = keys.queueDepthKeys(QUEUE_NAMES.completions);
    expect({
      wait: await redis.type(depth.wait),
      active: await redis.type(depth.active),
      prioritized: await redis.type(depth.prioritized),
      delayed: await redis.type(depth.delayed),
    }).toEqual({ wait: 'list', active: 'list', prioritized: 'zset', delayed: 'zset' });
  });
});
