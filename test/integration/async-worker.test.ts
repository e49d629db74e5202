// The worker's side of async jobs, in-process on real Redis with the mock upstream and a real webhook receiver: a job
// past its deadline expires without an upstream call, an upstream error fails the job with the OpenAI error, and a
// re-run of a job a dead worker had already finished calls nothing and still gets its event out, once.
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { parseConfig } from '../../src/config/load.ts';
import { createMetrics } from '../../src/observability/metrics.ts';
import { newInstanceId } from '../../src/roles/context.ts';
import { startWorker } from '../../src/roles/worker.ts';
import { runShutdown, type ShutdownStep } from '../../src/roles/shutdown.ts';
import { startMockUpstream, type MockUpstream } from '../../src/mock-upstream/index.ts';
import { CompletionQueue } from '../../src/queue/completion-queue.ts';
import { createRedisKeys, type RedisKeys } from '../../src/queue/keys.ts';
import { JobStore } from '../../src/queue/job-store.ts';
import { JOB_SCHEMA_VERSION, type CompletionJob } from '../../src/queue/jobs.ts';
import { TENANT_KEY, testConfig } from '../support/spillway-cluster.ts';
import { uniquePrefix } from '../support/redis.ts';
import { startWebhookReceiver, type WebhookReceiver } from '../support/webhook-receiver.ts';
import { waitFor } from '../support/wait.ts';

let mock: MockUpstream;
let receiver: WebhookReceiver;
let redis: Redis;
let keys: RedisKeys;
let queue: CompletionQueue;
let store: JobStore;
const steps: ShutdownStep[] = [];
const logger = pino({ level: 'silent' });

beforeAll(async () => {
  mock = await startMockUpstream();
  receiver = await startWebhookReceiver();
  const prefix = uniquePrefix('async-worker');
  keys = createRedisKeys(prefix);
  const config = parseConfig(
    testConfig(inject('redisUrl'), prefix, 0, mock.url, {
      tenants: [{ id: 'acme', keys: [`sha256:${createHash('sha256').update(TENANT_KEY).digest('hex')}`], webhook: { secrets: [receiver.secret] } }],
      webhooks: { allowHttp: true, allowHosts: ['127.0.0.1'], maxAttempts: 2, backoff: { initialMs: 100 } },
    }),
  );
  steps.push(...(await startWorker({ config, logger, metrics: createMetrics({ defaultMetrics: false }), instanceId: newInstanceId() })).steps);
  redis = new Redis(inject('redisUrl'), { maxRetriesPerRequest: null });
  queue = new CompletionQueue({ connection: redis, keys, keepCompletedSeconds: 60, keepFailedSeconds: 60 });
  store = new JobStore(redis, keys, { retentionSeconds: 600 });
});

afterAll(async () => {
  await runShutdown(steps, logger);
  await queue.close();
  redis.disconnect();
  await mock.close();
  await receiver.close();
});

/** Records and enqueues an async job as the ingress does; `deadline` in ms from now. */
async function submit(tag: string, options: { deadlineInMs?: number; headers?: Record<string, string> } = {}): Promise<string> {
  const id = `job_${randomBytes(16).toString('hex')}`;
  const now = Date.now();
  const deadline = now + (options.deadlineInMs ?? 60_000);
  await store.create({ id, tenant: 'acme', endpoint: 'chat.completions', model: 'gpt-4o-mini', requestId: randomUUID(), bodyHash: 'h', createdAt: now, deadline, webhook: { url: receiver.url } });
  const job: CompletionJob = {
    v: JOB_SCHEMA_VERSION,
    endpoint: 'chat.completions',
    requestId: randomUUID(),
    tenant: 'acme',
    model: 'gpt-4o-mini',
    body: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] },
    stream: false,
    replyTo: null,
    headers: { 'x-mock-tag': tag, ...options.headers },
    enqueuedAt: now,
    deadline,
    chargeAtRun: true,
  };
  await queue.enqueue(id, job, { priority: 1_500_000 });
  return id;
}

const eventsFor = (id: string) => receiver.received.filter((r) => r.unwrapped?.data.id === id);

describe('async jobs in the worker', () => {
  it('expires a job taken after its deadline without calling upstream, and sends job.expired', async () => {
    const id = await submit('expired', { deadlineInMs: -1 });
    await waitFor(async () => (await store.get('acme', id))?.status === 'expired', { what: 'the job to expire' });
    expect(await store.get('acme', id)).toMatchObject({ status: 'expired', error: { code: 'job_expired', type: 'timeout_error' } });
    await waitFor(() => eventsFor(id).length === 1, { what: 'the job.expired event' });
    expect(eventsFor(id)[0]!.unwrapped).toMatchObject({ type: 'job.expired', data: { status: 'expired' } });
    expect(mock.stats().byTag.expired).toBeUndefined();
  });

  it('fails a job the upstream refuses, keeping the OpenAI error, and sends job.failed', async () => {
    const id = await submit('refused', { headers: { 'x-mock-status': '400' } });
    await waitFor(async () => (await store.get('acme', id))?.status === 'failed', { what: 'the job to fail' });
    const record = (await store.get('acme', id))!;
    expect(record.statusCode).toBe(400);
    expect(record.error).toMatchObject({ type: 'invalid_request_error' });
    expect(record.result).toBeUndefined();
    await waitFor(() => eventsFor(id).length === 1, { what: 'the job.failed event' });
    expect(eventsFor(id)[0]!.unwrapped).toMatchObject({ type: 'job.failed', data: { status: 'failed', job: { error: record.error } } });
  });

  it('does not run again a job that a dead worker had already finished, and still gets its event out once', async () => {
    // As if a worker had recorded the result and died before enqueuing the event and completing the BullMQ job.
    const id = `job_${randomBytes(16).toString('hex')}`;
    const now = Date.now();
    await store.create({ id, tenant: 'acme', endpoint: 'chat.completions', model: 'gpt-4o-mini', requestId: 'r', bodyHash: 'h', createdAt: now, deadline: now + 60_000, webhook: { url: receiver.url } });
    await store.markRunning('acme', id);
    await store.finish('acme', id, 'succeeded', { statusCode: 200, result: '{"object":"chat.completion","choices":[]}' });
    await queue.enqueue(id, {
      v: JOB_SCHEMA_VERSION, endpoint: 'chat.completions', requestId: 'r', tenant: 'acme', model: 'gpt-4o-mini',
      body: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] }, stream: false, replyTo: null,
      headers: { 'x-mock-tag': 'rerun' }, enqueuedAt: now, deadline: now + 60_000, chargeAtRun: true,
    }, { priority: 1_500_000 });
    await waitFor(() => eventsFor(id).length === 1, { what: 'the job.succeeded event' });
    expect(eventsFor(id)[0]!.unwrapped).toMatchObject({ type: 'job.succeeded', data: { job: { result: { object: 'chat.completion' } } } });
    await waitFor(async () => (await store.get('acme', id))?.webhookState === 'delivered', { what: 'the delivery to be recorded' });
    expect(mock.stats().byTag.rerun).toBeUndefined();
    expect((await store.get('acme', id))!.attempts).toBe(1);
  });
});
