// The worker role in-process against real Redis and the mock upstream (test/integration/worker-harness.ts): jobs are
// enqueued directly and its replies read from the reply channel. Each test has its own prefix, worker and mock.
import { randomUUID } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, inject, it } from 'vitest';
import { JOB_SCHEMA_VERSION, type CompletionJob } from '../../src/queue/jobs.ts';
import { startMockUpstream, type MockUpstream } from '../../src/mock-upstream/index.ts';
import { waitFor } from '../support/wait.ts';
import { startWorkerHarness, type ChunkReply, type DoneReply, type ErrorReply, type WorkerHarness } from './worker-harness.ts';

let mock: MockUpstream;
let h: WorkerHarness;

beforeEach(async () => {
  mock = await startMockUpstream();
  h = await startWorkerHarness(inject('redisUrl'), mock.url);
});

afterEach(async () => {
  await h.close();
  await mock.close();
});

const chatJob = (overrides: Partial<CompletionJob> = {}) => h.chatJob(overrides);
const enqueue = (job: CompletionJob) => h.enqueue(job);
const finalReplies = (jobId: string) => h.finalReplies(jobId);
const finishedJob = (jobId: string) => h.finishedJob(jobId);

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
    const malformed = { v: JOB_SCHEMA_VERSION, endpoint: 'chat.completions', replyTo: chatJob().replyTo, body: { model: 'gpt-4o-mini' } };
    await h.queue.queue.add('completion', malformed as unknown as CompletionJob, { jobId, attempts: 3 });
    const job = await finishedJob(jobId);
    expect(job.failedReason).toBe('malformed completion job');
    expect(await job.getState()).toBe('failed');
    // Unrecoverable: no second attempt, despite attempts: 3.
    expect(job.attemptsMade).toBe(1);
    expect(mock.stats().received).toBe(0);
  });

  it('a job of an unknown schema version is refused the same way', async () => {
    const jobId = randomUUID();
    await h.queue.queue.add('completion', { ...chatJob(), v: 99 } as unknown as CompletionJob, { jobId });
    expect((await finishedJob(jobId)).failedReason).toBe('malformed completion job');
    expect(mock.stats().received).toBe(0);
  });
});

describe('cancellation', () => {
  it('a job cancelled while active has its upstream request aborted', async () => {
    const jobId = await enqueue(chatJob({ headers: { 'x-mock-latency-ms': '20000', 'x-mock-tag': 'slow' } }));
    await waitFor(() => mock.stats().byTag.slow?.received === 1, { what: 'the upstream call to start' });
    // The worker holds the job's lock, so it cannot be removed: the cancel goes out as a broadcast.
    expect(await h.queue.cancel(jobId)).toBe('signalled');
    await waitFor(() => mock.stats().aborted === 1, { what: 'the upstream request to be aborted' });
    expect(mock.stats().byTag.slow).toMatchObject({ received: 1, completed: 0, aborted: 1 });
    expect((await finishedJob(jobId)).returnvalue).toMatchObject({ kind: 'error', error: { code: 'client_closed_request' } });
  });

  it('a waiting job is removed by cancel and never reaches the upstream', async () => {
    // A delayed job is not yet takeable by the worker, so remove() is the path taken.
    const jobId = randomUUID();
    await h.queue.enqueue(jobId, chatJob({ headers: { 'x-mock-tag': 'waiting' } }), { delayMs: 60_000 });
    expect(await h.queue.cancel(jobId)).toBe('removed');
    expect(await h.queue.queue.getJob(jobId)).toBeUndefined();
    expect(mock.stats().received).toBe(0);
  });
});

describe('answers', () => {
  it('a JSON job is answered with one done message carrying the upstream body', async () => {
    const jobId = await enqueue(chatJob({ headers: { 'x-mock-chunks': '3' } }));
    const messages = await finalReplies(jobId);
    expect(messages.map((m) => m.k)).toEqual(['done']);
    const done = messages[0] as DoneReply;
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

    const chunks = messages.filter((m): m is ChunkReply => m.k === 'chunk');
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
    const error = messages[0] as ErrorReply;
    expect(error.k).toBe('error');
    expect(error.status).toBe(503);
    expect(error.headers['retry-after']).toMatch(/^[1-9]\d*$/);
    expect(error.error).toMatchObject({ type: 'server_error', code: 'upstream_overloaded' });
    // worker.maxAttempts (3 by default) calls, then it gives up.
    expect(mock.stats().byTag.limited?.received).toBe(3);
  });

  it('an upstream 503 with Retry-After ends in a 503 carrying that Retry-After, never a 502', async () => {
    // Retry-After 7 s is past the 5 s deadline: the worker gives up at once and passes the hint on.
    const headers = { 'x-mock-tag': 'overloaded', 'x-mock-status': '503', 'x-mock-retry-after': '7' };
    const jobId = await enqueue(chatJob({ headers, deadline: Date.now() + 5_000 }));
    const messages = await finalReplies(jobId);
    expect(messages).toHaveLength(1);
    const error = messages[0] as ErrorReply;
    expect(error).toMatchObject({ k: 'error', status: 503, headers: { 'retry-after': '7' } });
    expect(error.error).toMatchObject({ type: 'server_error', code: 'upstream_overloaded' });
    expect(mock.stats().byTag.overloaded?.received).toBe(1);
  });

  it('an upstream 503 without Retry-After, after retries, is still a 503 with a Retry-After', async () => {
    const jobId = await enqueue(chatJob({ headers: { 'x-mock-tag': 'busy', 'x-mock-status': '503' } }));
    const messages = await finalReplies(jobId);
    expect(messages[0]).toMatchObject({ k: 'error', status: 503, headers: { 'retry-after': expect.stringMatching(/^[1-9]\d*$/) } });
    expect(mock.stats().byTag.busy?.received).toBe(3);
  });

  it('a client-caused upstream 400 is not retried and is relayed with its status', async () => {
    const jobId = await enqueue(chatJob({ headers: { 'x-mock-tag': 'bad', 'x-mock-status': '400' } }));
    const messages = await finalReplies(jobId);
    expect(messages[0]).toMatchObject({ k: 'error', status: 400, error: { type: 'invalid_request_error' } });
    expect(mock.stats().byTag.bad?.received).toBe(1);
  });
});
