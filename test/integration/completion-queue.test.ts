// The producer side against real Redis, on the ingress's fail-fast connection with a command timeout: cancel removes a
// waiting job quietly and broadcasts one Redis does not hold (a worker may still run it), and discard makes sure a job
// whose enqueue reported an error does not run for nobody once Redis answers again.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { Redis } from 'ioredis';
import { createFailFastConnection, waitForRedis } from '../../src/roles/redis.ts';
import { CompletionQueue } from '../../src/queue/completion-queue.ts';
import { createRedisKeys, type RedisKeys } from '../../src/queue/keys.ts';
import { JOB_SCHEMA_VERSION, type CompletionJob } from '../../src/queue/jobs.ts';
import { startRedisServer, uniquePrefix, type RedisServer } from '../support/redis.ts';
import { waitFor } from '../support/wait.ts';

function job(): CompletionJob {
  const now = Date.now();
  return {
    v: JOB_SCHEMA_VERSION,
    endpoint: 'chat.completions',
    requestId: randomUUID(),
    tenant: 'acme',
    model: 'gpt-4o-mini',
    body: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] },
    stream: false,
    replyTo: 'some-ingress',
    headers: {},
    enqueuedAt: now,
    deadline: now + 30_000,
  };
}

interface Producer {
  keys: RedisKeys;
  connection: Redis;
  queue: CompletionQueue;
  /** Job ids broadcast on the cancel channel. */
  broadcasts: string[];
  close(): Promise<void>;
}

async function producer(redisUrl: string, commandTimeoutMs: number): Promise<Producer> {
  const keys = createRedisKeys(uniquePrefix('producer'));
  const connection = createFailFastConnection(redisUrl, 'test-producer', { commandTimeoutMs });
  connection.on('error', () => undefined);
  const listener = new Redis(redisUrl);
  listener.on('error', () => undefined);
  const broadcasts: string[] = [];
  listener.on('message', (_channel: string, jobId: string) => broadcasts.push(jobId));
  await Promise.all([waitForRedis(connection, 10_000), listener.subscribe(keys.cancelChannel)]);
  const queue = new CompletionQueue({ connection, keys, keepCompletedSeconds: 60, keepFailedSeconds: 60 });
  return {
    keys,
    connection,
    queue,
    broadcasts,
    close: async () => {
      await queue.close();
      connection.disconnect();
      listener.disconnect();
    },
  };
}

describe('cancel', () => {
  let p: Producer;
  beforeAll(async () => {
    p = await producer(inject('redisUrl'), 2_000);
  });
  afterAll(async () => {
    await p?.close();
  });

  it('removes a waiting job without bothering the workers', async () => {
    const jobId = randomUUID();
    await p.queue.enqueue(jobId, job(), { delayMs: 60_000 });
    expect(await p.queue.cancel(jobId)).toBe('removed');
    expect(await p.queue.queue.getJob(jobId)).toBeUndefined();
    // The broadcast of another job, sent after: once it arrived, an earlier one would have too.
    const later = randomUUID();
    expect(await p.queue.cancel(later)).toBe('signalled');
    await waitFor(() => p.broadcasts.includes(later), { what: 'a later broadcast' });
    expect(p.broadcasts).not.toContain(jobId);
  });

  it('broadcasts a job Redis does not hold: a worker may still be running it, or it may land later', async () => {
    const jobId = randomUUID();
    expect(await p.queue.cancel(jobId)).toBe('signalled');
    await waitFor(() => p.broadcasts.includes(jobId), { what: 'the broadcast' });
  });
});

describe('discard', () => {
  let redis: RedisServer;
  let p: Producer;
  beforeAll(async () => {
    redis = await startRedisServer();
    p = await producer(redis.url, 200);
  });
  afterAll(async () => {
    redis?.resume();
    await p?.close();
    await redis?.close();
  });

  it('removes a job whose enqueue timed out but which Redis wrote once it answered again', async () => {
    const jobId = randomUUID();
    redis.pause();
    let discarded: Promise<string>;
    try {
      await expect(p.queue.enqueue(jobId, job())).rejects.toThrow(/timed out/i);
      discarded = p.queue.discard(jobId, Date.now() + 20_000);
    } finally {
      redis.resume();
    }
    // 'removed' says the job existed when the discard ran: the add was written after all.
    expect(await discarded).toBe('removed');
    expect(await p.queue.queue.getJob(jobId)).toBeUndefined();
  });

  it('gives up at its deadline while Redis does not answer, and never rejects', async () => {
    redis.pause();
    try {
      expect(await p.queue.discard(randomUUID(), Date.now() + 500)).toBe('gave_up');
    } finally {
      redis.resume();
    }
  });
});
