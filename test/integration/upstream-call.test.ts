// The call loop through the real worker role, real Redis and real mock upstreams: fallback targets, whose
// Retry-After delays what, which failures are retried (exact call counts), size caps on every body read, streams cut
// short, and the no_route answer.
import { afterEach, describe, expect, inject, it } from 'vitest';
import { startMockUpstream, type MockUpstream } from '../../src/mock-upstream/index.ts';
import { waitFor } from '../support/wait.ts';
import { chunkData, startWorkerHarness, type WorkerHarness } from './worker-harness.ts';

const opened: Array<{ close(): Promise<void> }> = [];
afterEach(async () => {
  // The worker first (it holds connections to the mocks), then the mocks.
  for (const item of opened.splice(0).reverse()) await item.close();
});

async function mocks(n: number): Promise<MockUpstream[]> {
  const started = await Promise.all(Array.from({ length: n }, () => startMockUpstream()));
  opened.push(...started);
  return started;
}

async function worker(mockUrl: string, config: Record<string, unknown>): Promise<WorkerHarness> {
  const h = await startWorkerHarness(inject('redisUrl'), mockUrl, config);
  opened.push(h);
  return h;
}

/** A worker whose model gpt-4o-mini routes to provider a (mock A, with these headers on every call), then b (mock B). */
async function twoProviders(aHeaders: Record<string, string>): Promise<{ h: WorkerHarness; a: MockUpstream; b: MockUpstream }> {
  const [a, b] = (await mocks(2)) as [MockUpstream, MockUpstream];
  const h = await worker(a.url, {
    providers: [
      { id: 'a', type: 'openai', baseUrl: a.url, headers: aHeaders },
      { id: 'b', type: 'openai', baseUrl: b.url },
    ],
    models: [{ name: 'gpt-4o-mini', route: [{ provider: 'a', model: 'model-a' }, { provider: 'b', model: 'model-b' }] }],
  });
  return { h, a, b };
}

/** A worker with the one mock provider, with these provider settings. */
async function oneProvider(provider: Record<string, unknown> = {}): Promise<{ h: WorkerHarness; m: MockUpstream }> {
  const [m] = (await mocks(1)) as [MockUpstream];
  const h = await worker(m.url, { providers: [{ id: 'mock', type: 'openai', baseUrl: m.url, ...provider }] });
  return { h, m };
}

const bodyOf = (message: unknown) => JSON.parse((message as { result: { body: string } }).result.body) as { model: string };

describe('fallback targets', () => {
  it('when the first target fails with 500, the second target answers', async () => {
    const { h, a, b } = await twoProviders({ 'x-mock-status': '500' });
    const messages = await h.finalReplies(await h.enqueue(h.chatJob()));
    expect(messages).toHaveLength(1);
    expect(messages[0]).toMatchObject({ k: 'done', result: { kind: 'body', status: 200 } });
    expect(bodyOf(messages[0]).model).toBe('model-b');
    expect([a.stats().received, b.stats().received]).toEqual([1, 1]);
  });

  it("a provider's Retry-After does not hold back the fallback: the next target is called at once", async () => {
    // A asks for 30 s, far past the job's 10 s deadline: waiting it out first would leave nothing for B.
    const { h, a, b } = await twoProviders({ 'x-mock-status': '429', 'x-mock-retry-after': '30' });
    const messages = await h.finalReplies(await h.enqueue(h.chatJob({ deadline: Date.now() + 10_000 })));
    expect(messages).toHaveLength(1);
    expect(messages[0]).toMatchObject({ k: 'done', result: { kind: 'body', status: 200 } });
    expect(bodyOf(messages[0]).model).toBe('model-b');
    expect([a.stats().received, b.stats().received]).toEqual([1, 1]);
  });

  it('going back to a provider honours its Retry-After: one that cannot be waited out before the deadline ends the call with 503', async () => {
    const { h, m } = await oneProvider({ headers: { 'x-mock-status': '429', 'x-mock-retry-after': '30' } });
    const messages = await h.finalReplies(await h.enqueue(h.chatJob({ deadline: Date.now() + 10_000 })));
    expect(messages[0]).toMatchObject({ k: 'error', status: 503, headers: { 'retry-after': '30' }, error: { code: 'upstream_overloaded' } });
    expect(m.stats().received).toBe(1);
  });

  it('a model whose route has no usable provider is answered 502 no_route without any upstream call', async () => {
    const { h, m } = await oneProvider();
    const messages = await h.finalReplies(await h.enqueue(h.chatJob({ model: 'model-this-worker-does-not-know' })));
    expect(messages).toEqual([expect.objectContaining({ k: 'error', status: 502, error: expect.objectContaining({ type: 'api_error', code: 'no_route' }) })]);
    expect(m.stats().received).toBe(0);
  });
});

