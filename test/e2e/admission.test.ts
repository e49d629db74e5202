// Per-tenant admission through real processes (ingresses, 2 workers, real Redis, mock upstream): requests paced by
// rpm queue instead of failing, refusals are immediate 429s that cost no upstream call, two ingresses share one budget,
// tokens are budgeted and corrected from usage, maxConcurrent holds across workers (and survives a SIGKILL), and a
// flooding tenant does not push another tenant's requests behind all of its own.
// SPILLWAY_LONG_TESTS=1: the figures (rpm 60: 60 requests over about a minute).
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { startCluster, type Cluster } from '../support/spillway-cluster.ts';
import { spawnSpillway, waitForReady, type SpillwayProcess } from '../support/processes.ts';
import { freePort } from '../support/ports.ts';
import { waitFor } from '../support/wait.ts';

const LONG = process.env.SPILLWAY_LONG_TESTS === '1';
const PACED_RPM = LONG ? 60 : 600;

const key = (tenant: string) => `sk-test-${tenant}-0123456789`;
const sha = (text: string) => `sha256:${createHash('sha256').update(text).digest('hex')}`;
const tenant = (id: string, limits: Record<string, unknown>) => ({ id, keys: [sha(key(id))], ...limits });

let cluster: Cluster;

beforeAll(async () => {
  cluster = await startCluster({
    redisUrl: inject('redisUrl'),
    workers: 2,
    config: {
      worker: { concurrency: 4, lockDurationMs: 2_000, stalledIntervalMs: 1_000 },
      server: { requestTimeoutMs: 30_000, maxDeadlineMs: 600_000 },
      tenants: [
        tenant('paced', { rpm: PACED_RPM, maxQueueWaitMs: 120_000 }),
        tenant('strict', { rpm: 60, maxQueueWaitMs: 5_000 }),
        tenant('shared', { rpm: 60, burst: 5, maxQueueWaitMs: 0 }),
        tenant('tokens', { tpm: 60_000, maxQueueWaitMs: 0 }),
        // A queue wait far below the ~29 s a 30,000-token request would cost unsettled.
        tenant('refund', { tpm: 60_000, maxQueueWaitMs: 10_000 }),
        tenant('narrow', { maxConcurrent: 5 }),
        // Fairness is about order, not shedding: the capacity measured from the earlier tests' slow jobs must not shed
        // the flood (test/e2e/load-shedding.test.ts covers that).
        tenant('flood', { maxQueueWaitMs: 600_000 }),
        tenant('light', { maxQueueWaitMs: 600_000 }),
      ],
    },
  });
}, 60_000);

afterAll(async () => {
  await cluster?.close();
});

function chat(baseUrl: string, tenantId: string, tag: string, extra: { headers?: Record<string, string>; body?: Record<string, unknown> } = {}) {
  return fetch(`${baseUrl}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key(tenantId)}`, 'content-type': 'application/json', 'x-mock-tag': tag, ...extra.headers },
    body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }], ...extra.body }),
  });
}

