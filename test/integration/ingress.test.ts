// The ingress role in-process (with a worker) against real Redis: 503 while Redis is down, an answer and /ready
// turning 503 while Redis is up but does not answer, and a drain that ends the requests still open with an error.
// The reply bus itself is tested in reply-bus.test.ts.
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { parseConfig } from '../../src/config/load.ts';
import { createLogger } from '../../src/observability/logger.ts';
import { createMetrics } from '../../src/observability/metrics.ts';
import { newInstanceId } from '../../src/roles/context.ts';
import { startWorker } from '../../src/roles/worker.ts';
import { startIngress, type RunningIngress } from '../../src/roles/ingress.ts';
import { runShutdown } from '../../src/roles/shutdown.ts';
import { startMockUpstream, type MockUpstream } from '../../src/mock-upstream/index.ts';
import { TENANT_KEY, testConfig, type ClusterOptions } from '../support/spillway-cluster.ts';
import { startRedisServer, uniquePrefix, type RedisServer } from '../support/redis.ts';
import { waitFor } from '../support/wait.ts';

const logger = createLogger('silent');
const BUDGETED_KEY = 'sk-test-budgeted-0123456789';
const sha256 = (text: string) => `sha256:${createHash('sha256').update(text).digest('hex')}`;

interface InProcess {
  ingress: RunningIngress;
  /** Runs the ingress's shutdown steps only (the worker keeps running). */
  stopIngress(): Promise<void>;
  close(): Promise<void>;
}

/** An ingress and a worker in this process, as `spillway start` runs them. */
async function startInProcess(redisUrl: string, mockUrl: string, overrides: ClusterOptions['config'] = {}): Promise<InProcess> {
  const config = parseConfig(testConfig(redisUrl, uniquePrefix('ingress'), 0, mockUrl, { logging: { level: 'silent' }, ...overrides }));
  const ctx = { config, logger, metrics: createMetrics({ defaultMetrics: false }), instanceId: newInstanceId() };
  const workerSteps = (await startWorker(ctx)).steps;
  const ingress = await startIngress(ctx);
  let ingressStopped: Promise<boolean> | undefined;
  let closed: Promise<boolean> | undefined;
  const stopIngress = async () => {
    await (ingressStopped ??= runShutdown(ingress.steps, logger));
  };
  return {
    ingress,
    stopIngress,
    close: async () => {
      await stopIngress();
      await (closed ??= runShutdown(workerSteps, logger));
    },
  };
}

const chat = (baseUrl: string, headers: Record<string, string> = {}, stream = false): Promise<Response> =>
  fetch(`${baseUrl}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${TENANT_KEY}`, 'content-type': 'application/json', ...headers },
    body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }], stream }),
  });

async function readyStatus(baseUrl: string): Promise<{ status: number; body: unknown }> {
  const response = await fetch(`${baseUrl}/ready`);
  return { status: response.status, body: await response.json() };
}

describe('ingress while Redis is down', () => {
  let redis: RedisServer;
  let mock: MockUpstream;
  let spillway: InProcess;

  beforeAll(async () => {
    redis = await startRedisServer();
    mock = await startMockUpstream();
    spillway = await startInProcess(redis.url, mock.url);
  });

  afterAll(async () => {
    await spillway?.close();
    await mock?.close();
    await redis?.close();
  });

  it('answers 503 with Retry-After and reports not ready while Redis is down, and recovers once it is back', async () => {
    const url = spillway.ingress.url;
    expect((await chat(url)).status).toBe(200);

    await redis.stop();
    // The request must complete (no hang until its deadline): a 503 the client may retry.
    const down = await chat(url);
    expect(down.status).toBe(503);
    expect(down.headers.get('retry-after')).toMatch(/^\d+$/);
    expect(await down.json()).toMatchObject({ error: { type: 'server_error', code: 'service_unavailable' } });
    const ready = await waitFor(async () => {
      const r = await readyStatus(url);
      return r.status === 503 ? r : undefined;
    }, { what: '/ready to answer 503' });
    expect(ready.body).toMatchObject({ status: 'not_ready', reason: expect.stringMatching(/redis|reply channel/) });

    await redis.restart();
    await waitFor(async () => (await chat(url)).status === 200, { timeoutMs: 20_000, what: 'requests to succeed after Redis is back' });
    expect((await readyStatus(url)).status).toBe(200);
  });
});

