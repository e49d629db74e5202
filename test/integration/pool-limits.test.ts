// Pool-wide upstream limits and 429 pauses on a real Redis: two "workers" (instances on connections of their own) share
// a provider's rpm and calls-at-once, a pause one of them takes reaches the other through the nudge (and a worker
// started later through the key), and through the real worker role a paused or saturated deployment makes jobs wait,
// delayed, instead of failing, while jobs for another deployment go through.
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { createRedisKeys, type RedisKeys } from '../../src/queue/keys.ts';
import { PoolLimits } from '../../src/upstream/pool-limits.ts';
import { DeploymentPauses } from '../../src/upstream/pauses.ts';
import { createProviderRuntime, closeProviderRuntimes, type ProviderRuntime } from '../../src/upstream/dispatcher.ts';
import { ProviderSchema } from '../../src/config/schema.ts';
import { startMockUpstream, type MockUpstream } from '../../src/mock-upstream/index.ts';
import { uniquePrefix } from '../support/redis.ts';
import { waitFor } from '../support/wait.ts';
import { startWorkerHarness, type WorkerHarness } from './worker-harness.ts';

const logger = pino({ level: 'silent' });
const connections: Redis[] = [];
const providerSets: Array<Map<string, ProviderRuntime>> = [];

function connect(): Redis {
  const redis = new Redis(inject('redisUrl'), { maxRetriesPerRequest: null });
  connections.push(redis);
  return redis;
}

afterAll(async () => {
  for (const providers of providerSets) await closeProviderRuntimes(providers.values());
  for (const redis of connections) redis.disconnect();
});

/** One worker's PoolLimits for provider `p` with these limits, on a connection of its own. */
function limitsFor(keys: RedisKeys, limits: Record<string, unknown>): PoolLimits {
  const config = ProviderSchema.parse({ id: 'p', type: 'openai', baseUrl: 'http://127.0.0.1:9/v1', limits });
  const providers = new Map([['p', createProviderRuntime(config, config.baseUrl!)]]);
  providerSets.push(providers);
  return new PoolLimits({ redis: connect(), keys, providers, leaseTtlMs: 10_000, logger });
}

const call = (jobId: string) => ({ jobId, endpoint: 'chat.completions' as const, body: { messages: [{ role: 'user', content: 'hi' }] }, tokens: undefined });

describe('pool-wide provider limits', () => {
  it('two workers share one rpm budget: the second call of a minute at rpm 60 waits about a second, in either worker', async () => {
    const keys = createRedisKeys(uniquePrefix('limits'));
    const [one, two] = [limitsFor(keys, { rpm: 60 }), limitsFor(keys, { rpm: 60 })];
    expect(await one.acquire('p', 'x', call('a'))).toMatchObject({ granted: true });
    const refused = await two.acquire('p', 'x', call('b'));
    expect(refused).toMatchObject({ granted: false, reason: 'budget' });
    if (refused.granted) throw new Error('unreachable');
    expect(refused.retryInMs).toBeGreaterThan(900);
    expect(refused.retryInMs).toBeLessThanOrEqual(1_000);
  });

  it('two workers share maxConcurrency: a third call waits until one of the two gives its slot back', async () => {
    const keys = createRedisKeys(uniquePrefix('limits'));
    const [one, two] = [limitsFor(keys, { maxConcurrency: 2 }), limitsFor(keys, { maxConcurrency: 2 })];
    const first = await one.acquire('p', 'x', call('a'));
    expect(await two.acquire('p', 'x', call('b'))).toMatchObject({ granted: true });
    expect(await two.acquire('p', 'x', call('c'))).toMatchObject({ granted: false, reason: 'busy' });
    if (!first.granted) throw new Error('unreachable');
    first.permit!.release(undefined);
    await waitFor(async () => (await two.acquire('p', 'x', call('c'))).granted, { what: 'the freed slot' });
  });

  it('scope deployment gives each model of the provider a budget of its own', async () => {
    const keys = createRedisKeys(uniquePrefix('limits'));
    const limits = limitsFor(keys, { rpm: 60, scope: 'deployment' });
    expect(await limits.acquire('p', 'x', call('a'))).toMatchObject({ granted: true });
    expect(await limits.acquire('p', 'y', call('b'))).toMatchObject({ granted: true });
    expect(await limits.acquire('p', 'x', call('c'))).toMatchObject({ granted: false });
  });

  it('a deployment paused by a 429 is refused by the limits script too, for as long as the pause lasts', async () => {
    const keys = createRedisKeys(uniquePrefix('limits'));
    const limits = limitsFor(keys, { maxConcurrency: 5 });
    await connect().set(keys.upstreamKeys('p').pause('x'), 'test', 'PX', 5_000);
    const answer = await limits.acquire('p', 'x', call('a'));
    expect(answer).toMatchObject({ granted: false, reason: 'paused' });
    expect(await limits.acquire('p', 'y', call('b'))).toMatchObject({ granted: true });
  });

  it('every key the limits write carries a TTL', async () => {
    const keys = createRedisKeys(uniquePrefix('limits'));
    const limits = limitsFor(keys, { rpm: 60, tpm: 6_000, maxConcurrency: 3 });
    expect(await limits.acquire('p', 'x', call('a'))).toMatchObject({ granted: true });
    const budget = keys.upstreamKeys('p').budget(undefined);
    const redis = connect();
    for (const key of [budget.requests, budget.tokens, budget.leases]) expect(await redis.pttl(key)).toBeGreaterThan(0);
  });
});

