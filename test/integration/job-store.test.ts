// The async job store on real Redis: creation with Idempotency-Key claims, the status moves that exactly one party
// wins, the delivery log, per-tenant listing, and a TTL on every key it writes.
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { Redis } from 'ioredis';
import { JobStore, type NewJob } from '../../src/queue/job-store.ts';
import { CompletionQueue } from '../../src/queue/completion-queue.ts';
import { JOB_SCHEMA_VERSION, type CompletionJob } from '../../src/queue/jobs.ts';
import { createRedisKeys, type RedisKeys } from '../../src/queue/keys.ts';
import { uniquePrefix } from '../support/redis.ts';

let redis: Redis;
let keys: RedisKeys;
let store: JobStore;

beforeAll(() => {
  redis = new Redis(inject('redisUrl'), { maxRetriesPerRequest: null });
  keys = createRedisKeys(uniquePrefix('jobstore'));
  store = new JobStore(redis, keys, { retentionSeconds: 600, maxDeliveryLog: 3 });
});

afterAll(() => redis.disconnect());

function newJob(tenant = 'acme', createdAt = Date.now(), overrides: Partial<NewJob> = {}): NewJob {
  return {
    id: `job_${randomBytes(16).toString('hex')}`,
    tenant,
    endpoint: 'chat.completions',
    model: 'gpt-4o-mini',
    requestId: 'req',
    bodyHash: 'hash-a',
    createdAt,
    deadline: createdAt + 3_600_000,
    webhook: { url: 'https://hooks.example.com/x', metadata: { a: 1 } },
    ...overrides,
  };
}

async function ttlOf(key: string): Promise<number> {
  return redis.pttl(key);
}

