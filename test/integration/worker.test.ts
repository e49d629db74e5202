// The worker role in-process against real Redis and the mock upstream: jobs are enqueued directly and its replies
// read from the reply channel with a connection of the test's own. Each test has its own prefix, worker and mock.
import { randomUUID } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, inject, it } from 'vitest';
import { Redis } from 'ioredis';
import { parseConfig } from '../../src/config/load.ts';
import { createLogger } from '../../src/observability/logger.ts';
import { createMetrics } from '../../src/observability/metrics.ts';
import { newInstanceId } from '../../src/roles/context.ts';
import { startWorker } from '../../src/roles/worker.ts';
import { runShutdown, type ShutdownStep } from '../../src/roles/shutdown.ts';
import { CompletionQueue } from '../../src/queue/completion-queue.ts';
import { createRedisKeys } from '../../src/queue/keys.ts';
import { decodeReply, type ReplyMessage } from '../../src/queue/replies.ts';
import { JOB_SCHEMA_VERSION, type CompletionJob } from '../../src/queue/jobs.ts';
import { startMockUpstream, type MockUpstream } from '../../src/mock-upstream/index.ts';
import { testConfig } from '../support/spillway-cluster.ts';
import { uniquePrefix } from '../support/redis.ts';
import { waitFor } from '../support/wait.ts';

const logger = createLogger('silent');
let mock: MockUpstream;
let queue: CompletionQueue;
let queueRedis: Redis;
let subscriber: Redis;
let steps: ShutdownStep[];
/** The instance id the test's jobs name as `replyTo`; the test subscribes to its channel. */
let replyTo: string;
let replies: ReplyMessage[];

beforeEach(async () => {
  const redisUrl = inject('redisUrl');
  const prefix = uniquePrefix('worker');
  const keys = createRedisKeys(prefix);
  mock = await startMockUpstream();
  const config = parseConfig(testConfig(redisUrl, prefix, 0, mock.url, { logging: { level: 'silent' } }));
  const worker = await startWorker({ config, logger, metrics: createMetrics({ defaultMetrics: false }), instanceId: newInstanceId() });
  steps = worker.steps;

  queueRedis = new Redis(redisUrl, { maxRetriesPerRequest: null });
  queue = new CompletionQueue({ connection: queueRedis, keys, keepCompletedSeconds: 60, keepFailedSeconds: 60 });
  replyTo = `test-ingress-${randomUUID()}`;
  replies = [];
  subscriber = new Redis(redisUrl);
  subscriber.on('message', (_channel: string, raw: string) => {
    const message = decodeReply(raw);
    if (message === undefined) throw new Error(`undecodable reply: ${raw}`);
    replies.push(message);
  });
  await subscriber.subscribe(keys.replyChannel(replyTo));
});

afterEach(async () => {
  await runShutdown(steps, logger);
  await queue.close();
  queueRedis.disconnect();
  subscriber.disconnect();
  await mock.close();
});

function chatJob(overrides: Partial<CompletionJob> = {}): CompletionJob {
  const now = Date.now();
  return {
    v: JOB_SCHEMA_VERSION,
    endpoint: 'chat.completions',
    requestId: `req-${randomUUID()}`,
    tenant: 'acme',
    model: 'gpt-4o-mini',
    body: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hello' }] },
    stream: false,
    replyTo,
    headers: {},
    enqueuedAt: now,
    deadline: now + 30_000,
    ...overrides,
  };
}

async function enqueue(job: CompletionJob): Promise<string> {
  const jobId = randomUUID();
  await queue.enqueue(jobId, job);
  return jobId;
}

/** The replies of one job, waiting until its final message (done or error) has arrived. */
async function finalReplies(jobId: string): Promise<ReplyMessage[]> {
  await waitFor(() => replies.some((m) => m.j === jobId && (m.k === 'done' || m.k === 'error')), { what: `the final reply of ${jobId}` });
  return replies.filter((m) => m.j === jobId);
}