async function admissionCount(outcome: string, tenantId: string): Promise<number> {
  const text = await (await fetch(`${cluster.baseUrl}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith('spillway_admission_decisions_total') && l.includes(`tenant="${tenantId}"`) && l.includes(`outcome="${outcome}"`));
  return line === undefined ? 0 : Number(line.split(' ').at(-1));
}

describe('request budgets', () => {
  it(`paces 60 requests sent at once over the tenant's rpm: every one answered 200, most after waiting for their slot`, async () => {
    const responses = await Promise.all(Array.from({ length: 60 }, () => chat(cluster.baseUrl, 'paced', 'paced')));
    expect(responses.map((r) => r.status)).toEqual(Array(60).fill(200));
    // One second's worth goes at once (the burst); the rest waited in the queue as delayed jobs.
    const burst = Math.max(1, Math.floor(PACED_RPM / 60));
    expect(await admissionCount('delayed', 'paced')).toBeGreaterThanOrEqual(60 - burst - 2);
    expect(responses[0]!.headers.get('x-ratelimit-limit-requests')).toBe(String(PACED_RPM));
    expect(cluster.mock.stats().byTag.paced).toMatchObject({ received: 60, completed: 60 });
  }, LONG ? 180_000 : 60_000);

  it('refuses at once with 429 and Retry-After what would wait beyond maxQueueWaitMs, and the upstream sees none of it', async () => {
    const responses = await Promise.all(Array.from({ length: 60 }, () => chat(cluster.baseUrl, 'strict', 'strict')));
    const ok = responses.filter((r) => r.status === 200);
    const refused = responses.filter((r) => r.status === 429);
    expect(ok.length + refused.length).toBe(60);
    // rpm 60 with a 5 s queue wait: the burst of one and the slots of the next 5 seconds, give or take the clock.
    expect(ok.length).toBeGreaterThanOrEqual(5);
    expect(ok.length).toBeLessThanOrEqual(8);
    const body = (await refused[0]!.json()) as { error: { type: string; code: string } };
    expect(body.error).toMatchObject({ type: 'rate_limit_error', code: 'rate_limit_exceeded' });
    const retryAfterMs = Number(refused[0]!.headers.get('retry-after-ms'));
    expect(Number(refused[0]!.headers.get('retry-after'))).toBe(Math.ceil(retryAfterMs / 1000));
    expect(cluster.mock.stats().byTag.strict?.received).toBe(ok.length);
    // The Retry-After is honest: after it, the same request is queued again, not refused.
    await new Promise((resolve) => setTimeout(resolve, retryAfterMs));
    expect((await chat(cluster.baseUrl, 'strict', 'strict-retry')).status).toBe(200);
  }, 60_000);

  it('two ingress processes share one budget exactly', async () => {
    const port = await freePort();
    const second: SpillwayProcess = spawnSpillway(['ingress', '--config', cluster.configFile], { PORT: String(port) });
    try {
      const secondUrl = `http://127.0.0.1:${port}`;
      await waitForReady(secondUrl, second);
      const started = Date.now();
      const responses = await Promise.all(
        Array.from({ length: 30 }, (_, i) => chat(i % 2 === 0 ? cluster.baseUrl : secondUrl, 'shared', 'shared')),
      );
      const elapsedS = (Date.now() - started) / 1000;
      const admitted = responses.filter((r) => r.status === 200).length;
      expect(responses.filter((r) => r.status === 429).length).toBe(30 - admitted);
      // The burst of 5, plus one per second that passed while the requests arrived: never 2 × the budget.
      expect(admitted).toBeGreaterThanOrEqual(5);
      expect(admitted).toBeLessThanOrEqual(5 + Math.ceil(elapsedS) + 1);
    } finally {
      await second.kill('SIGKILL');
    }
  }, 60_000);

  it('a fake x-spillway or x-ratelimit header changes nothing', async () => {
    const response = await chat(cluster.baseUrl, 'strict', 'fake', { headers: { 'x-spillway-tenant': 'flood', 'x-spillway-priority': 'high', 'x-ratelimit-remaining-requests': '1000' } });
    // Still the strict tenant, still out of budget for a while after the previous test.
    expect(response.headers.get('x-ratelimit-limit-requests')).toBe('60');
  });
});

