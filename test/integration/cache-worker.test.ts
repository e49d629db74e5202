// The worker's side of the response cache (the real worker role, real Redis, the mock upstream): a job with a cache
// directive stores its answer, a stream's answer as its chunks; when every deployment fails the stored answer comes
// back marked stale, a stream as a stream; an answer over the entry cap is relayed whole but not stored.
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { startMockUpstream, type MockUpstream } from '../../src/mock-upstream/index.ts';
import type { CacheDirective } from '../../src/cache/directive.ts';
import { chunkData, startWorkerHarness, type WorkerHarness } from './worker-harness.ts';

let mock: MockUpstream;
let h: WorkerHarness;

beforeAll(async () => {
  mock = await startMockUpstream({ chunks: 3 });
  h = await startWorkerHarness(inject('redisUrl'), mock.url, { providers: [{ id: 'mock', type: 'openai', baseUrl: mock.url, circuitBreaker: { enabled: false } }] });
});

afterAll(async () => {
  await h?.close();
  await mock?.close();
});

/** A directive of its own per test: fresh for 1 ms, kept a minute as the stale fallback. */
function directive(overrides: Partial<CacheDirective> = {}): CacheDirective {
  return { key: randomBytes(32).toString('hex'), ttlMs: 1, maxStaleMs: 60_000, maxEntryBytes: 100_000, stale: true, ...overrides };
}

describe('stale fallback', () => {
  it('a JSON job whose deployments all fail gets the stored answer, marked stale', async () => {
    const cache = directive();
    const stored = await h.finalReplies(await h.enqueue(h.chatJob({ cache })));
    expect(stored).toEqual([expect.objectContaining({ k: 'done', result: expect.objectContaining({ status: 200, headers: expect.objectContaining({ 'x-spillway-deployment': 'mock/mock-chat' }) }) })]);
    mock.setOutage({ status: 500 });
    try {
      const stale = await h.finalReplies(await h.enqueue(h.chatJob({ cache })));
      expect(stale).toEqual([expect.objectContaining({ k: 'done', result: expect.objectContaining({ kind: 'body', status: 200, headers: expect.objectContaining({ 'x-spillway-cache': 'stale' }) }) })]);
      const body = (r: unknown) => (r as { result: { body: string } }).result.body;
      expect(body(stale[0])).toBe(body(stored[0]));
    } finally {
      mock.setOutage(undefined);
    }
  });

  it('a stream job whose deployments all fail gets the stored stream, as a stream, marked stale', async () => {
    const cache = directive();
    const first = await h.finalReplies(await h.enqueue(h.streamJob({}, { cache })));
    expect(first.at(-1)).toMatchObject({ k: 'done', result: { kind: 'stream' } });
    mock.setOutage('reset');
    try {
      const stale = await h.finalReplies(await h.enqueue(h.streamJob({}, { cache })));
      expect(stale[0]).toMatchObject({ k: 'head', status: 200, headers: { 'x-spillway-cache': 'stale' } });
      expect(chunkData(stale)).toEqual(chunkData(first));
      expect(stale.at(-1)).toMatchObject({ k: 'done', result: { kind: 'stream', chunks: chunkData(first).length } });
    } finally {
      mock.setOutage(undefined);
    }
  });

  it('without a stored answer, or for a request that may not have a stale one, the failure is the answer', async () => {
    mock.setOutage({ status: 500 });
    try {
      const nothing = await h.finalReplies(await h.enqueue(h.chatJob({ cache: directive() })));
      expect(nothing).toEqual([expect.objectContaining({ k: 'error', status: 502 })]);
    } finally {
      mock.setOutage(undefined);
    }
    const cache = directive();
    await h.finalReplies(await h.enqueue(h.chatJob({ cache })));
    mock.setOutage({ status: 500 });
    try {
      const noCache = await h.finalReplies(await h.enqueue(h.chatJob({ cache: { ...cache, stale: false } })));
      expect(noCache).toEqual([expect.objectContaining({ k: 'error', status: 502 })]);
    } finally {
      mock.setOutage(undefined);
    }
  });

  it('a stream over the entry cap reaches its client whole but is not stored', async () => {
    const cache = directive({ maxEntryBytes: 200 });
    const first = await h.finalReplies(await h.enqueue(h.streamJob({}, { cache })));
    expect(first.at(-1)).toMatchObject({ k: 'done', result: { kind: 'stream' } });
    mock.setOutage({ status: 500 });
    try {
      expect((await h.finalReplies(await h.enqueue(h.streamJob({}, { cache })))).at(-1)).toMatchObject({ k: 'error' });
    } finally {
      mock.setOutage(undefined);
    }
  });
});
