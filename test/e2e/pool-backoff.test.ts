// Pool-wide upstream backoff with real processes (one ingress, two workers, the official openai client): a 429 with
// Retry-After: 2 keeps every worker off that deployment for 2 s, the jobs queued meanwhile then complete, nothing is
// lost, no client sees the 429, and another deployment is served all along; a provider's maxConcurrency holds across
// both workers. Arrival times come from a proxy in front of the mock; the assertions are lower bounds and counts.
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import OpenAI from 'openai';
import { startMockUpstream, type MockUpstream } from '../../src/mock-upstream/index.ts';
import { startCluster, TENANT_KEY, type Cluster } from '../support/spillway-cluster.ts';
import { startRecordingProxy, type RecordingProxy } from '../support/recording-proxy.ts';
import { waitFor } from '../support/wait.ts';

let mock: MockUpstream;
let limitedMock: MockUpstream;
let proxy: RecordingProxy;
let cluster: Cluster;
let client: OpenAI;

beforeAll(async () => {
  [mock, limitedMock] = await Promise.all([startMockUpstream({ chunks: 2 }), startMockUpstream({ chunks: 2 })]);
  proxy = await startRecordingProxy(mock.url);
  cluster = await startCluster({
    redisUrl: inject('redisUrl'),
    workers: 2,
    config: {
      worker: { concurrency: 8, lockDurationMs: 2_000, stalledIntervalMs: 1_000 },
      providers: [
        { id: 'mock', type: 'openai', baseUrl: proxy.url },
        { id: 'limited', type: 'openai', baseUrl: limitedMock.url, limits: { maxConcurrency: 3 } },
      ],
      models: [
        { name: 'gpt-4o-mini', route: [{ provider: 'mock', model: 'mock-chat' }] },
        { name: 'other-model', route: [{ provider: 'mock', model: 'mock-other' }] },
        { name: 'limited-model', route: [{ provider: 'limited', model: 'mock-limited' }] },
      ],
    },
  });
  client = new OpenAI({ baseURL: `${cluster.baseUrl}/v1`, apiKey: TENANT_KEY, maxRetries: 0 });
}, 60_000);

afterAll(async () => {
  await cluster?.close();
  await proxy?.close();
  await Promise.all([mock?.close(), limitedMock?.close()]);
});

/** One chat call; resolves with its status (200, or the APIError's) instead of throwing. */
async function chat(model: string, headers: Record<string, string> = {}): Promise<number> {
  try {
    await client.chat.completions.create({ model, messages: [{ role: 'user', content: 'hi' }] }, { headers });
    return 200;
  } catch (err) {
    if (err instanceof OpenAI.APIError) return err.status ?? 0;
    throw err;
  }
}

describe('a 429 with Retry-After: 2', () => {
  it('reaches no worker of the pool for 2 s; the queued jobs then complete, none lost, no client sees the 429', async () => {
    const limitedOnce = { 'x-mock-status': '429', 'x-mock-retry-after': '2', 'x-mock-fail-times': '1', 'x-mock-tag': 'rate-limited' };
    const first = chat('gpt-4o-mini', limitedOnce);
    const limited = await waitFor(() => proxy.requests.find((call) => call.status === 429 && call.answeredAt !== undefined), { what: 'the upstream 429' });
    const pauseEnds = limited.answeredAt! + 2_000;

    // Queued while the deployment is paused: eight for it (taken by either worker), three for another deployment.
    const queued = Array.from({ length: 8 }, () => chat('gpt-4o-mini', { 'x-mock-tag': 'rate-limited' }));
    const others = Array.from({ length: 3 }, () => chat('other-model'));
    expect(await Promise.all(others)).toEqual([200, 200, 200]);
    expect(await Promise.all([first, ...queued])).toEqual(Array(9).fill(200));

    const toPaused = proxy.requests.filter((call) => call.model === 'mock-chat');
    // The 429 itself, then the nine jobs, each once: nothing lost, nothing called twice.
    expect(toPaused).toHaveLength(10);
    for (const call of toPaused.filter((c) => c !== limited)) expect(call.arrivedAt).toBeGreaterThanOrEqual(pauseEnds);
    expect(toPaused.filter((call) => call.status === 429)).toHaveLength(1);
    // The other deployment was served during the pause.
    const toOther = proxy.requests.filter((call) => call.model === 'mock-other');
    expect(toOther).toHaveLength(3);
    expect(Math.min(...toOther.map((call) => call.arrivedAt))).toBeLessThan(pauseEnds);
    // Each worker that met the pause logged it from its own 429 or learned it from the nudge: only one logged the 429.
    const logged = cluster.workers.map((w) => w.output().split('"msg":"upstream rate limit: deployment paused pool-wide"').length - 1);
    expect(logged.reduce((a, b) => a + b, 0)).toBe(1);
  });
});

describe('pool-wide maxConcurrency', () => {
  it('holds across both workers: never more calls in flight to the provider than its limit, and every request answered', async () => {
    const answers = await Promise.all(Array.from({ length: 12 }, () => chat('limited-model', { 'x-mock-latency-ms': '150' })));
    expect(answers).toEqual(Array(12).fill(200));
    expect(limitedMock.stats().received).toBe(12);
    expect(limitedMock.stats().maxInFlight).toBe(3);
  });
});
