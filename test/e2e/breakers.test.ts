// A dead deployment with three worker processes (real Redis, real ingress, the official openai client): once one
// worker's breaker opens, all three refuse to call it and the mock sees nothing until the reset; then exactly one probe
// goes out for the pool, and its success brings every worker back. Needs the breakers wired in roles/worker.ts.
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import OpenAI from 'openai';
import { startMockUpstream, type MockUpstream } from '../../src/mock-upstream/index.ts';
import { startCluster, TENANT_KEY, type Cluster } from '../support/spillway-cluster.ts';
import { waitFor } from '../support/wait.ts';

const THRESHOLD = 3;
const RESET_MS = 3_000;
let mock: MockUpstream;
let cluster: Cluster;
let client: OpenAI;

beforeAll(async () => {
  mock = await startMockUpstream({ chunks: 2 });
  cluster = await startCluster({
    redisUrl: inject('redisUrl'),
    workers: 3,
    config: {
      worker: { concurrency: 4, maxAttempts: 1, lockDurationMs: 2_000, stalledIntervalMs: 1_000 },
      providers: [{ id: 'dead', type: 'openai', baseUrl: mock.url, circuitBreaker: { failureThreshold: THRESHOLD, windowMs: 60_000, resetTimeoutMs: RESET_MS } }],
      models: [{ name: 'gpt-4o-mini', route: [{ provider: 'dead', model: 'model-dead' }] }],
    },
  });
  client = new OpenAI({ baseURL: `${cluster.baseUrl}/v1`, apiKey: TENANT_KEY, maxRetries: 0 });
}, 60_000);

afterAll(async () => {
  await cluster?.close();
  await mock?.close();
});

/** One chat call; resolves with its HTTP status (and Retry-After) instead of throwing. */
async function chat(headers: Record<string, string> = {}): Promise<{ status: number; retryAfter?: string; code?: unknown }> {
  try {
    await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }, { headers });
    return { status: 200 };
  } catch (err) {
    if (!(err instanceof OpenAI.APIError)) throw err;
    return { status: err.status ?? 0, retryAfter: err.headers?.get('retry-after') ?? undefined, code: err.code };
  }
}

const count = (text: string, needle: string) => text.split(needle).length - 1;
const logged = (msg: string) => cluster.workers.map((w) => count(w.output(), `"msg":"${msg}"`));

describe('a dead deployment, three workers', () => {
  it('opens in all three after the threshold, is not called until the reset, then one probe decides recovery for all', async () => {
    // Dead: every call fails. Each worker counts its own failures, so the first breaker opens after THRESHOLD to
    // 3 × (THRESHOLD − 1) + 1 calls, depending on which worker takes which job.
    let calls = 0;
    while (calls < 3 * (THRESHOLD - 1) + 1 && logged('circuit breaker opened').every((n) => n === 0)) {
      const answer = await chat({ 'x-mock-status': '500' });
      // A log line can trail the answer it belongs to: a 503 means the breaker already opened.
      if (answer.status === 503) break;
      expect(answer.status).toBe(502);
      calls++;
    }
    await waitFor(() => logged('circuit breaker opened').every((n) => n >= 1), { what: 'the breaker to open in all three workers' });
    const seen = mock.stats().received;
    expect(seen).toBe(calls);

    // Open everywhere: healthy requests get 503 with a Retry-After, and nothing reaches the deployment.
    for (let i = 0; i < 6; i++) {
      const answer = await chat();
      expect(answer).toMatchObject({ status: 503, code: 'upstream_unavailable' });
      expect(Number(answer.retryAfter)).toBeGreaterThanOrEqual(1);
    }
    expect(mock.stats().received).toBe(seen);

    // After the reset: keep asking (held at the mock by a gate) until one request is let through as the probe.
    let pending: Promise<unknown> | undefined;
    let probe: Promise<{ status: number }> | undefined;
    await waitFor(
      () => {
        if (mock.stats().inFlight === 1) return true;
        if (pending === undefined) {
          const attempt = chat({ 'x-mock-gate': 'probe' });
          probe = attempt;
          pending = attempt.then((answer) => {
            if (answer.status === 503) pending = undefined;
          });
        }
        return false;
      },
      { timeoutMs: RESET_MS + 15_000, what: 'the half-open probe to reach the deployment' },
    );
    // While the probe is out, every other request is refused by whichever worker takes it: one probe for the pool.
    for (let i = 0; i < 6; i++) expect((await chat()).status).toBe(503);
    expect(mock.stats().received).toBe(seen + 1);

    mock.openGate('probe');
    expect(await probe).toMatchObject({ status: 200 });
    await waitFor(() => logged('circuit breaker closed').every((n) => n >= 1), { what: 'the breaker to close in all three workers' });
    for (let i = 0; i < 6; i++) expect((await chat()).status).toBe(200);
    expect(mock.stats().received).toBe(seen + 1 + 6);
  });
});
