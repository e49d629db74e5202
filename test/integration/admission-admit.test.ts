// admitRequest and settleTokens against a real redis-server: GCRA pacing of rpm and tpm, refusals that reserve
// nothing, exactness across connections, token settlement, TTLs and hash slots of the keys, and the cost per request
// (one EVALSHA per tenant for the requests that arrive together).
import { afterAll, beforeAll, beforeEach, describe, expect, inject, it } from 'vitest';
import { Redis } from 'ioredis';
import { admitRequest, settleTokens, type AdmissionResult } from '../../src/admission/admit.ts';
import { oneSecondsWorth, type TenantLimits } from '../../src/admission/limits.ts';
import { fairSharePriority } from '../../src/admission/fair-share.ts';
import { createRedisKeys, type RedisKeys } from '../../src/queue/keys.ts';
import { startRedisServer, uniquePrefix, type RedisServer } from '../support/redis.ts';
import { waitFor } from '../support/wait.ts';

let redis: Redis;
let keys: RedisKeys;

beforeAll(() => {
  redis = new Redis(inject('redisUrl'));
});
afterAll(() => redis.disconnect());
beforeEach(() => {
  keys = createRedisKeys(uniquePrefix('admit'));
});

function limits(overrides: Partial<TenantLimits> = {}): TenantLimits {
  const rpm = overrides.rpm;
  const tpm = overrides.tpm;
  return {
    tenantId: 'acme',
    burst: rpm === undefined ? 1 : oneSecondsWorth(rpm),
    tokenBurst: tpm === undefined ? 1 : oneSecondsWorth(tpm),
    maxConcurrent: undefined,
    maxQueueWaitMs: 60_000,
    priority: 'normal',
    weight: 1,
    estimatedCompletionTokens: 100,
    ...overrides,
    rpm,
    tpm,
  };
}

/** A clock for bounds: a delay measured now is at most its nominal value and at least that minus the time elapsed. */
function stopwatch() {
  const start = Date.now();
  return () => Date.now() - start + 1;
}

function delayOf(result: AdmissionResult): number {
  if (result.decision !== 'delay') throw new Error(`expected a delay, got ${JSON.stringify(result)}`);
  return result.delayMs;
}

describe('admitRequest: request budget (rpm)', () => {
  it('admits the burst at once, then paces one request per emission interval (rpm 60: one a second)', async () => {
    const tenant = limits({ rpm: 60, burst: 3 });
    const elapsed = stopwatch();
    const results = [];
    for (let i = 0; i < 5; i++) results.push(await admitRequest(redis, keys, tenant, { tokens: 0, maxQueueWaitMs: 60_000 }));
    expect(results.slice(0, 3).map((r) => r.decision)).toEqual(['now', 'now', 'now']);
    const spent = elapsed();
    expect(delayOf(results[3]!)).toBeLessThanOrEqual(1_000);
    expect(delayOf(results[3]!)).toBeGreaterThanOrEqual(1_000 - spent);
    expect(delayOf(results[4]!)).toBeLessThanOrEqual(2_000);
    expect(delayOf(results[4]!)).toBeGreaterThanOrEqual(2_000 - spent);
  });

  it('refuses a request whose slot is beyond maxQueueWaitMs, with retry-after = slot - max wait, reserving nothing', async () => {
    const tenant = limits({ rpm: 1, burst: 1 });
    const elapsed = stopwatch();
    expect((await admitRequest(redis, keys, tenant, { tokens: 0, maxQueueWaitMs: 30_000 })).decision).toBe('now');
    const refused = await admitRequest(redis, keys, tenant, { tokens: 0, maxQueueWaitMs: 30_000 });
    if (refused.decision !== 'reject') throw new Error(`expected a refusal, got ${refused.decision}`);
    expect(refused.binding).toBe('requests');
    expect(refused.retryAfterMs).toBeLessThanOrEqual(30_000);
    expect(refused.retryAfterMs).toBeGreaterThanOrEqual(30_000 - elapsed());
    expect(refused.rateLimit.requests).toMatchObject({ limit: 1, remaining: 0 });
    // Had the refusal reserved the slot at +60 s, this one would be at +120 s.
    const next = delayOf(await admitRequest(redis, keys, tenant, { tokens: 0, maxQueueWaitMs: 90_000 }));
    expect(next).toBeLessThanOrEqual(60_000);
    expect(next).toBeGreaterThanOrEqual(60_000 - elapsed());
  });

  it('is exact under concurrency: 200 requests over 4 connections get exactly the burst now and the slots within the wait', async () => {
    const url = inject('redisUrl');
    const connections = Array.from({ length: 4 }, () => new Redis(url));
    try {
      const tenant = limits({ rpm: 1, burst: 3 });
      const results = await Promise.all(
        Array.from({ length: 200 }, (_, i) => admitRequest(connections[i % 4]!, keys, tenant, { tokens: 0, maxQueueWaitMs: 150_000 })),
      );
      const count = (decision: string) => results.filter((r) => r.decision === decision).length;
      expect({ now: count('now'), delay: count('delay'), reject: count('reject') }).toEqual({ now: 3, delay: 2, reject: 195 });
      const delays = results.filter((r) => r.decision === 'delay').map(delayOf).sort((a, b) => a - b);
      expect(delays[0]).toBeLessThanOrEqual(60_000);
      expect(delays[1]).toBeLessThanOrEqual(120_000);
      expect(delays[1]! - delays[0]!).toBeGreaterThan(59_000);
    } finally {
      for (const c of connections) c.disconnect();
    }
  });

  it("reports the minute's budget in the headers' terms: remaining falls per request, reset is when it is whole again", async () => {
    const tenant = limits({ rpm: 60 });
    const elapsed = stopwatch();
    const first = await admitRequest(redis, keys, tenant, { tokens: 0, maxQueueWaitMs: 60_000 });
    expect(first.rateLimit.requests).toMatchObject({ limit: 60, remaining: 59 });
    expect(first.rateLimit.requests!.resetMs).toBeLessThanOrEqual(1_000);
    const third = (await admitRequest(redis, keys, tenant, { tokens: 0, maxQueueWaitMs: 60_000 }), await admitRequest(redis, keys, tenant, { tokens: 0, maxQueueWaitMs: 60_000 }));
    expect(third.rateLimit.requests!.remaining).toBe(57);
    expect(third.rateLimit.requests!.resetMs).toBeLessThanOrEqual(3_000);
    expect(third.rateLimit.requests!.resetMs).toBeGreaterThanOrEqual(3_000 - elapsed());
    expect(third.rateLimit.tokens).toBeUndefined();
  });
});