describe('retry classes: the mock counts exactly the calls the policy allows', () => {
  /** One provider, four attempts per job (not the default three: a count that only the policy explains). */
  async function fourAttempts(provider: Record<string, unknown> = {}): Promise<{ h: WorkerHarness; m: MockUpstream }> {
    const [m] = (await mocks(1)) as [MockUpstream];
    const h = await worker(m.url, { worker: { maxAttempts: 4 }, providers: [{ id: 'mock', type: 'openai', baseUrl: m.url, ...provider }] });
    return { h, m };
  }

  it.each([
    ['500', { 'x-mock-status': '500' }, 502],
    ['502', { 'x-mock-status': '502' }, 502],
    ['503', { 'x-mock-status': '503' }, 503],
    ['429 (Retry-After 0)', { 'x-mock-status': '429', 'x-mock-retry-after': '0' }, 503],
    ['408', { 'x-mock-status': '408' }, 502],
    ['a connection reset', { 'x-mock-fault': 'reset' }, 502],
  ])('%s is retried: four calls, then the final answer', async (_name, headers, finalStatus) => {
    const { h, m } = await fourAttempts();
    const messages = await h.finalReplies(await h.enqueue(h.chatJob({ headers: { ...headers, 'x-mock-tag': 'retried' } })));
    expect(messages).toEqual([expect.objectContaining({ k: 'error', status: finalStatus })]);
    expect(m.stats().byTag['retried']?.received).toBe(4);
  });

  it('a timeout (no response head within timeoutMs) is retried: four calls, then 504', async () => {
    const { h, m } = await fourAttempts({ timeoutMs: 200 });
    const messages = await h.finalReplies(await h.enqueue(h.chatJob({ headers: { 'x-mock-fault': 'hang', 'x-mock-tag': 'slow' } })), 20_000);
    expect(messages).toEqual([expect.objectContaining({ k: 'error', status: 504, error: expect.objectContaining({ code: 'upstream_timeout' }) })]);
    expect(m.stats().byTag['slow']?.received).toBe(4);
  });

  it.each([
    ['400', 400],
    ['401', 502],
    ['403', 502],
    ['404', 502],
    ['413', 413],
    ['422', 422],
  ])('%s is not retried: one call', async (status, finalStatus) => {
    const { h, m } = await fourAttempts();
    const messages = await h.finalReplies(await h.enqueue(h.chatJob({ headers: { 'x-mock-status': status, 'x-mock-tag': 'final' } })));
    expect(messages).toEqual([expect.objectContaining({ k: 'error', status: finalStatus })]);
    expect(m.stats().byTag['final']?.received).toBe(1);
  });

  it('a failure that recovers within the attempts is answered: the calls stop at the first success', async () => {
    const { h, m } = await fourAttempts();
    const messages = await h.finalReplies(await h.enqueue(h.chatJob({ headers: { 'x-mock-status': '500', 'x-mock-fail-times': '2', 'x-mock-tag': 'flaky' } })));
    expect(messages).toEqual([expect.objectContaining({ k: 'done', result: expect.objectContaining({ status: 200 }) })]);
    expect(m.stats().byTag['flaky']?.received).toBe(3);
  });
});

