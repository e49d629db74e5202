// maxConcurrent leases on a real redis-server: many connections contend and never hold more than max; a lease that
// is not renewed frees itself; a SIGKILLed holder's slots come back within the TTL; renewal never revives a lost lease.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, beforeEach, describe, expect, inject, it } from 'vitest';
import { Redis } from 'ioredis';
import { acquireLease, holdLease, releaseLease, renewLease } from '../../src/admission/leases.ts';
import { createRedisKeys, type RedisKeys } from '../../src/queue/keys.ts';
import { uniquePrefix } from '../support/redis.ts';
import { waitFor } from '../support/wait.ts';

let redis: Redis;
let keys: RedisKeys;
let prefix: string;

beforeAll(() => {
  redis = new Redis(inject('redisUrl'));
});
afterAll(() => redis.disconnect());
beforeEach(() => {
  prefix = uniquePrefix('lease');
  keys = createRedisKeys(prefix);
});

describe('concurrency leases', () => {
  it('grants exactly max slots to 100 jobs contending over 4 connections', async () => {
    const connections = Array.from({ length: 4 }, () => new Redis(inject('redisUrl')));
    try {
      const answers = await Promise.all(Array.from({ length: 100 }, (_, i) => acquireLease(connections[i % 4]!, keys, 'acme', `job-${i}`, 5, 30_000)));
      expect(answers.filter((a) => a.granted)).toHaveLength(5);
      for (const answer of answers) if (!answer.granted) expect(answer.retryInMs).toBeLessThanOrEqual(1_000);
      expect(await redis.zcard(keys.tenantKeys('acme').leases)).toBe(5);
    } finally {
      for (const c of connections) c.disconnect();
    }
  });

  it('never has more than max jobs running while 200 jobs take, use and give back slots from 8 connections', async () => {
    const connections = Array.from({ length: 8 }, () => new Redis(inject('redisUrl')));
    let running = 0;
    let peak = 0;
    let done = 0;
    const runJob = async (connection: Redis, jobId: string) => {
      for (;;) {
        const answer = await acquireLease(connection, keys, 'acme', jobId, 3, 30_000, 5);
        if (answer.granted) break;
        // Backing off as a worker would (BullMQ delay), not synchronising the test.
        await new Promise((resolve) => setTimeout(resolve, answer.retryInMs));
      }
      running++;
      peak = Math.max(peak, running);
      await new Promise((resolve) => setImmediate(resolve));
      running--;
      await releaseLease(connection, keys, 'acme', jobId);
      done++;
    };
    try {
      await Promise.all(Array.from({ length: 8 }, async (_, w) => {
        for (let j = 0; j < 25; j++) await runJob(connections[w]!, `job-${w}-${j}`);
      }));
      expect(done).toBe(200);
      expect(peak).toBeLessThanOrEqual(3);
      expect(peak).toBeGreaterThan(1);
    } finally {
      for (const c of connections) c.disconnect();
    }
  });

  it('acquiring again for a job that holds a slot keeps its one slot; release gives it back once', async () => {
    expect(await acquireLease(redis, keys, 'acme', 'a', 1, 30_000)).toEqual({ granted: true });
    expect(await acquireLease(redis, keys, 'acme', 'a', 1, 30_000)).toEqual({ granted: true });
    expect(await redis.zcard(keys.tenantKeys('acme').leases)).toBe(1);
    expect(await releaseLease(redis, keys, 'acme', 'a')).toBe(true);
    expect(await releaseLease(redis, keys, 'acme', 'a')).toBe(false);
    expect(await acquireLease(redis, keys, 'acme', 'b', 1, 30_000)).toEqual({ granted: true });
  });

  it('the leases key carries a TTL that follows its latest lease', async () => {
    await acquireLease(redis, keys, 'acme', 'a', 2, 5_000);
    await acquireLease(redis, keys, 'acme', 'b', 2, 20_000);
    const ttl = await redis.pttl(keys.tenantKeys('acme').leases);
    expect(ttl).toBeGreaterThan(5_000);
    expect(ttl).toBeLessThanOrEqual(20_001);
  });

  it('a lease that is not renewed frees its slot by itself, and renewing it afterwards does not revive it', async () => {
    // A long-lived lease beside it keeps the key itself alive: only the purge of expired leases can free the slot.
    expect(await acquireLease(redis, keys, 'acme', 'long', 2, 60_000)).toEqual({ granted: true });
    expect(await acquireLease(redis, keys, 'acme', 'stale', 2, 200)).toEqual({ granted: true });
    const refused = await acquireLease(redis, keys, 'acme', 'next', 2, 30_000);
    expect(refused.granted).toBe(false);
    if (!refused.granted) expect(refused.retryInMs).toBeLessThanOrEqual(200);
    await waitFor(async () => (await acquireLease(redis, keys, 'acme', 'next', 2, 30_000)).granted, { what: 'the stale lease to expire' });
    expect(await renewLease(redis, keys, 'acme', 'stale', 30_000)).toBe(false);
    expect((await redis.zrange(keys.tenantKeys('acme').leases, 0, -1)).sort()).toEqual(['long', 'next']);
  });

  it('renewing a live lease extends it', async () => {
    await acquireLease(redis, keys, 'acme', 'a', 1, 1_000);
    const before = Number(await redis.zscore(keys.tenantKeys('acme').leases, 'a'));
    expect(await renewLease(redis, keys, 'acme', 'a', 60_000)).toBe(true);
    expect(Number(await redis.zscore(keys.tenantKeys('acme').leases, 'a'))).toBeGreaterThan(before + 50_000);
  });

  it("a SIGKILLed holder's slots come back by themselves when their leases expire, while a live holder keeps its own", async () => {
    const leasesModule = new URL('../../src/admission/leases.ts', import.meta.url).href;
    const keysModule = new URL('../../src/queue/keys.ts', import.meta.url).href;
    // A holder process: takes 2 of 3 slots, renews them (holdLease) and prints "held"; it dies by SIGKILL only.
    const child = spawn(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `import { Redis } from 'ioredis';
         import { acquireLease, holdLease } from ${JSON.stringify(leasesModule)};
         import { createRedisKeys } from ${JSON.stringify(keysModule)};
         const redis = new Redis(${JSON.stringify(inject('redisUrl'))});
         const keys = createRedisKeys(${JSON.stringify(prefix)});
         for (const id of ['child-1', 'child-2']) {
           const answer = await acquireLease(redis, keys, 'acme', id, 3, 1500);
           if (!answer.granted) process.exit(3);
           holdLease(redis, keys, 'acme', id, 1500);
         }
         console.log('held');
         setInterval(() => undefined, 1000);`,
      ],
      { cwd: fileURLToPath(new URL('../..', import.meta.url)), stdio: ['ignore', 'pipe', 'inherit'] },
    );
    const exited = new Promise((resolve) => child.once('exit', resolve));
    try {
      let output = '';
      child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
      await waitFor(() => output.includes('held'), { what: 'the child to hold its leases' });
      expect(await acquireLease(redis, keys, 'acme', 'parent-1', 3, 3_000)).toEqual({ granted: true });
      const live = holdLease(redis, keys, 'acme', 'parent-1', 3_000);
      expect((await acquireLease(redis, keys, 'acme', 'parent-2', 3, 3_000)).granted).toBe(false);
      // The child renews: its leases outlive their first TTL.
      const firstExpiry = Number(await redis.zscore(keys.tenantKeys('acme').leases, 'child-1'));
      await waitFor(async () => Number(await redis.zscore(keys.tenantKeys('acme').leases, 'child-1')) > firstExpiry, { what: 'a renewal by the child' });

      child.kill('SIGKILL');
      await exited;
      await waitFor(async () => (await acquireLease(redis, keys, 'acme', 'parent-2', 3, 3_000)).granted, { what: "the killed child's slots" });
      // The child's two leases were renewed apart: the second may expire a moment after the first.
      await waitFor(async () => (await acquireLease(redis, keys, 'acme', 'parent-3', 3, 3_000)).granted, { what: "the killed child's second slot" });
      // The parent's own renewed lease survived all along; three slots, three holders.
      expect((await redis.zrange(keys.tenantKeys('acme').leases, 0, -1)).sort()).toEqual(['parent-1', 'parent-2', 'parent-3']);
      expect(live.held).toBe(true);
      await live.release();
    } finally {
      child.kill('SIGKILL');
    }
  });
});