describe('admitRequest: token budget (tpm)', () => {
  it('large prompts are limited by tokens, not requests: a 1,000-token request holds a 6,000 tpm budget for 10 s', async () => {
    const tenant = limits({ rpm: 6_000, tpm: 6_000 });
    const elapsed = stopwatch();
    const first = await admitRequest(redis, keys, tenant, { tokens: 1_000, maxQueueWaitMs: 60_000 });
    expect(first.decision).toBe('now');
    expect(first.rateLimit.tokens).toMatchObject({ limit: 6_000, remaining: 5_000 });
    const second = await admitRequest(redis, keys, tenant, { tokens: 1_000, maxQueueWaitMs: 60_000 });
    expect(delayOf(second)).toBeLessThanOrEqual(10_000);
    expect(delayOf(second)).toBeGreaterThanOrEqual(10_000 - elapsed());
    // Both budgets are charged at the request's start (+10 s): the request budget counts that stretch as spoken for.
    expect(second.rateLimit.requests!.resetMs).toBeGreaterThan(10_000 - elapsed());
    const refused = await admitRequest(redis, keys, tenant, { tokens: 1_000, maxQueueWaitMs: 5_000 });
    expect(refused).toMatchObject({ decision: 'reject', binding: 'tokens' });
  });

  it('a request within the token burst passes at once while the budget has room', async () => {
    const tenant = limits({ tpm: 60_000, tokenBurst: 1_000 });
    const results = [];
    for (let i = 0; i < 3; i++) results.push(await admitRequest(redis, keys, tenant, { tokens: 300, maxQueueWaitMs: 60_000 }));
    expect(results.map((r) => r.decision)).toEqual(['now', 'now', 'now']);
    expect((await admitRequest(redis, keys, tenant, { tokens: 300, maxQueueWaitMs: 60_000 })).decision).toBe('delay');
  });

  it('settleTokens refunds an over-estimate, charges an under-estimate, and never moves the budget before now', async () => {
    const tenant = limits({ tpm: 6_000 });
    const elapsed = stopwatch();
    await admitRequest(redis, keys, tenant, { tokens: 1_000, maxQueueWaitMs: 60_000 });
    const refunded = await settleTokens(redis, keys, tenant, { estimated: 1_000, actual: 200 });
    expect(refunded!.resetMs).toBeLessThanOrEqual(2_000);
    expect(refunded!.resetMs).toBeGreaterThanOrEqual(2_000 - elapsed());
    const charged = await settleTokens(redis, keys, tenant, { estimated: 0, actual: 300 });
    expect(charged!.resetMs).toBeLessThanOrEqual(5_000);
    expect(charged!.resetMs).toBeGreaterThanOrEqual(5_000 - elapsed());
    // A refund larger than what is outstanding empties the budget; it does not bank credit for later.
    const emptied = await settleTokens(redis, keys, tenant, { estimated: 100_000, actual: 0 });
    expect(emptied).toEqual({ limit: 6_000, remaining: 6_000, resetMs: 0 });
    expect(await redis.exists(keys.tenantKeys('acme').tokens)).toBe(0);
    const after = await admitRequest(redis, keys, tenant, { tokens: 1_000, maxQueueWaitMs: 60_000 });
    expect(after.decision).toBe('now');
    expect(after.rateLimit.tokens!.remaining).toBe(5_000);
  });

  it('settleTokens costs nothing for a tenant without tpm or an exact estimate', async () => {
    const offline = new Redis({ lazyConnect: true, enableOfflineQueue: false });
    expect(await settleTokens(offline, keys, limits({ rpm: 60 }), { estimated: 10, actual: 20 })).toBeUndefined();
    expect(await settleTokens(offline, keys, limits({ tpm: 60 }), { estimated: 10, actual: 10 })).toBeUndefined();
    offline.disconnect();
  });
});