describe('size caps on upstream bodies', () => {
  it('a JSON answer larger than maxResponseBytes fails with 502 upstream_response_too_large, not retried', async () => {
    const { h, m } = await oneProvider({ maxResponseBytes: 1_024 });
    const messages = await h.finalReplies(await h.enqueue(h.chatJob({ headers: { 'x-mock-chunks': '500' } })));
    expect(messages).toHaveLength(1);
    expect(messages[0]).toMatchObject({ k: 'error', status: 502, error: { type: 'api_error', code: 'upstream_response_too_large' } });
    expect(m.stats().received).toBe(1);
  });

  it('an enormous error body is read only up to a small cap: the upstream response is dropped, not read to its end', async () => {
    const { h, m } = await oneProvider();
    const headers = { 'x-mock-fault': 'huge-error', 'x-mock-status': '500', 'x-mock-body-bytes': String(32 * 1024 * 1024), 'x-mock-tag': 'huge-error' };
    const messages = await h.finalReplies(await h.enqueue(h.chatJob({ headers })));
    expect(messages[0]).toMatchObject({ k: 'error', status: 502, error: { code: 'upstream_error' } });
    await waitFor(() => m.stats().byTag['huge-error']?.aborted === 3, { what: 'three dropped upstream responses' });
    expect(m.stats().byTag['huge-error']).toEqual({ received: 3, completed: 0, aborted: 3 });
  });

  it('an enormous body that is not JSON is discarded after a small cap', async () => {
    const { h, m } = await oneProvider();
    const headers = { 'x-mock-fault': 'non-json', 'x-mock-body-bytes': String(32 * 1024 * 1024), 'x-mock-tag': 'html' };
    const messages = await h.finalReplies(await h.enqueue(h.chatJob({ headers })));
    expect(messages[0]).toMatchObject({ k: 'error', status: 502, error: { code: 'upstream_error' } });
    await waitFor(() => m.stats().byTag.html?.aborted === 3, { what: 'three dropped upstream responses' });
    expect(m.stats().byTag.html).toEqual({ received: 3, completed: 0, aborted: 3 });
  });

  it('a stream event larger than maxResponseBytes ends the call with upstream_response_too_large', async () => {
    const { h, m } = await oneProvider({ maxResponseBytes: 64 * 1024 });
    const jobId = await h.enqueue(h.streamJob({ 'x-mock-fault': 'huge-event', 'x-mock-body-bytes': String(4 * 1024 * 1024), 'x-mock-tag': 'event' }));
    const messages = await h.finalReplies(jobId);
    expect(messages).toEqual([expect.objectContaining({ k: 'error', status: 502, error: expect.objectContaining({ code: 'upstream_response_too_large' }) })]);
    await waitFor(() => m.stats().byTag.event?.aborted === 1, { what: 'the upstream stream to be dropped' });
    expect(m.stats().byTag.event?.received).toBe(1);
  });
});

describe('a stream that ends without [DONE]', () => {
  it('ends with a stream_interrupted error after its chunks, logged as a stream cut short', async () => {
    const { h, m } = await oneProvider();
    const jobId = await h.enqueue(h.streamJob({ 'x-mock-fault': 'no-done', 'x-mock-chunks': '3', 'x-mock-tag': 'no-done' }));
    const messages = await h.finalReplies(jobId);
    expect(messages[0]).toMatchObject({ k: 'head', status: 200 });
    // Role, three words, finish: everything but [DONE].
    expect(chunkData(messages)).toHaveLength(5);
    expect(messages.at(-1)).toMatchObject({ k: 'error', error: { code: 'stream_interrupted' } });
    expect(m.stats().byTag['no-done']).toEqual({ received: 1, completed: 1, aborted: 0 });
    const failures = h.logs.filter((line) => line.msg === 'upstream attempt failed');
    expect(failures).toEqual([expect.objectContaining({ kind: 'protocol', detail: 'upstream stream ended before [DONE]' })]);
  });

});