describe('ingress while Redis does not answer (paused)', () => {
  let redis: RedisServer;
  let mock: MockUpstream;
  let spillway: InProcess;

  beforeAll(async () => {
    redis = await startRedisServer();
    mock = await startMockUpstream();
    // A short deadline, and Redis commands that give up well before it.
    spillway = await startInProcess(redis.url, mock.url, {
      redis: { commandTimeoutMs: 300 },
      server: { requestTimeoutMs: 2_000, maxQueueWaitMs: 0 },
      // A tenant with a budget: its requests go through the admission script first.
      tenants: [
        { id: 'acme', keys: [sha256(TENANT_KEY)] },
        { id: 'budgeted', keys: [sha256(BUDGETED_KEY)], rpm: 6_000, maxQueueWaitMs: 0 },
      ],
    });
  });

  afterAll(async () => {
    await spillway?.close();
    await mock?.close();
    await redis?.close();
  });

  it('answers a request while Redis is paused instead of when it resumes, and /ready reports Redis not answering', async () => {
    const url = spillway.ingress.url;
    expect((await chat(url)).status).toBe(200);
    expect((await readyStatus(url)).status).toBe(200);

    redis.pause();
    try {
      // Awaited before Redis resumes: a request that waits for Redis never returns here.
      const response = await chat(url, { 'x-mock-tag': 'paused' });
      expect([503, 504]).toContain(response.status);
      expect(await response.json()).toMatchObject({ error: { code: expect.stringMatching(/^(service_unavailable|deadline_exceeded)$/) } });
      const ready = await waitFor(async () => {
        const r = await readyStatus(url);
        return r.status === 503 ? r : undefined;
      }, { what: '/ready to answer 503 while Redis is paused' });
      expect(ready.body).toMatchObject({ status: 'not_ready', reason: 'redis not answering' });
    } finally {
      redis.resume();
    }

    await waitFor(async () => (await readyStatus(url)).status === 200, { what: '/ready to recover' });
    await waitFor(async () => (await chat(url)).status === 200, { what: 'requests to succeed again' });
    // The answered request's job (if its add landed late) never reached the upstream: it had expired.
    expect(mock.stats().byTag['paused']).toBeUndefined();
  });

  it("a budgeted tenant's requests that arrive together while Redis is paused each get a 503 at once, none left waiting on their shared admission call", async () => {
    const url = spillway.ingress.url;
    const budgeted = { authorization: `Bearer ${BUDGETED_KEY}` };
    expect((await chat(url, budgeted)).status).toBe(200);

    redis.pause();
    try {
      // Awaited before Redis resumes: an admission that waits for Redis never returns here.
      const responses = await Promise.all(Array.from({ length: 10 }, () => chat(url, { ...budgeted, 'x-mock-tag': 'paused-admission' })));
      expect(responses.map((r) => r.status)).toEqual(Array(10).fill(503));
      for (const response of responses) {
        expect(await response.json()).toMatchObject({ error: { type: 'server_error', code: 'service_unavailable' } });
      }
    } finally {
      redis.resume();
    }
    await waitFor(async () => (await chat(url, budgeted)).status === 200, { what: 'the tenant to be admitted again' });
    expect(mock.stats().byTag['paused-admission']).toBeUndefined();
  });
});

describe('ingress drain', () => {
  let mock: MockUpstream;
  let spillway: InProcess;

  beforeAll(async () => {
    mock = await startMockUpstream();
    spillway = await startInProcess(inject('redisUrl'), mock.url, { server: { shutdownGraceMs: 1_500 } });
  });

  afterAll(async () => {
    await spillway?.close();
    await mock?.close();
  });

  it('ends a stream still open at the end of the grace period with an SSE error event, and cancels its job', async () => {
    const response = await chat(spillway.ingress.url, { 'x-mock-tag': 'drain', 'x-mock-chunks': '200', 'x-mock-chunk-delay-ms': '100' }, true);
    expect(response.status).toBe(200);
    const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
    let text = '';
    while (!text.includes('tok1')) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`stream ended early: ${text}`);
      text += value;
    }

    // Only the ingress drains; the worker keeps running (as in a rolling deploy of ingresses).
    const drained = spillway.stopIngress();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      text += value;
    }
    await drained;
    const events = text.split('\n\n').filter((e) => e.startsWith('data: '));
    expect(events.at(-1)).toContain('"code":"server_shutting_down"');
    expect(text).not.toContain('[DONE]');
    await waitFor(() => mock.stats().byTag['drain']?.aborted === 1, { what: 'the upstream call to be aborted' });
  });
});