async function finishedJob(jobId: string) {
  return waitFor(async () => {
    const job = await queue.queue.getJob(jobId);
    return job?.finishedOn !== undefined ? job : undefined;
  }, { what: `job ${jobId} to finish` });
}

describe('jobs that must never reach the upstream', () => {
  it('an expired job is answered with a 504 error reply and never sent upstream', async () => {
    const jobId = await enqueue(chatJob({ deadline: Date.now() - 1_000, headers: { 'x-mock-tag': 'expired' } }));
    const messages = await finalReplies(jobId);
    expect(messages).toHaveLength(1);
    expect(messages[0]).toMatchObject({ k: 'error', status: 504, error: { type: 'timeout_error', code: 'deadline_exceeded' } });
    expect((await finishedJob(jobId)).returnvalue).toMatchObject({ kind: 'error', status: 504 });
    expect(mock.stats().received).toBe(0);
  });

  it('a malformed job fails as unrecoverable without calling upstream', async () => {
    const jobId = randomUUID();
    const malformed = { v: JOB_SCHEMA_VERSION, endpoint: 'chat.completions', replyTo, body: { model: 'gpt-4o-mini' } };
    await queue.queue.add('completion', malformed as unknown as CompletionJob, { jobId, attempts: 3 });
    const job = await finishedJob(jobId);
    expect(job.failedReason).toBe('malformed completion job');
    expect(await job.getState()).toBe('failed');
    // Unrecoverable: no second attempt, despite attempts: 3.
    expect(job.attemptsMade).toBe(1);
    expect(mock.stats().received).toBe(0);
  });

  it('a job of an unknown schema version is refused the same way', async () => {
    const jobId = randomUUID();
    await queue.queue.add('completion', { ...chatJob(), v: 99 } as unknown as CompletionJob, { jobId });
    expect((await finishedJob(jobId)).failedReason).toBe('malformed completion job');
    expect(mock.stats().received).toBe(0);
  });
});

describe('cancellation', () => {
  it('a job cancelled while active has its upstream request aborted', async () => {
    const jobId = await enqueue(chatJob({ headers: { 'x-mock-latency-ms': '20000', 'x-mock-tag': 'slow' } }));
    await waitFor(() => mock.stats().byTag.slow?.received === 1, { what: 'the upstream call to start' });
    // The worker holds the job's lock, so it cannot be removed: the cancel goes out as a broadcast.
    expect(await queue.cancel(jobId)).toBe('signalled');
    await waitFor(() => mock.stats().aborted === 1, { what: 'the upstream request to be aborted' });
    expect(mock.stats().byTag.slow).toMatchObject({ received: 1, completed: 0, aborted: 1 });
    expect((await finishedJob(jobId)).returnvalue).toMatchObject({ kind: 'error', error: { code: 'client_closed_request' } });
  });

  it('a waiting job is removed by cancel and never reaches the upstream', async () => {
    // A delayed job is not yet takeable by the worker, so remove() is the path taken.
    const jobId = randomUUID();
    await queue.enqueue(jobId, chatJob({ headers: { 'x-mock-tag': 'waiting' } }), { delayMs: 60_000 });
    expect(await queue.cancel(jobId)).toBe('removed');
    expect(await queue.queue.getJob(jobId)).toBeUndefined();
    expect(mock.stats().received).toBe(0);
  });
});

