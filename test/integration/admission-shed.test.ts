// Load-shedding inputs on a real redis-server and a real BullMQ queue: workers' drain meters add up in per-second
// buckets with TTLs into the pool's throughput and capacity (its slots ÷ the mean job time), and a new job's place in
// line counts only the jobs BullMQ would run before it.
import { afterEach, beforeEach, describe, expect, inject, it } from 'vitest';
import { Redis } from 'ioredis';
import { DelayedError, Queue } from 'bullmq';
import { createDrainMeter, DRAIN_WINDOW_SECONDS, queuePosition, readDrainRates, shouldShed, type DrainMeter } from '../../src/admission/shed.ts';
import { createRedisKeys, QUEUE_NAMES, type RedisKeys } from '../../src/queue/keys.ts';
import { uniquePrefix } from '../support/redis.ts';

let redis: Redis;
let keys: RedisKeys;

beforeEach(() => {
  redis = new Redis(inject('redisUrl'), { maxRetriesPerRequest: null });
  keys = createRedisKeys(uniquePrefix('shed'));
});
afterEach(() => redis.disconnect());

describe('drain rates', () => {
  /** A clock the test moves by hand: job times and offered slot time come out exact. */
  function manualClock(start = Math.floor(Date.now() / 1000) * 1000) {
    let now = start;
    return { now: () => now, advance: (ms: number) => void (now += ms) };
  }
  /** Runs one job per meter given, all at once, each holding its slot `ms` on the manual clock, then ending with `end`. */
  async function runJobs(meters: DrainMeter[], clock: ReturnType<typeof manualClock>, ms: number, end: () => Promise<void> = async () => undefined) {
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    const running = meters.map((meter) =>
      meter
        .track(async (_job: unknown, _token: unknown, _signal: unknown) => {
          await held;
          await end();
        })(undefined, undefined, undefined)
        .catch(() => undefined),
    );
    clock.advance(ms);
    release();
    await Promise.all(running);
  }
  const read = (clock: ReturnType<typeof manualClock>) =>
    // A flush at a second's end lands in the next second's bucket: read once that one is whole too.
    readDrainRates(redis, keys, QUEUE_NAMES.completions, clock.now() + 1_000);

  it("adds up every worker's jobs over the window, in buckets that expire; a saturated pool's capacity is its throughput", async () => {
    const clock = manualClock();
    const workerA = createDrainMeter(redis, keys, QUEUE_NAMES.completions, 2, { flushMs: 60_000, now: clock.now });
    const workerB = createDrainMeter(redis, keys, QUEUE_NAMES.completions, 2, { flushMs: 60_000, now: clock.now });
    // Every slot of both workers busy all the time with 1 s jobs: 4 slots, 4 jobs a second.
    for (let second = 0; second < DRAIN_WINDOW_SECONDS; second++) {
      await runJobs([workerA, workerA, workerB, workerB], clock, 1_000);
      await Promise.all([workerA.flush(), workerB.flush()]);
    }
    await Promise.all([workerA.close(), workerB.close()]);
    const rates = await read(clock);
    expect(rates.throughput).toBe(4);
    expect(rates.capacity).toBeCloseTo(4, 10);
    const written = await redis.keys(`${keys.bullPrefix}:${QUEUE_NAMES.completions}:drain:*`);
    expect(written.length).toBeGreaterThanOrEqual(DRAIN_WINDOW_SECONDS);
    for (const key of written) expect(await redis.ttl(key)).toBeGreaterThan(DRAIN_WINDOW_SECONDS);
  });

  it('a trickle on an idle pool measures what the pool could do, so the spike after it is not shed', async () => {
    const clock = manualClock();
    const meter = createDrainMeter(redis, keys, QUEUE_NAMES.completions, 8, { flushMs: 60_000, now: clock.now });
    // One 40 ms job a second on 8 slots: 1 job/s done, while 8 slots at 40 ms a job could do 200.
    for (let second = 0; second < DRAIN_WINDOW_SECONDS; second++) {
      await runJobs([meter], clock, 40);
      clock.advance(960);
      await meter.flush();
    }
    await meter.close();
    const rates = await read(clock);
    expect(rates.throughput).toBe(1);
    expect(rates.capacity).toBeCloseTo(200, 6);
    // 300 requests at once, 60 s queue wait: the quiet seconds' pace would shed most of them; the capacity sheds none.
    expect(shouldShed(300, rates.throughput, 60_000)).toBe(true);
    expect(shouldShed(300, rates.capacity, 60_000)).toBe(false);
  });

  it('hands the processor its abort signal: BullMQ passes one only to a processor that declares three parameters', async () => {
    const meter = createDrainMeter(redis, keys, QUEUE_NAMES.completions, 1, { flushMs: 60_000 });
    const controller = new AbortController();
    const tracked = meter.track(async (job: string, token: string, signal: AbortSignal) => [job, token, signal] as const);
    expect(tracked.length).toBe(3);
    expect(await tracked('job', 'token', controller.signal)).toEqual(['job', 'token', controller.signal]);
    await meter.close();
  });

  it('counts a failed job with its time, and not a job BullMQ moved aside (delayed for a tenant slot)', async () => {
    const clock = manualClock();
    const meter = createDrainMeter(redis, keys, QUEUE_NAMES.completions, 1, { flushMs: 60_000, now: clock.now });
    await runJobs([meter], clock, 300, async () => {
      throw new DelayedError();
    });
    await runJobs([meter], clock, 700, async () => {
      throw new Error('upstream failed');
    });
    await meter.close();
    const rates = await read(clock);
    expect(rates.throughput).toBe(1 / DRAIN_WINDOW_SECONDS);
    // One slot, one job of 700 ms.
    expect(rates.capacity).toBeCloseTo(1000 / 700, 10);
  });

  it('nothing recorded: no drain, and then nothing is shed however long the line', async () => {
    const rates = await readDrainRates(redis, keys, QUEUE_NAMES.completions);
    expect(rates).toEqual({ throughput: 0, capacity: 0 });
    expect(shouldShed(100_000, rates.capacity, 1_000)).toBe(false);
  });

  it('a pool that started a second ago counts all its slots, not their share of the window', async () => {
    const clock = manualClock();
    const meter = createDrainMeter(redis, keys, QUEUE_NAMES.completions, 4, { flushMs: 60_000, now: clock.now });
    await runJobs([meter, meter, meter, meter], clock, 500);
    await runJobs([meter, meter, meter, meter], clock, 500);
    await meter.close();
    const rates = await read(clock);
    // 8 jobs in the window's ten seconds; 4 slots at 500 ms a job.
    expect(rates.throughput).toBe(8 / DRAIN_WINDOW_SECONDS);
    expect(rates.capacity).toBeCloseTo(8, 10);
  });

  it('idle workers write the slots they offer, but measure no capacity until a job ends', async () => {
    const clock = manualClock();
    const meter = createDrainMeter(redis, keys, QUEUE_NAMES.completions, 4, { flushMs: 60_000, now: clock.now });
    clock.advance(1_000);
    await meter.close();
    expect(await read(clock)).toEqual({ throughput: 0, capacity: 0 });
    expect(await redis.keys(`${keys.bullPrefix}:${QUEUE_NAMES.completions}:drain:*`)).toHaveLength(1);
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
