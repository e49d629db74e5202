// Routing strategies and model fallbacks over real Redis and real mock upstreams, measured in call counts (never in
// timings): least-busy prefers the deployment with fewer calls in flight across the pool (two pool members sharing
// Redis), latency prefers the faster one, a model fallback answers when the route is exhausted, a context-length 400
// moves the request to the wider model, and every answer says which deployment gave it and after how many calls.
import { randomUUID } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { parseConfig } from '../../src/config/load.ts';
import { createMetrics } from '../../src/observability/metrics.ts';
import { createRedisKeys } from '../../src/queue/keys.ts';
import { JOB_SCHEMA_VERSION, type CompletionJob, type CompletionResult } from '../../src/queue/jobs.ts';
import { ReplyPublisher } from '../../src/queue/reply-publisher.ts';
import { closeProviderRuntimes, createProviderRuntime } from '../../src/upstream/dispatcher.ts';
import { createRouter } from '../../src/catalogue/catalogue.ts';
import { callUpstream, type UpstreamDeps } from '../../src/upstream/call.ts';
import { createFlowControl, type FlowControl } from '../../src/upstream/flow-control.ts';
import { startMockUpstream, type MockUpstream } from '../../src/mock-upstream/index.ts';
import { testConfig, type ClusterOptions } from '../support/spillway-cluster.ts';
import { uniquePrefix } from '../support/redis.ts';
import { waitFor } from '../support/wait.ts';
import { chunkData, startWorkerHarness, type DoneReply } from './worker-harness.ts';

let slow: MockUpstream;
let fast: MockUpstream;
const opened: Array<{ close(): Promise<void> }> = [];

beforeAll(async () => {
  [slow, fast] = await Promise.all([startMockUpstream({ latencyMs: 150 }), startMockUpstream()]);
});
afterEach(async () => {
  for (const item of opened.splice(0).reverse()) await item.close();
  slow.reset();
  fast.reset();
});
afterAll(async () => {
  await Promise.all([slow?.close(), fast?.close()]);
});

interface Member {
  flow: FlowControl;
  call(model: string, headers?: Record<string, string>): Promise<CompletionResult>;
}

/** One worker of a pool, in this process: its upstream layer with flow control and routing state, on its own connections. */
async function member(prefix: string, config: ClusterOptions['config']): Promise<Member> {
  const parsed = parseConfig(testConfig(inject('redisUrl'), prefix, 0, fast.url, { logging: { level: 'silent' }, ...config }));
  const logger = pino({ level: 'silent' });
  const providers = new Map(parsed.providers.map((p) => [p.id, createProviderRuntime(p, p.baseUrl!)]));
  const redis = new Redis(inject('redisUrl'), { maxRetriesPerRequest: null });
  const subscriber = new Redis(inject('redisUrl'), { maxRetriesPerRequest: null });
  const keys = createRedisKeys(prefix);
  const flow = createFlowControl({ redis, subscriber, keys, instanceId: randomUUID(), logger, providers, config: parsed, leaseTtlMs: 10_000, busyIntervalMs: 50 });
  await flow.start();
  const deps: UpstreamDeps = { providers, metrics: createMetrics({ defaultMetrics: false }), logger, maxAttempts: 3, pauses: flow.pauses, limits: flow.limits, routing: flow.routing };
  const router = createRouter(parsed);
  const publisher = new ReplyPublisher(redis, keys);
  opened.push({
    close: async () => {
      await flow.close();
      await closeProviderRuntimes(providers.values());
      redis.disconnect();
      subscriber.disconnect();
    },
  });
  return {
    flow,
    call: (model, headers = {}) => {
      const now = Date.now();
      const job: CompletionJob = {
        v: JOB_SCHEMA_VERSION,
        endpoint: 'chat.completions',
        requestId: `req-${randomUUID()}`,
        tenant: 'acme',
        model,
        body: { model, messages: [{ role: 'user', content: 'hello' }] },
        stream: false,
        replyTo: null,
        headers,
        enqueuedAt: now,
        deadline: now + 20_000,
      };
      return callUpstream(deps, job, router.targets(model), publisher.forJob(job.requestId, 1, null), new AbortController().signal);
    },
  };
}

const twoDeployments = (strategy: string) => ({
  providers: [
    { id: 'slow', type: 'openai', baseUrl: slow.url },
    { id: 'fast', type: 'openai', baseUrl: fast.url },
  ],
  models: [
    { name: 'balanced', strategy, route: [{ provider: 'slow', model: 'm-slow' }, { provider: 'fast', model: 'm-fast' }] },
    { name: 'only-slow', route: [{ provider: 'slow', model: 'm-slow' }] },
  ],
});