describe('token budgets', () => {
  it('limits large requests by tokens, not by requests', async () => {
    // 30,000 answer tokens asked for: far over one second's worth (1,000) of a 60,000 tpm budget. While that call
    // runs (the budget is settled only when it ends), the tenant's next request has no token budget left.
    const big = chat(cluster.baseUrl, 'tokens', 'tokens', { body: { max_tokens: 30_000 }, headers: { 'x-mock-latency-ms': '3000' } });
    await waitFor(() => cluster.mock.stats().byTag.tokens?.received === 1, { what: 'the big call to be running' });
    const next = await chat(cluster.baseUrl, 'tokens', 'tokens-next', { body: { max_tokens: 10 } });
    expect(next.status).toBe(429);
    expect(((await next.json()) as { error: { message: string } }).error.message).toContain('TPM');
    expect(next.headers.get('x-ratelimit-limit-tokens')).toBe('60000');
    expect(next.headers.get('x-ratelimit-limit-requests')).toBeNull();
    expect(cluster.mock.stats().byTag['tokens-next']).toBeUndefined();
    expect((await big).status).toBe(200);
  });

  it('corrects the token budget from the usage the upstream reports, JSON and stream', async () => {
    expect((await chat(cluster.baseUrl, 'refund', 'refund', { body: { max_tokens: 30_000 } })).status).toBe(200);
    // The mock used a handful of tokens: once the worker settles, the tenant is ~29 s of budget richer. Without the
    // settlement every request would be refused for about 29 s, longer than this wait.
    await waitFor(async () => (await chat(cluster.baseUrl, 'refund', 'refund-next', { body: { max_tokens: 10 } })).status === 200, {
      timeoutMs: 15_000,
      what: 'the token budget to be corrected',
    });
    // A stream whose client did not ask for usage: the worker asks the upstream for it (to settle the budget) and
    // keeps the usage chunk from the client.
    const stream = await chat(cluster.baseUrl, 'refund', 'refund-stream', { body: { max_tokens: 30_000, stream: true } });
    expect(stream.status).toBe(200);
    const events = (await stream.text()).split('\n').filter((l) => l.startsWith('data: {')).map((l) => JSON.parse(l.slice(6)) as { choices: unknown[]; usage?: unknown });
    expect(events.length).toBeGreaterThan(0);
    expect(events.every((e) => e.choices.length > 0 && (e.usage === undefined || e.usage === null))).toBe(true);
    await waitFor(async () => (await chat(cluster.baseUrl, 'refund', 'refund-after-stream', { body: { max_tokens: 10 } })).status === 200, {
      timeoutMs: 15_000,
      what: "the stream's tokens to be settled from the usage it was asked for",
    });
  }, 45_000);
});

describe('concurrency and fair share', () => {
  it('holds maxConcurrent across two workers, and the slots of a SIGKILLed worker come back', async () => {
    cluster.mock.reset();
    const answers = Promise.all(
      Array.from({ length: 16 }, () => chat(cluster.baseUrl, 'narrow', 'narrow', { headers: { 'x-mock-latency-ms': '1500' } }).then((r) => r.status)),
    );
    await waitFor(() => cluster.mock.stats().inFlight === 5, { what: 'five calls in flight' });
    // A worker holding some of the slots dies: its leases expire with its locks, and its jobs are re-run.
    await cluster.workers[0]!.kill('SIGKILL');
    expect(await answers).toEqual(Array(16).fill(200));
    expect(cluster.mock.stats().maxInFlight).toBeLessThanOrEqual(5);
  }, 60_000);

  it("a tenant's flood does not push another tenant's requests behind all of its own", async () => {
    cluster.mock.reset();
    const finished: string[] = [];
    const send = (tenantId: string) =>
      chat(cluster.baseUrl, tenantId, tenantId, { headers: { 'x-mock-latency-ms': '40' } }).then((r) => {
        expect(r.status).toBe(200);
        finished.push(tenantId);
      });
    const flood = Array.from({ length: 200 }, () => send('flood'));
    await waitFor(async () => (await cluster.queue.getJobCounts('waiting', 'prioritized')).prioritized! >= 150, { what: 'the flood to be queued' });
    const light = Array.from({ length: 10 }, () => send('light'));
    await Promise.all([...flood, ...light]);
    // Order, not timing: in a FIFO every light request would finish after every queued flood request.
    const lastLight = finished.lastIndexOf('light');
    expect(finished.slice(lastLight + 1).filter((t) => t === 'flood').length).toBeGreaterThanOrEqual(100);
  }, 60_000);
});
