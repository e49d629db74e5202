// Load-shedding inputs on a real redis-server and a real BullMQ queue: workers' drain meters add up in per-second
// buckets with TTLs, and a new job's place in line counts only the jobs BullMQ would run before it.
import { afterEach, beforeEach, describe, expect, inject, it } from 'vitest';
import { Redis } from 'ioredis';
import { Queue } from 'bullmq';
import { createDrainMeter, DRAIN_WINDOW_SECONDS, queuePosition, readDrainRate, shouldShed } from '../../src/admission/shed.ts';
import { createRedisKeys, QUEUE_NAMES, type RedisKeys } from '../../src/queue/keys.ts';
import { uniquePrefix } from '../support/redis.ts';

let redis: Redis;
let keys: RedisKeys;

beforeEach(() => {
  redis = new Redis(inject('redisUrl'), { maxRetriesPerRequest: null });
  keys = createRedisKeys(uniquePrefix('shed'));
});
afterEach(() => redis.disconnect());

describe('drain rate', () => {
  it("adds up every worker's finished jobs over the window, in buckets that expire", async () => {
    const workerA = createDrainMeter(redis, keys, QUEUE_NAMES.completions, 60_000);
    const workerB = createDrainMeter(redis, keys, QUEUE_NAMES.completions, 60_000);
    for (let i = 0; i < 10; i++) workerA.record();
    workerB.record(20);
    await Promise.all([workerA.close(), workerB.close()]);
    // Read a second later so the bucket just written counts as a whole past second.
    const rate = await readDrainRate(redis, keys, QUEUE_NAMES.completions, Date.now() + 1_000);
    expect(rate).toBe(30 / DRAIN_WINDOW_SECONDS);
    const written = await redis.keys(`${keys.bullPrefix}:${QUEUE_NAMES.completions}:drain:*`);
    expect(written.length).toBeGreaterThan(0);
    for (const key of written) expect(await redis.ttl(key)).toBeGreaterThan(DRAIN_WINDOW_SECONDS);
  });

  it('nothing recorded: no drain, and then nothing is shed however long the line', async () => {
    const rate = await readDrainRate(redis, keys, QUEUE_NAMES.completions);
    expect(rate).toBe(0);
    expect(shouldShed(100_000, rate, 1_000)).toBe(false);
  });
});

describe('queuePosition', () => {
  let queue: Queue;
  beforeEach(() => {
    queue = new Queue(QUEUE_NAMES.completions, { connection: redis, prefix: keys.bullPrefix });
  });
  afterEach(async () => {
    await queue.obliterate({ force: true });
    await queue.close();
  });

  it('counts unprioritized waiting jobs and prioritized ones at or before the priority, never delayed ones', async () => {
    for (let i = 0; i < 3; i++) await queue.add('plain', {});
    for (let i = 0; i < 5; i++) await queue.add('p10', {}, { priority: 10 });
    for (let i = 0; i < 4; i++) await queue.add('p20', {}, { priority: 20 });
    for (let i = 0; i < 2; i++) await queue.add('later', {}, { delay: 60_000, priority: 1 });
    expect(await queuePosition(redis, keys, QUEUE_NAMES.completions, 5)).toBe(3 + 1);
    expect(await queuePosition(redis, keys, QUEUE_NAMES.completions, 10)).toBe(3 + 5 + 1);
    expect(await queuePosition(redis, keys, QUEUE_NAMES.completions, 15)).toBe(3 + 5 + 1);
    expect(await queuePosition(redis, keys, QUEUE_NAMES.completions, 2_097_151)).toBe(3 + 5 + 4 + 1);
  });
});