describe('pool-wide pauses', () => {
  const started: DeploymentPauses[] = [];
  afterEach(async () => {
    for (const pauses of started.splice(0)) await pauses.close();
  });

  async function member(keys: RedisKeys): Promise<DeploymentPauses> {
    const pauses = new DeploymentPauses({ redis: connect(), subscriber: connect(), keys, instanceId: `w-${started.length}`, logger, deployments: [{ provider: 'p', model: 'x' }] });
    await pauses.start();
    started.push(pauses);
    return pauses;
  }

  it('a pause taken by one worker reaches the other through the nudge, and a worker started later through the key', async () => {
    const keys = createRedisKeys(uniquePrefix('pauses'));
    const [one, two] = [await member(keys), await member(keys)];
    expect(two.remainingMs('p', 'x')).toBe(0);
    one.pause('p', 'x', 30_000);
    expect(one.remainingMs('p', 'x')).toBeGreaterThan(29_000);
    await waitFor(() => two.remainingMs('p', 'x') > 0, { what: 'the nudge to reach the second worker' });
    expect(two.remainingMs('p', 'y')).toBe(0);
    const late = await member(keys);
    expect(late.remainingMs('p', 'x')).toBeGreaterThan(20_000);
  });
});

describe('through the worker role', () => {
  const opened: Array<{ close(): Promise<void> }> = [];
  let mock: MockUpstream;
  beforeAll(async () => {
    mock = await startMockUpstream();
  });
  afterEach(async () => {
    for (const item of opened.splice(0).reverse()) await item.close();
  });
  afterAll(async () => {
    await mock?.close();
  });

  async function worker(config: Record<string, unknown> = {}): Promise<WorkerHarness> {
    const h = await startWorkerHarness(inject('redisUrl'), mock.url, config);
    opened.push(h);
    return h;
  }

  it('a 429 with Retry-After puts its job back delayed, not failed; another deployment answers meanwhile; then the job is answered', async () => {
    const h = await worker();
    const limited = await h.enqueue(h.chatJob({ headers: { 'x-mock-status': '429', 'x-mock-retry-after': '2', 'x-mock-fail-times': '1', 'x-mock-tag': 'paused-once' } }));
    await waitFor(async () => (await h.queue.queue.getJob(limited))?.delay !== undefined && (await h.queue.queue.getJobState(limited)) === 'delayed', { what: 'the job to wait delayed' });
    // Another deployment (the embeddings model) is not held up by the pause.
    const other = await h.enqueue(h.chatJob({ model: 'text-embedding-3-small', endpoint: 'embeddings', body: { model: 'text-embedding-3-small', input: 'hi' } }));
    expect((await h.finalReplies(other)).at(-1)).toMatchObject({ k: 'done', result: { kind: 'body', status: 200 } });
    expect(h.replies.some((m) => m.j === limited && (m.k === 'done' || m.k === 'error'))).toBe(false);
    const messages = await h.finalReplies(limited);
    expect(messages).toEqual([expect.objectContaining({ k: 'done', result: expect.objectContaining({ kind: 'body', status: 200 }) })]);
    expect(mock.stats().byTag['paused-once']?.received).toBe(2);
    expect(h.logs.some((line) => line.msg === 'upstream rate limit: deployment paused pool-wide')).toBe(true);
  });

  it('a provider at its pool-wide maxConcurrency makes jobs wait: never more calls in flight than the limit, and every job answered', async () => {
    const h = await worker({ providers: [{ id: 'mock', type: 'openai', baseUrl: mock.url, limits: { maxConcurrency: 2 } }] });
    mock.reset();
    const jobs = await Promise.all(Array.from({ length: 6 }, () => h.enqueue(h.chatJob({ headers: { 'x-mock-latency-ms': '150', 'x-mock-tag': 'limited' } }))));
    for (const jobId of jobs) expect((await h.finalReplies(jobId)).at(-1)).toMatchObject({ k: 'done', result: { status: 200 } });
    expect(mock.stats().byTag['limited']?.received).toBe(6);
    expect(mock.stats().maxInFlight).toBe(2);
  });
});
