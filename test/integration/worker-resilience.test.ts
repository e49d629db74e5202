// The worker role in-process against real Redis and the mock upstream, where the reply path breaks: nobody hears a
// stream (its upstream call is aborted), a JSON answer too large for pub/sub (only a pointer is kept), and a job whose
// lock is lost (Redis lost it, or another worker took it over: this worker stops paying for it).
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { Redis } from 'ioredis';
import { parseConfig } from '../../src/config/load.ts';
import { createLogger } from '../../src/observability/logger.ts';
import { createMetrics } from '../../src/observability/metrics.ts';
import { newInstanceId } from '../../src/roles/context.ts';
import { startWorker } from '../../src/roles/worker.ts';
import { runShutdown, type ShutdownStep } from '../../src/roles/shutdown.ts';
import { CompletionQueue } from '../../src/queue/completion-queue.ts';
import { createRedisKeys, type RedisKeys } from '../../src/queue/keys.ts';
import { JOB_SCHEMA_VERSION, type CompletionJob, type JobResult } from '../../src/queue/jobs.ts';
import { startMockUpstream, type MockUpstream } from '../../src/mock-upstream/index.ts';
import { testConfig } from '../support/spillway-cluster.ts';
import { uniquePrefix } from '../support/redis.ts';
import { waitFor } from '../support/wait.ts';

const logger = createLogger('silent');
let mock: MockUpstream;
let keys: RedisKeys;
let queue: CompletionQueue;
let queueRedis: Redis;
let listener: Redis;
let steps: ShutdownStep[];
/** An ingress instance that listens (the test subscribes to its channel) and one that does not exist. */
const listening = `listening-${randomUUID()}`;
const gone = `gone-${randomUUID()}`;

beforeAll(async () => {
  const redisUrl = inject('redisUrl');
  const prefix = uniquePrefix('resilience');
  keys = createRedisKeys(prefix);
  mock = await startMockUpstream();
  const config = parseConfig(testConfig(redisUrl, prefix, 0, mock.url, { logging: { level: 'silent' }, redis: { inlineReplyBytes: 10_000 } }));
  steps = (await startWorker({ config, logger, metrics: createMetrics({ defaultMetrics: false }), instanceId: newInstanceId() })).steps;
  queueRedis = new Redis(redisUrl, { maxRetriesPerRequest: null });
  queue = new CompletionQueue({ connection: queueRedis, keys, keepCompletedSeconds: 60, keepFailedSeconds: 60 });
  listener = new Redis(redisUrl);
  await listener.subscribe(keys.replyChannel(listening));
});

afterAll(async () => {
  await runShutdown(steps, logger);
  await queue?.close();
  queueRedis?.disconnect();
  listener?.disconnect();
  await mock?.close();
});

function job(overrides: Partial<CompletionJob>): CompletionJob {
  const now = Date.now();
  return {
    v: JOB_SCHEMA_VERSION,
    endpoint: 'chat.completions',
    requestId: randomUUID(),
    tenant: 'acme',
    model: 'gpt-4o-mini',
    body: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] },
    stream: false,
    replyTo: listening,
    headers: {},
    enqueuedAt: now,
    deadline: now + 30_000,
    ...overrides,
  };
}

async function enqueue(data: CompletionJob): Promise<string> {
  const jobId = randomUUID();
  await queue.enqueue(jobId, data);
  return jobId;
}

async function returnValue(jobId: string): Promise<JobResult> {
  const finished = await waitFor(async () => {
    const stored = await queue.queue.getJob(jobId);
    return stored?.finishedOn !== undefined ? stored : undefined;
  }, { what: `job ${jobId} to finish` });
  return finished.returnvalue;
}

describe('nobody listening', () => {
  it('a stream whose replies reach no subscriber is aborted upstream and ends as job_lost (503)', async () => {
    const stream = job({
      stream: true,
      replyTo: gone,
      body: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }], stream: true },
      headers: { 'x-mock-tag': 'unheard-stream', 'x-mock-chunks': '100', 'x-mock-chunk-delay-ms': '50' },
    });
    const jobId = await enqueue(stream);
    expect(await returnValue(jobId)).toMatchObject({ kind: 'error', status: 503, error: { type: 'server_error', code: 'job_lost' } });
    await waitFor(() => mock.stats().byTag['unheard-stream']?.aborted === 1, { what: 'the upstream call to be aborted' });
    expect(mock.stats().byTag['unheard-stream']).toMatchObject({ received: 1, completed: 0, aborted: 1 });
  });

  it('a JSON answer whose reply reaches nobody still completes, its result kept for reconciliation', async () => {
    const jobId = await enqueue(job({ replyTo: gone, headers: { 'x-mock-tag': 'unheard-json' } }));
    expect(await returnValue(jobId)).toMatchObject({ kind: 'body', status: 200 });
    expect(mock.stats().byTag['unheard-json']).toMatchObject({ received: 1, completed: 1 });
  });
});

describe('large answers', () => {
  it('a JSON answer over inlineReplyBytes leaves only a pointer as the return value; the key holds the body', async () => {
    const inputs = Array.from({ length: 20 }, (_, i) => `text ${i}`);
    const jobId = await enqueue(
      job({ endpoint: 'embeddings', model: 'text-embedding-3-small', body: { model: 'text-embedding-3-small', input: inputs, dimensions: 512, encoding_format: 'base64' } }),
    );
    const result = await returnValue(jobId);
    expect(result).toMatchObject({ kind: 'stored', status: 200, key: keys.storedReply(jobId) });
    const body = await queueRedis.get(keys.storedReply(jobId));
    expect(body?.length).toBeGreaterThan(10_000);
    expect(result.kind === 'stored' && result.bytes).toBe(Buffer.byteLength(body!));
    expect((JSON.parse(body!) as { data: unknown[] }).data).toHaveLength(20);
  });
});

describe('lost locks', () => {
  it('a job whose lock is lost is aborted upstream instead of running for nobody', async () => {
    const jobId = await enqueue(job({ headers: { 'x-mock-tag': 'lock-lost', 'x-mock-fault': 'hang' } }));
    await waitFor(() => mock.stats().byTag['lock-lost']?.received === 1, { what: 'the upstream call to start' });
    // As after a Redis restart without persistence (the job and its lock are gone), or a takeover after a stall.
    await queueRedis.del(`${queue.queue.toKey(jobId)}:lock`);
    await waitFor(() => mock.stats().byTag['lock-lost']?.aborted === 1, { what: 'the upstream call to be aborted' });
  });
});
