// Admission of async jobs on real Redis: the same tenant budgets, but in their own (batch) class and on their own
// fair-share clock, reserving nothing at submission; the worker charges the budgets when a job runs and holds only
// the async share of maxConcurrent. A batch of async work never crowds out the tenant's synchronous requests.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { AdmissionGate } from '../../src/admission/gate.ts';
import { CLASS_SPAN, classBasePriority, DEFAULT_FAIR_SHARE_UNIT_MS } from '../../src/admission/fair-share.ts';
import { parseConfig } from '../../src/config/load.ts';
import type { Config, ConfigInput } from '../../src/config/schema.ts';
import { createRedisKeys, type RedisKeys } from '../../src/queue/keys.ts';
import { JobStore } from '../../src/queue/job-store.ts';
import { JOB_SCHEMA_VERSION, type CompletionJob } from '../../src/queue/jobs.ts';
import { WebhookQueue } from '../../src/webhooks/webhook-queue.ts';
import { AsyncJobs } from '../../src/worker/async-jobs.ts';
import { uniquePrefix } from '../support/redis.ts';

const logger = pino({ level: 'silent' });
const body = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] };
const ASYNC = { priorityClass: 'batch', maxQueueWaitMs: 6 * 3_600_000, chargeAtRun: true } as const;

let redis: Redis;
let keys: RedisKeys;
let config: Config;
let gate: AdmissionGate;
let webhooks: WebhookQueue;
let asyncJobs: AsyncJobs;

beforeAll(() => {
  redis = new Redis(inject('redisUrl'), { maxRetriesPerRequest: null });
  keys = createRedisKeys(uniquePrefix('admit-async'));
  config = parseConfig({
    providers: [{ id: 'mock', type: 'mock' }],
    models: [{ name: 'gpt-4o-mini', route: [{ provider: 'mock', model: 'gpt-4o-mini' }] }],
    tenants: [
      { id: 'acme', keys: ['acme-key-123'], dev: true, rpm: 1, burst: 1, maxConcurrent: 4 },
      { id: 'globex', keys: ['globex-key-123'], dev: true },
    ],
  } as ConfigInput);
  gate = new AdmissionGate({ redis, keys, config, logger });
  webhooks = new WebhookQueue({ connection: redis, keys, maxAttempts: 1, keepSeconds: 60 });
  asyncJobs = new AsyncJobs({ store: new JobStore(redis, keys, { retentionSeconds: 60 }), webhooks, redis, keys, config, logger, leaseTtlMs: 10_000 });
});

afterAll(async () => {
  gate.close();
  await webhooks.close();
  redis.disconnect();
});

const tenant = (id: string) => config.tenants.find((t) => t.id === id)!;

function asyncJob(tenantId: string): CompletionJob {
  const now = Date.now();
  return { v: JOB_SCHEMA_VERSION, endpoint: 'chat.completions', requestId: randomUUID(), tenant: tenantId, model: 'gpt-4o-mini', body, stream: false, replyTo: null, headers: {}, enqueuedAt: now, deadline: now + 60_000, chargeAtRun: true };
}

describe('async admission', () => {
  it('orders every async job after every synchronous one, and a flood of them leaves the tenant\'s sync place alone', async () => {
    const syncBefore = await gate.admit(tenant('globex'), 'chat.completions', body);
    const flood = [];
    for (let i = 0; i < 200; i++) flood.push(await gate.admit(tenant('globex'), 'chat.completions', body, ASYNC));
    const syncAfter = await gate.admit(tenant('globex'), 'chat.completions', body);
    for (const admitted of flood) {
      expect(admitted.priority).toBeGreaterThan(classBasePriority('batch'));
      expect(admitted.priority).toBeLessThanOrEqual(classBasePriority('batch') + CLASS_SPAN);
    }
    // The async jobs ran ahead on their own clock: their places spread out behind one another.
    expect(flood.at(-1)!.priority!).toBeGreaterThan(flood[0]!.priority!);
    // The sync request after the flood carries only the lead of the tenant's own two sync requests (on a shared clock
    // it would sit 200 units back, behind every other tenant's next 200 requests).
    expect(syncBefore.priority! - classBasePriority('normal')).toBeLessThanOrEqual(DEFAULT_FAIR_SHARE_UNIT_MS);
    expect(syncAfter.priority! - classBasePriority('normal')).toBeLessThanOrEqual(2 * DEFAULT_FAIR_SHARE_UNIT_MS);
    expect(syncAfter.priority!).toBeLessThan(classBasePriority('batch'));
  });

  it('reserves none of the tenant\'s budget at submission: its synchronous request is still admitted now', async () => {
    for (let i = 0; i < 20; i++) expect((await gate.admit(tenant('acme'), 'chat.completions', body, ASYNC)).outcome).toBe('now');
    const sync = await gate.admit(tenant('acme'), 'chat.completions', body);
    expect(sync.outcome).toBe('now');
    expect(sync.headers['x-ratelimit-remaining-requests']).toBe('0');
  });

  it('charges the budget when the job runs, and only if it is free now (no reservation ahead of sync requests)', async () => {
    // acme's one request a minute went to the sync request above: the async job waits, nothing is reserved.
    const refused = await asyncJobs.acquire(asyncJob('acme'), randomUUID());
    expect(refused.granted).toBe(false);
    expect(refused.granted === false && refused.retryInMs).toBeGreaterThan(0);
    const tat = await redis.get(keys.tenantKeys('acme').requests);
    await asyncJobs.acquire(asyncJob('acme'), randomUUID());
    expect(await redis.get(keys.tenantKeys('acme').requests)).toBe(tat);
    // A tenant without budgets runs at once, with no Redis budget state written.
    expect(await asyncJobs.acquire(asyncJob('globex'), randomUUID())).toMatchObject({ granted: true });
  });

  it('holds at most the async share of maxConcurrent, leaving the rest to synchronous requests', async () => {
    const limits = { ...config, tenants: [{ ...tenant('acme'), rpm: undefined, burst: undefined }] } as Config;
    const unpaced = new AsyncJobs({ store: new JobStore(redis, keys, { retentionSeconds: 60 }), webhooks, redis, keys, config: limits, logger, leaseTtlMs: 10_000 });
    const held = [];
    for (let i = 0; i < 2; i++) {
      const slot = await unpaced.acquire(asyncJob('acme'), randomUUID());
      expect(slot.granted).toBe(true);
      held.push(slot);
    }
    expect((await unpaced.acquire(asyncJob('acme'), randomUUID())).granted).toBe(false);
    // The two other slots of maxConcurrent 4 are free for synchronous jobs.
    expect(await redis.zcard(keys.tenantKeys('acme').leases)).toBe(2);
    for (const slot of held) if (slot.granted) await slot.lease?.release();
  });
});
