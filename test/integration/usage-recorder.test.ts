// The worker's usage recorder against real Redis: jobs add up in memory, one write per tenant day carries them all,
// and a write that fails (Redis down) is kept and lands, once, when Redis is back.
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createRedisKeys } from '../../src/queue/keys.ts';
import { UsageCounters, UsageRecorder, utcDay } from '../../src/usage/usage-counters.ts';
import { startRedisServer, uniquePrefix, type RedisServer } from '../support/redis.ts';
import { waitFor } from '../support/wait.ts';

const tokens = { prompt: 10, completion: 4, cached: 2 };

describe('usage recorder', () => {
  it('adds jobs up per tenant day and model and writes them in one go, with the TTL', async () => {
    const redis = new Redis(inject('redisUrl'));
    const keys = createRedisKeys(uniquePrefix('usage-rec'));
    const recorder = new UsageRecorder(new UsageCounters(redis, keys, { retentionDays: 7 }), { onError: (err) => { throw err; } });
    const now = Date.now();
    for (let i = 0; i < 3; i++) recorder.record('acme', 'm1', now, tokens, 0.000_001);
    recorder.record('acme', 'm2', now, undefined, 0);
    // Nothing is written before the flush: no Redis call on a job's path.
    expect(await redis.exists(keys.tenantKeys('acme').usage(utcDay(now)))).toBe(0);
    await recorder.close();
    expect(await redis.hgetall(keys.tenantKeys('acme').usage(utcDay(now)))).toEqual({
      'm1|requests': '3',
      'm1|prompt': '30',
      'm1|completion': '12',
      'm1|cached': '6',
      'm1|cost_nusd': '3000',
      'm2|requests': '1',
    });
    const ttl = await redis.ttl(keys.tenantKeys('acme').usage(utcDay(now)));
    expect(ttl).toBeGreaterThan(7 * 86_400);
    expect(ttl).toBeLessThanOrEqual(8 * 86_400);
    redis.disconnect();
  });

  describe('while Redis is down', () => {
    let server: RedisServer;
    let redis: Redis;

    beforeAll(async () => {
      server = await startRedisServer();
      // Fail fast, as a write to a Redis that is down does: the recorder must keep what it could not write.
      redis = new Redis(server.url, { enableOfflineQueue: false, maxRetriesPerRequest: 0 });
      redis.on('error', () => undefined);
      await waitFor(() => redis.status === 'ready', { what: 'redis ready' });
    });

    afterAll(async () => {
      redis?.disconnect();
      await server?.close();
    });

    it('keeps a failed write and writes it, exactly once, when Redis is back', async () => {
      const keys = createRedisKeys(uniquePrefix('usage-down'));
      const errors: unknown[] = [];
      const recorder = new UsageRecorder(new UsageCounters(redis, keys, { retentionDays: 7 }), { onError: (err) => errors.push(err) });
      const now = Date.now();
      recorder.record('acme', 'm1', now, tokens, 0);
      await server.stop();
      await recorder.flush();
      expect(errors.length).toBe(1);
      recorder.record('acme', 'm1', now, tokens, 0);
      await server.restart();
      await waitFor(() => redis.status === 'ready', { timeoutMs: 20_000, what: 'redis back' });
      await recorder.close();
      expect(await redis.hgetall(keys.tenantKeys('acme').usage(utcDay(now)))).toMatchObject({ 'm1|requests': '2', 'm1|prompt': '20' });
    });
  });
});
