// The response cache's Lua scripts on a real Redis: a miss claims the single flight and identical requests wait for it,
// the stored answer (JSON or a stream's chunks) is a hit within its TTL and a stale fallback after it, an answer over
// the entry cap is not stored, a failed flight lets the waiters run, and every key carries a TTL.
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { Redis } from 'ioredis';
import { createRedisKeys, type RedisKeys } from '../../src/queue/keys.ts';
import { ResponseCache } from '../../src/cache/response-cache.ts';
import type { CacheDirective, CachePlan } from '../../src/cache/directive.ts';
import { uniquePrefix } from '../support/redis.ts';
import { waitFor } from '../support/wait.ts';

let redis: Redis;
let keys: RedisKeys;
let cache: ResponseCache;
let n = 0;

beforeAll(() => {
  redis = new Redis(inject('redisUrl'), { maxRetriesPerRequest: null });
  keys = createRedisKeys(uniquePrefix('cache'));
  cache = new ResponseCache(redis, keys);
});

afterAll(() => redis.disconnect());

/** A plan for a request of its own (a fresh key per test). */
function plan(overrides: Partial<CacheDirective> = {}, lookup = true): CachePlan {
  const key = (n++).toString(16).padStart(64, '0');
  return { lookup, directive: { key, ttlMs: 60_000, maxStaleMs: 60_000, maxEntryBytes: 10_000, stale: true, ...overrides } };
}

const deadline = () => Date.now() + 10_000;

describe('single flight', () => {
  it('the first miss claims the flight, an identical request waits, and both get the one stored answer', async () => {
    const p = plan();
    const first = await cache.lookup(p, deadline());
    expect(first).toMatchObject({ kind: 'run', directive: { flight: expect.any(String) } });
    const second = await cache.lookup(p, deadline());
    expect(second.kind).toBe('wait');
    const waiting = cache.waitForAnswer(p.directive, deadline());
    if (first.kind !== 'run') throw new Error('unreachable');
    expect(await cache.store(first.directive, { kind: 'body', status: 200, body: '{"id":"x"}' })).toBe(true);
    expect(await waiting).toEqual({ kind: 'body', status: 200, body: '{"id":"x"}' });
    // The flight is over: a later identical request is a plain hit.
    expect(await cache.lookup(p, deadline())).toEqual({ kind: 'hit', answer: { kind: 'body', status: 200, body: '{"id":"x"}' } });
    expect(await redis.exists(keys.responseCache(p.directive.key).flight)).toBe(0);
  });

  it('a flight released without an answer sends its waiters to run their own', async () => {
    const p = plan();
    const first = await cache.lookup(p, deadline());
    const waiting = cache.waitForAnswer(p.directive, deadline());
    if (first.kind !== 'run') throw new Error('unreachable');
    await cache.release(first.directive);
    expect(await waiting).toBe('run');
  });

  it('resolve answers a waiter from the flight it joined, and says so', async () => {
    const p = plan();
    const first = await cache.lookup(p, deadline());
    const joined = cache.resolve(p, deadline());
    if (first.kind !== 'run') throw new Error('unreachable');
    await cache.store(first.directive, { kind: 'body', status: 200, body: '{}' });
    expect(await joined).toMatchObject({ kind: 'hit', joined: true });
  });

  it('a no-cache plan neither looks up nor claims', async () => {
    const p = plan({}, false);
    expect(await cache.lookup(p, deadline())).toEqual({ kind: 'run', directive: p.directive });
    expect(await redis.exists(keys.responseCache(p.directive.key).flight)).toBe(0);
  });
});

describe('entries', () => {
  it("a stream's chunks come back as the same chunks, in order", async () => {
    const p = plan();
    const chunks = ['{"a":1}', '{"b":"x\\ny"}', '{"c":3}'];
    await cache.store(p.directive, { kind: 'stream', status: 200, chunks });
    expect(await cache.lookup(p, deadline())).toEqual({ kind: 'hit', answer: { kind: 'stream', status: 200, chunks } });
  });

  it('past its TTL an entry is no hit, yet serves as the stale fallback within maxStaleMs', async () => {
    const p = plan({ ttlMs: 1, maxStaleMs: 60_000 });
    await cache.store(p.directive, { kind: 'body', status: 200, body: 'old' });
    // Fresh for 1 ms (Redis's clock): from then on a lookup misses (and claims the flight).
    await waitFor(async () => (await cache.lookup(p, deadline())).kind === 'run', { what: 'the entry to go stale' });
    expect(await cache.readStale(p.directive)).toEqual({ kind: 'body', status: 200, body: 'old' });
    // The entry lives ttl + maxStaleMs in Redis, never longer.
    const ttl = await redis.pttl(keys.responseCache(p.directive.key).entry);
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(60_001);
  });

  it('a stale read is refused to a request that may not have one, and when maxStaleMs is 0', async () => {
    const p = plan({ ttlMs: 1, maxStaleMs: 60_000 });
    await cache.store(p.directive, { kind: 'body', status: 200, body: 'old' });
    expect(await cache.readStale({ ...p.directive, stale: false })).toBeUndefined();
    expect(await cache.readStale({ ...p.directive, maxStaleMs: 0 })).toBeUndefined();
  });

  it('an answer over maxEntryBytes is not stored, and its flight is released', async () => {
    const p = plan({ maxEntryBytes: 100 });
    const first = await cache.lookup(p, deadline());
    if (first.kind !== 'run') throw new Error('unreachable');
    expect(await cache.store(first.directive, { kind: 'body', status: 200, body: 'x'.repeat(101) })).toBe(false);
    expect(await redis.exists(keys.responseCache(p.directive.key).entry, keys.responseCache(p.directive.key).flight)).toBe(0);
  });

  it('the single-flight lock expires with the deadline it was claimed for', async () => {
    const p = plan();
    await cache.lookup(p, Date.now() + 5_000);
    const ttl = await redis.pttl(keys.responseCache(p.directive.key).flight);
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(5_000);
  });
});