describe('admitRequest: state in Redis', () => {
  it("writes only keys in the tenant's own hash slot, each with a TTL", async () => {
    const tenant = limits({ rpm: 60, tpm: 6_000 });
    await admitRequest(redis, keys, tenant, { tokens: 500, maxQueueWaitMs: 60_000, fairShare: true });
    const tenantKeys = keys.tenantKeys('acme');
    const names = [tenantKeys.requests, tenantKeys.tokens, tenantKeys.fairShare];
    const tags = names.map((name) => /\{[^}]*\}/.exec(name)?.[0]);
    expect(new Set(tags).size).toBe(1);
    expect(tags[0]).toMatch(/:tenant:acme\}$/);
    for (const name of names) {
      const ttl = await redis.pttl(name);
      expect(ttl, name).toBeGreaterThan(0);
      expect(ttl, name).toBeLessThanOrEqual(5_002);
    }
  });

  it('a tenant without rpm or tpm is admitted without any Redis call', async () => {
    // Never connected and no offline queue: any command would reject.
    const offline = new Redis({ lazyConnect: true, enableOfflineQueue: false });
    try {
      const result = await admitRequest(offline, keys, limits(), { tokens: 5_000, maxQueueWaitMs: 0 });
      expect(result).toEqual({ decision: 'now', priority: fairSharePriority('normal', undefined), rateLimit: {} });
      await expect(admitRequest(offline, keys, limits({ rpm: 60 }), { tokens: 1, maxQueueWaitMs: 0 })).rejects.toThrow();
    } finally {
      offline.disconnect();
    }
  });

  it('a refused request advances neither budget nor the fair-share clock', async () => {
    const tenant = limits({ rpm: 1 });
    await admitRequest(redis, keys, tenant, { tokens: 0, maxQueueWaitMs: 0, fairShare: true });
    const before = await redis.mget(keys.tenantKeys('acme').requests, keys.tenantKeys('acme').fairShare);
    expect((await admitRequest(redis, keys, tenant, { tokens: 0, maxQueueWaitMs: 0, fairShare: true })).decision).toBe('reject');
    expect(await redis.mget(keys.tenantKeys('acme').requests, keys.tenantKeys('acme').fairShare)).toEqual(before);
  });

  it("fair share: each job of a tenant moves its next priority back; another tenant's first job is at the front", async () => {
    const flood: number[] = [];
    for (let i = 0; i < 50; i++) flood.push((await admitRequest(redis, keys, limits(), { tokens: 0, maxQueueWaitMs: 0, fairShare: { unitMs: 1_000 } })).priority);
    expect([...flood].sort((a, b) => a - b)).toEqual(flood);
    expect(new Set(flood).size).toBe(50);
    const other = await admitRequest(redis, keys, limits({ tenantId: 'other' }), { tokens: 0, maxQueueWaitMs: 0, fairShare: { unitMs: 1_000 } });
    expect(other.priority).toBe(flood[0]);
  });
});