describe('answers', () => {
  it('a JSON job is answered with one done message carrying the upstream body', async () => {
    const jobId = await enqueue(chatJob({ headers: { 'x-mock-chunks': '3' } }));
    const messages = await finalReplies(jobId);
    expect(messages.map((m) => m.k)).toEqual(['done']);
    const done = messages[0] as Extract<ReplyMessage, { k: 'done' }>;
    expect(done.result.kind).toBe('body');
    const body = JSON.parse((done.result as { body: string }).body) as { model: string; choices: Array<{ message: { content: string } }> };
    expect(body.choices[0]?.message.content).toBe('tok1 tok2 tok3');
    // The worker sent the route's upstream model name, not the public one.
    expect(body.model).toBe('mock-chat');
  });

  it('a streaming job replies head, then chunks with contiguous seq, then done counting every data item', async () => {
    const jobId = await enqueue(
      chatJob({
        stream: true,
        body: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], stream: true },
        headers: { 'x-mock-chunks': '6', 'x-mock-chunk-delay-ms': '5' },
      }),
    );
    const messages = await finalReplies(jobId);
    const kinds = messages.map((m) => m.k);
    expect(kinds[0]).toBe('head');
    expect(kinds.at(-1)).toBe('done');
    expect(kinds.slice(1, -1).every((k) => k === 'chunk')).toBe(true);
    expect(messages[0]).toMatchObject({ k: 'head', status: 200 });
    expect(new Set(messages.map((m) => m.a)).size).toBe(1);

    const chunks = messages.filter((m): m is Extract<ReplyMessage, { k: 'chunk' }> => m.k === 'chunk');
    let expectedSeq = 0;
    for (const chunk of chunks) {
      expect(chunk.seq).toBe(expectedSeq);
      expectedSeq += chunk.data.length;
    }
    const data = chunks.flatMap((c) => c.data);
    // A role chunk, six words, a finish chunk; [DONE] is the stream's end marker, not a data item.
    expect(data).toHaveLength(8);
    expect(data.map((d) => (JSON.parse(d) as { choices: Array<{ delta: { content?: string } }> }).choices[0]?.delta.content ?? '').join('')).toBe(
      'tok1 tok2 tok3 tok4 tok5 tok6',
    );
    expect(messages.at(-1)).toMatchObject({ k: 'done', result: { kind: 'stream', chunks: data.length } });
  });
});

describe('upstream rate limits', () => {
  it('an upstream 429 with Retry-After is retried and answered 200', async () => {
    const headers = { 'x-mock-fail-times': '1', 'x-mock-tag': 'limited-once', 'x-mock-status': '429', 'x-mock-retry-after': '0' };
    const jobId = await enqueue(chatJob({ headers }));
    const messages = await finalReplies(jobId);
    expect(messages.map((m) => m.k)).toEqual(['done']);
    expect(messages[0]).toMatchObject({ k: 'done', result: { kind: 'body', status: 200 } });
    expect(mock.stats().byTag['limited-once']).toMatchObject({ received: 2, completed: 2 });
  });

  it('an upstream that keeps answering 429 ends in a 503 with retry-after, never a 429', async () => {
    const headers = { 'x-mock-tag': 'limited', 'x-mock-status': '429', 'x-mock-retry-after': '0' };
    const jobId = await enqueue(chatJob({ headers }));
    const messages = await finalReplies(jobId);
    expect(messages).toHaveLength(1);
    const error = messages[0] as Extract<ReplyMessage, { k: 'error' }>;
    expect(error.k).toBe('error');
    expect(error.status).toBe(503);
    expect(error.headers['retry-after']).toMatch(/^[1-9]\d*$/);
    expect(error.error).toMatchObject({ type: 'server_error', code: 'upstream_overloaded' });
    // worker.maxAttempts (3 by default) calls, then it gives up.
    expect(mock.stats().byTag.limited?.received).toBe(3);
  });

  it('a client-caused upstream 400 is not retried and is relayed with its status', async () => {
    const jobId = await enqueue(chatJob({ headers: { 'x-mock-tag': 'bad', 'x-mock-status': '400' } }));
    const messages = await finalReplies(jobId);
    expect(messages[0]).toMatchObject({ k: 'error', status: 400, error: { type: 'invalid_request_error' } });
    expect(mock.stats().byTag.bad?.received).toBe(1);
  });
});