describe('least-busy', () => {
  it("sends every call to the deployment with fewer calls in flight across the pool, including another worker's", async () => {
    const prefix = uniquePrefix('least-busy');
    const [one, two] = [await member(prefix, twoDeployments('least-busy')), await member(prefix, twoDeployments('least-busy'))];
    // Worker one holds three calls on the slow deployment (through another model that routes only there).
    const held = Array.from({ length: 3 }, () => one.call('only-slow', { 'x-mock-gate': 'held' }));
    await waitFor(() => slow.stats().inFlight === 3, { what: 'three calls held at the slow deployment' });
    await waitFor(async () => {
      await two.flow.busy!.refresh();
      return two.flow.routing.busy({ provider: 'slow', model: 'm-slow' }) === 3;
    }, { what: "worker two to see worker one's calls in flight" });
    for (let i = 0; i < 8; i++) expect(await two.call('balanced')).toMatchObject({ kind: 'body', headers: { 'x-spillway-deployment': 'fast/m-fast' } });
    expect(fast.stats().received).toBe(8);
    expect(slow.stats().received).toBe(3);
    slow.openGate('held');
    await Promise.all(held);
  });

  it('spreads concurrent calls over both deployments where fallback would send them all to the first', async () => {
    const prefix = uniquePrefix('least-busy');
    const lb = await member(prefix, twoDeployments('least-busy'));
    await Promise.all(Array.from({ length: 10 }, () => lb.call('balanced', { 'x-mock-latency-ms': '100' })));
    expect(slow.stats().received).toBeGreaterThanOrEqual(1);
    expect(fast.stats().received).toBeGreaterThanOrEqual(4);
    slow.reset();
    fast.reset();
    const fb = await member(uniquePrefix('fallback'), twoDeployments('fallback'));
    await Promise.all(Array.from({ length: 10 }, () => fb.call('balanced', { 'x-mock-latency-ms': '100' })));
    expect([slow.stats().received, fast.stats().received]).toEqual([10, 0]);
  });
});

describe('latency', () => {
  it('after measuring both, sends nearly every call to the faster deployment', async () => {
    const m = await member(uniquePrefix('latency'), twoDeployments('latency'));
    for (let i = 0; i < 30; i++) expect(await m.call('balanced')).toMatchObject({ kind: 'body', status: 200 });
    // Each is measured once at least; then only the exploration share (5 %) goes to the slow one.
    expect(slow.stats().received).toBeGreaterThanOrEqual(1);
    expect(slow.stats().received).toBeLessThanOrEqual(6);
    expect(fast.stats().received).toBeGreaterThanOrEqual(24);
  });
});

describe('model fallbacks through the worker role', () => {
  it('a model whose route is exhausted is answered by its fallback model, naming the deployment and the calls made', async () => {
    const h = await startWorkerHarness(inject('redisUrl'), fast.url, {
      worker: { maxAttempts: 2 },
      providers: [
        { id: 'down', type: 'openai', baseUrl: slow.url, headers: { 'x-mock-status': '500' }, circuitBreaker: { enabled: false } },
        { id: 'up', type: 'openai', baseUrl: fast.url },
      ],
      models: [
        { name: 'gpt-4o-mini', route: [{ provider: 'down', model: 'm-down' }], fallbacks: ['claude'] },
        { name: 'claude', route: [{ provider: 'up', model: 'm-up' }] },
      ],
    });
    opened.push(h);
    const messages = await h.finalReplies(await h.enqueue(h.chatJob()));
    expect(messages).toEqual([expect.objectContaining({ k: 'done', result: expect.objectContaining({ kind: 'body', status: 200, headers: expect.objectContaining({ 'x-spillway-deployment': 'up/m-up', 'x-spillway-attempts': '3' }) }) })]);
    expect(JSON.parse((messages[0] as DoneReply).result.kind === 'body' ? ((messages[0] as DoneReply).result as { body: string }).body : '{}')).toMatchObject({ model: 'm-up' });
    expect([slow.stats().received, fast.stats().received]).toEqual([2, 1]);
  });

  it('a context-length 400 moves the request to the wider model once; other 400s go to no other model', async () => {
    const narrow = await startMockUpstream({ maxPromptChars: 200 });
    opened.push(narrow);
    const h = await startWorkerHarness(inject('redisUrl'), fast.url, {
      providers: [
        { id: 'narrow', type: 'openai', baseUrl: narrow.url },
        { id: 'wide', type: 'openai', baseUrl: fast.url },
      ],
      models: [
        { name: 'gpt-4o-mini', route: [{ provider: 'narrow', model: 'm-8k' }], contextWindowFallback: 'gpt-long', fallbacks: ['gpt-long'] },
        { name: 'gpt-long', route: [{ provider: 'wide', model: 'm-128k' }] },
      ],
    });
    opened.push(h);
    const long = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x'.repeat(300) }] };
    const widened = await h.finalReplies(await h.enqueue(h.chatJob({ body: long })));
    expect(widened).toEqual([expect.objectContaining({ k: 'done', result: expect.objectContaining({ status: 200, headers: expect.objectContaining({ 'x-spillway-deployment': 'wide/m-128k' }) }) })]);
    expect([narrow.stats().received, fast.stats().received]).toEqual([1, 1]);
    // A client's own bad request is not another model's business.
    const refused = await h.finalReplies(await h.enqueue(h.chatJob({ headers: { 'x-mock-status': '400' } })));
    expect(refused).toEqual([expect.objectContaining({ k: 'error', status: 400 })]);
    expect(fast.stats().received).toBe(1);
  });

  it("a stream's head names the deployment that answered it", async () => {
    const h = await startWorkerHarness(inject('redisUrl'), fast.url, {
      providers: [
        { id: 'down', type: 'openai', baseUrl: slow.url, headers: { 'x-mock-status': '503' }, circuitBreaker: { enabled: false } },
        { id: 'up', type: 'openai', baseUrl: fast.url },
      ],
      models: [{ name: 'gpt-4o-mini', route: [{ provider: 'down', model: 'm-down' }, { provider: 'up', model: 'm-up' }] }],
    });
    opened.push(h);
    const messages = await h.finalReplies(await h.enqueue(h.streamJob({})));
    expect(messages[0]).toMatchObject({ k: 'head', status: 200, headers: { 'x-spillway-deployment': 'up/m-up', 'x-spillway-attempts': '2' } });
    expect(chunkData(messages).length).toBeGreaterThan(0);
    expect(messages.at(-1)).toMatchObject({ k: 'done', result: { kind: 'stream' } });
  });
});