describe('admitRequest: cost', () => {
  let server: RedisServer;
  let own: Redis;
  let monitor: Awaited<ReturnType<Redis['monitor']>>;
  /** Commands sent by clients (not those a script runs), as MONITOR reports them. */
  let seen: string[];
  beforeAll(async () => {
    // A server of this file's own: MONITOR then sees only this test's commands.
    server = await startRedisServer();
    own = new Redis(server.url);
    monitor = await new Redis(server.url).monitor();
    monitor.on('monitor', (_time: string, args: string[], source: string) => {
      if (!source.startsWith('lua')) seen.push(args[0]!.toLowerCase());
    });
  });
  afterAll(async () => {
    own.disconnect();
    monitor.disconnect();
    await server.close();
  });

  /** The client commands `run` sends: a marker ECHO ends the capture, so nothing still in flight is missed. */
  async function commandsOf(run: () => Promise<void>): Promise<Record<string, number>> {
    seen = [];
    await run();
    await own.echo('end-of-capture');
    await waitFor(() => seen.includes('echo'), { what: 'the marker command in MONITOR' });
    const counts: Record<string, number> = {};
    for (const name of seen.slice(0, seen.indexOf('echo'))) counts[name] = (counts[name] ?? 0) + 1;
    return counts;
  }

  it('is exactly one EVALSHA per request with budgets and fair share, and zero without them', async () => {
    const tenant = limits({ rpm: 60_000, tpm: 10_000_000 });
    // The first call on a server that lacks the script: EVALSHA answers NOSCRIPT (MONITOR does not list a refused
    // command), ioredis then sends the EVAL once; the server keeps the script from then on.
    const first = await commandsOf(async () => void (await admitRequest(own, keys, tenant, { tokens: 10, maxQueueWaitMs: 60_000, fairShare: true })));
    expect(first).toEqual({ eval: 1 });
    const limited = await commandsOf(async () => {
      for (let i = 0; i < 50; i++) await admitRequest(own, keys, tenant, { tokens: 10, maxQueueWaitMs: 60_000, fairShare: true });
    });
    expect(limited).toEqual({ evalsha: 50 });
    const unlimited = await commandsOf(async () => {
      for (let i = 0; i < 50; i++) await admitRequest(own, keys, limits(), { tokens: 10, maxQueueWaitMs: 60_000 });
    });
    expect(unlimited).toEqual({});
  });

  it('requests of one tenant that arrive together share one EVALSHA, each decided as if sent alone after the one before', async () => {
    const tenant = limits({ rpm: 60, burst: 5 });
    // A warm-up call (captured on its own) loads the script, so the counts below are of EVALSHA alone.
    await commandsOf(async () => void (await admitRequest(own, keys, limits({ tenantId: 'warm', rpm: 60 }), { tokens: 0, maxQueueWaitMs: 0 })));
    let together: AdmissionResult[] = [];
    const counts = await commandsOf(async () => {
      together = await Promise.all(Array.from({ length: 20 }, () => admitRequest(own, keys, tenant, { tokens: 0, maxQueueWaitMs: 10_500 })));
    });
    expect(counts).toEqual({ evalsha: 1 });
    // The burst at once, then one a second up to the 10.5 s wait, the rest refused: the same as twenty calls in a row.
    const alone: AdmissionResult[] = [];
    const other = limits({ tenantId: 'alone', rpm: 60, burst: 5 });
    for (let i = 0; i < 20; i++) alone.push(await admitRequest(own, keys, other, { tokens: 0, maxQueueWaitMs: 10_500 }));
    expect(together.map((r) => r.decision)).toEqual(alone.map((r) => r.decision));
    expect(together.map((r) => r.decision)).toEqual([...Array(5).fill('now'), ...Array(10).fill('delay'), ...Array(5).fill('reject')]);
    const delays = together.filter((r) => r.decision === 'delay').map(delayOf);
    // In arrival order, each one emission interval after the one before.
    for (let i = 1; i < delays.length; i++) expect(delays[i]! - delays[i - 1]!).toBeGreaterThanOrEqual(999);
    expect(together.map((r) => r.rateLimit.requests?.remaining)).toEqual(alone.map((r) => r.rateLimit.requests?.remaining));
  });

  it('two tenants arriving together are two calls, and neither budget moves the other', async () => {
    const a = limits({ tenantId: 'a', rpm: 60, burst: 2 });
    const b = limits({ tenantId: 'b', rpm: 60, burst: 2 });
    await commandsOf(async () => void (await admitRequest(own, keys, limits({ tenantId: 'warm', rpm: 60 }), { tokens: 0, maxQueueWaitMs: 0 })));
    let results: AdmissionResult[] = [];
    const counts = await commandsOf(async () => {
      results = await Promise.all([a, b, a, b, a, b].map((t) => admitRequest(own, keys, t, { tokens: 0, maxQueueWaitMs: 0 })));
    });
    expect(counts).toEqual({ evalsha: 2 });
    expect(results.map((r) => r.decision)).toEqual(['now', 'now', 'now', 'now', 'reject', 'reject']);
  });
});