describe('JobStore', () => {
  it('creates a queued record, indexed and with a TTL covering its deadline and the retention', async () => {
    const job = newJob();
    expect(await store.create(job)).toEqual({ created: true });
    expect(await store.get('acme', job.id)).toMatchObject({ id: job.id, status: 'queued', attempts: 0, webhook: job.webhook, createdAt: job.createdAt });
    const ttl = await ttlOf(keys.tenantKeys('acme').job(job.id));
    expect(ttl).toBeGreaterThan(3_600_000);
    expect(ttl).toBeLessThanOrEqual(3_600_000 + 600_000);
    expect(await ttlOf(keys.tenantKeys('acme').jobs)).toBeGreaterThan(0);
  });

  it('gives the earlier job back for a claimed Idempotency-Key, writing nothing', async () => {
    const first = newJob();
    const second = newJob('acme', Date.now(), { bodyHash: 'hash-b' });
    expect(await store.create(first, 'key-1')).toEqual({ created: true });
    expect(await store.create(second, 'key-1')).toEqual({ created: false, jobId: first.id, bodyHash: 'hash-a' });
    expect(await store.get('acme', second.id)).toBeUndefined();
    expect(await ttlOf(keys.tenantKeys('acme').idempotency('key-1'))).toBeGreaterThan(0);
    // Another tenant's identical key is its own.
    expect(await store.create(newJob('globex'), 'key-1')).toEqual({ created: true });
  });

  it('lets exactly one final move win, and never moves a finished job again', async () => {
    const job = newJob();
    await store.create(job);
    expect(await store.markRunning('acme', job.id)).toMatchObject({ changed: true, previous: 'queued' });
    expect(await store.markRunning('acme', job.id)).toMatchObject({ changed: true, previous: 'running' });
    const outcomes = await Promise.all([
      store.finish('acme', job.id, 'succeeded', { statusCode: 200, result: '{"ok":true}', usage: { total_tokens: 2 } }),
      store.finish('acme', job.id, 'cancelled'),
      store.finish('acme', job.id, 'expired'),
    ]);
    expect(outcomes.filter((o) => o.changed)).toHaveLength(1);
    expect(outcomes.every((o) => o.hasWebhook)).toBe(true);
    const record = (await store.get('acme', job.id))!;
    expect(record.attempts).toBe(2);
    expect(record.webhookState).toBe('pending');
    expect(record.finishedAt).toBeDefined();
    expect(await store.markRunning('acme', job.id)).toMatchObject({ changed: false, current: record.status });
    // Finished: it lives for the retention only.
    expect(await ttlOf(keys.tenantKeys('acme').job(job.id))).toBeLessThanOrEqual(600_000);
  });

  it('never brings back an expired record', async () => {
    const id = `job_${randomBytes(16).toString('hex')}`;
    expect(await store.markRunning('acme', id)).toMatchObject({ changed: false, current: undefined });
    await store.setWebhookState('acme', id, 'delivered');
    const recorded = await store.recordDelivery('acme', id, { event_id: 'evt', type: 'job.succeeded', attempt: 1, at: 1, status_code: 200, latency_ms: 1, error: null, outcome: 'delivered' }, 'delivered');
    expect(recorded).toBe(false);
    expect(await redis.exists(keys.tenantKeys('acme').job(id), keys.tenantKeys('acme').jobDeliveries(id))).toBe(0);
  });

  it('keeps a capped delivery log with a TTL, and the webhook state with it', async () => {
    const job = newJob();
    await store.create(job);
    for (let attempt = 1; attempt <= 4; attempt++) {
      await store.recordDelivery('acme', job.id, { event_id: 'evt', type: 'job.succeeded', attempt, at: attempt, status_code: 500, latency_ms: 1, error: 'receiver answered 500', outcome: 'retrying' }, 'pending');
    }
    expect((await store.deliveries('acme', job.id)).map((a) => a.attempt)).toEqual([2, 3, 4]);
    expect(await ttlOf(keys.tenantKeys('acme').jobDeliveries(job.id))).toBeGreaterThan(0);
    expect(await store.get('acme', job.id)).toMatchObject({ webhookState: 'pending', webhookAttempts: 4 });
  });

  it('lists a tenant\'s jobs newest first with a cursor and a status filter, skipping expired records', async () => {
    const tenant = `t-${randomBytes(3).toString('hex')}`;
    const base = Date.now();
    const jobs = Array.from({ length: 5 }, (_, i) => newJob(tenant, base + i));
    for (const job of jobs) await store.create(job);
    await store.finish(tenant, jobs[1]!.id, 'failed');
    await store.finish(tenant, jobs[3]!.id, 'failed');
    await redis.del(keys.tenantKeys(tenant).job(jobs[2]!.id)); // as if it had expired

    const page1 = await store.list(tenant, { limit: 2 });
    expect(page1.records.map((r) => r.id)).toEqual([jobs[4]!.id, jobs[3]!.id]);
    expect(page1.hasMore).toBe(true);
    const page2 = await store.list(tenant, { limit: 2, after: jobs[3]!.id });
    expect(page2.records.map((r) => r.id)).toEqual([jobs[1]!.id, jobs[0]!.id]);
    expect(page2.hasMore).toBe(false);
    expect((await store.list(tenant, { limit: 10, status: 'failed' })).records.map((r) => r.id)).toEqual([jobs[3]!.id, jobs[1]!.id]);
    // The expired job stays in the index (until its horizon): a page that ended on it goes on from there.
    const afterExpired = await store.list(tenant, { limit: 10, after: jobs[2]!.id });
    expect(afterExpired.records.map((r) => r.id)).toEqual([jobs[1]!.id, jobs[0]!.id]);
    expect((await store.list('nobody', { limit: 10 })).records).toEqual([]);
    expect(await store.list(tenant, { limit: 10, after: 'job_unknown' })).toEqual({ records: [], hasMore: false });
  });

  it('undoes a creation whose enqueue failed: record, index entry and key claim', async () => {
    const job = newJob();
    await store.create(job, 'key-discard');
    await store.discard('acme', job.id, 'key-discard');
    expect(await store.get('acme', job.id)).toBeUndefined();
    expect(await redis.exists(keys.tenantKeys('acme').idempotency('key-discard'))).toBe(0);
    expect(await redis.zscore(keys.tenantKeys('acme').jobs, job.id)).toBeNull();
  });

  it('tells a waiting job\'s place in line: behind the plain wait list and the prioritized jobs before it', async () => {
    const queue = new CompletionQueue({ connection: redis, keys, keepCompletedSeconds: 0, keepFailedSeconds: 60 });
    try {
      const now = Date.now();
      const data = (tenant: string): CompletionJob => ({
        v: JOB_SCHEMA_VERSION, endpoint: 'chat.completions', requestId: 'r', tenant, model: 'm', body: {}, stream: false,
        replyTo: null, headers: {}, enqueuedAt: now, deadline: now + 60_000,
      });
      const ids = Array.from({ length: 3 }, () => `job_${randomBytes(16).toString('hex')}`);
      await queue.enqueue(`sync-${randomBytes(4).toString('hex')}`, data('acme')); // no priority: the plain wait list, served first
      await queue.enqueue(ids[0]!, data('acme'), { priority: 1_400_000 });
      await queue.enqueue(ids[1]!, data('acme'), { priority: 1_400_100 });
      await queue.enqueue(ids[2]!, data('acme'), { priority: 1_399_000 });
      expect(await Promise.all(ids.map((id) => store.queuePosition(id)))).toEqual([3, 4, 2]);
      await queue.enqueue('job_delayed', data('acme'), { priority: 1_400_000, delayMs: 60_000 });
      expect(await store.queuePosition('job_delayed')).toBeUndefined();
    } finally {
      await queue.queue.obliterate({ force: true });
      await queue.close();
    }
  });
});
