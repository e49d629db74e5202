// The three bounds of an upstream call, through the real worker role, real Redis and the mock upstream:
// timeoutMs bounds only the wait for the response head once the request is on a socket, streamIdleTimeoutMs the
// silence between chunks, the job's deadline the whole call. Each test starts its own worker and mock.
import { afterEach, describe, expect, inject, it } from 'vitest';
import { startMockUpstream, type MockUpstream } from '../../src/mock-upstream/index.ts';
import { waitFor } from '../support/wait.ts';
import { chunkData, startWorkerHarness, type WorkerHarness } from './worker-harness.ts';

let mock: MockUpstream | undefined;
let harness: WorkerHarness | undefined;

afterEach(async () => {
  await harness?.close();
  await mock?.close();
  harness = mock = undefined;
});

/** A worker whose one provider (the mock) has these settings. */
async function start(provider: Record<string, unknown>, extra: Record<string, unknown> = {}): Promise<{ h: WorkerHarness; m: MockUpstream }> {
  mock = await startMockUpstream();
  harness = await startWorkerHarness(inject('redisUrl'), mock.url, {
    providers: [{ id: 'mock', type: 'openai', baseUrl: mock.url, ...provider }],
    ...extra,
  });
  return { h: harness, m: mock };
}

const words = (n: number) => Array.from({ length: n }, (_, i) => `tok${i + 1}`).join(' ');
const content = (data: string[]) => data.map((d) => (JSON.parse(d) as { choices: Array<{ delta?: { content?: string } }> }).choices[0]?.delta?.content ?? '').join('');

describe('timeoutMs bounds the wait for the response head only', () => {
  it('a healthy stream lasting several times timeoutMs is relayed whole', async () => {
    const { h } = await start({ timeoutMs: 500 });
    // 32 frames 100 ms apart: about 3 s of stream, six times timeoutMs.
    const jobId = await h.enqueue(h.streamJob({ 'x-mock-chunks': '30', 'x-mock-chunk-delay-ms': '100' }));
    const messages = await h.finalReplies(jobId, 20_000);
    expect(messages.at(-1)).toMatchObject({ k: 'done', result: { kind: 'stream', chunks: 32 } });
    expect(content(chunkData(messages))).toBe(words(30));
  });

  it('streams queued for a pool connection longer than timeoutMs all complete', async () => {
    // One connection: the streams run one after the other, each about 0.8 s, so the later ones wait in the pool
    // for longer than timeoutMs before their request is even sent.
    const { h, m } = await start({ timeoutMs: 1_000, maxConcurrency: 1 });
    const jobIds = await Promise.all(
      Array.from({ length: 4 }, () => h.enqueue(h.streamJob({ 'x-mock-chunks': '6', 'x-mock-chunk-delay-ms': '100', 'x-mock-tag': 'queued' }))),
    );
    for (const jobId of jobIds) {
      const messages = await h.finalReplies(jobId, 20_000);
      expect(messages.at(-1)).toMatchObject({ k: 'done', result: { kind: 'stream', chunks: 8 } });
    }
    expect(m.stats().maxInFlight).toBe(1);
    expect(m.stats().byTag.queued).toEqual({ received: 4, completed: 4, aborted: 0 });
  });

  it('an upstream that sends no response head within timeoutMs is retried, then answered 504 upstream_timeout', async () => {
    const { h, m } = await start({ timeoutMs: 300 });
    const jobId = await h.enqueue(h.chatJob({ headers: { 'x-mock-fault': 'hang', 'x-mock-tag': 'silent' } }));
    const messages = await h.finalReplies(jobId);
    expect(messages).toHaveLength(1);
    expect(messages[0]).toMatchObject({ k: 'error', status: 504, error: { type: 'timeout_error', code: 'upstream_timeout' } });
    // worker.maxAttempts (3) calls, each given up by the worker.
    await waitFor(() => m.stats().byTag.silent?.aborted === 3, { what: 'the three attempts to be aborted' });
    expect(m.stats().byTag.silent).toEqual({ received: 3, completed: 0, aborted: 3 });
  });
});

describe('streamIdleTimeoutMs bounds the silence between chunks', () => {
  it('a stream whose upstream goes silent longer than streamIdleTimeoutMs ends with an error after its chunks', async () => {
    const { h, m } = await start({ timeoutMs: 30_000, streamIdleTimeoutMs: 300 });
    // Half the content, then silence until the client (the worker) leaves.
    const jobId = await h.enqueue(h.streamJob({ 'x-mock-fault': 'stall-mid-stream', 'x-mock-chunks': '8', 'x-mock-tag': 'stalls' }));
    const messages = await h.finalReplies(jobId);
    expect(messages[0]).toMatchObject({ k: 'head', status: 200 });
    expect(content(chunkData(messages))).toBe(words(4));
    expect(messages.at(-1)).toMatchObject({ k: 'error', error: { code: 'stream_interrupted' } });
    // Not retried: the client already has half an answer.
    await waitFor(() => m.stats().byTag.stalls?.aborted === 1, { what: 'the stalled upstream call to be aborted' });
    expect(m.stats().byTag.stalls?.received).toBe(1);
  });

  it('a pause shorter than streamIdleTimeoutMs does not end the stream', async () => {
    const { h } = await start({ timeoutMs: 30_000, streamIdleTimeoutMs: 5_000 });
    const jobId = await h.enqueue(h.streamJob({ 'x-mock-fault': 'stall-mid-stream', 'x-mock-stall-ms': '300', 'x-mock-chunks': '8' }));
    const messages = await h.finalReplies(jobId);
    expect(messages.at(-1)).toMatchObject({ k: 'done', result: { kind: 'stream', chunks: 10 } });
    expect(content(chunkData(messages))).toBe(words(8));
  });
});

describe('the job deadline bounds the whole call', () => {
  it('a stream that outlives the job deadline ends with a 504 deadline error, not as a client gone', async () => {
    const { h, m } = await start({ timeoutMs: 30_000 });
    const job = h.streamJob({ 'x-mock-chunks': '200', 'x-mock-chunk-delay-ms': '50', 'x-mock-tag': 'outlives' }, { deadline: Date.now() + 1_500 });
    const jobId = await h.enqueue(job);
    const messages = await h.finalReplies(jobId);
    expect(chunkData(messages).length).toBeGreaterThan(0);
    expect(messages.at(-1)).toMatchObject({ k: 'error', status: 504, error: { type: 'timeout_error', code: 'deadline_exceeded' } });
    expect((await h.finishedJob(jobId)).returnvalue).toMatchObject({ kind: 'error', error: { code: 'deadline_exceeded' } });
    await waitFor(() => m.stats().byTag.outlives?.aborted === 1, { what: 'the upstream call to be aborted at the deadline' });
    expect(m.stats().byTag.outlives?.received).toBe(1);
  });
});
