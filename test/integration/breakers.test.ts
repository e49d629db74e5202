// Pool-wide circuit breakers: three "workers" in this process (each its own breakers on its own Redis connections),
// one real Redis, real mock upstreams. A breaker opened by one worker's failures is open in all; nobody calls the
// deployment until the reset; then exactly one probe goes out for the pool, and its verdict holds for everyone.
import { afterEach, describe, expect, inject, it } from 'vitest';
import { startMockUpstream, type MockUpstream } from '../../src/mock-upstream/index.ts';
import { uniquePrefix } from '../support/redis.ts';
import { waitFor } from '../support/wait.ts';
import { startPoolMember, type PoolMember } from './worker-harness.ts';

const opened: Array<{ close(): Promise<void> }> = [];
afterEach(async () => {
  for (const item of opened.splice(0).reverse()) await item.close();
});

const BREAKER = { failureThreshold: 3, windowMs: 60_000, resetTimeoutMs: 1_500 };
const FAIL = { 'x-mock-status': '500' };

interface Pool {
  a: MockUpstream;
  b: MockUpstream;
  members: PoolMember[];
  prefix: string;
  join(): Promise<PoolMember>;
}

/** Providers a (mock A) and b (mock B); models `dead` → a, `other` → b, `both` → a then b. One attempt per call. */
async function pool(size = 3, breaker: Record<string, unknown> = BREAKER): Promise<Pool> {
  const [a, b] = await Promise.all([startMockUpstream(), startMockUpstream()]);
  opened.push(a, b);
  const prefix = uniquePrefix('breakers');
  const config = {
    worker: { maxAttempts: 1 },
    providers: [
      { id: 'a', type: 'openai', baseUrl: a.url, circuitBreaker: breaker },
      { id: 'b', type: 'openai', baseUrl: b.url, circuitBreaker: breaker },
    ],
    models: [
      { name: 'dead', route: [{ provider: 'a', model: 'model-a' }] },
      { name: 'other', route: [{ provider: 'b', model: 'model-b' }] },
      { name: 'both', route: [{ provider: 'a', model: 'model-a' }, { provider: 'b', model: 'model-b' }] },
    ],
  };
  const join = async () => {
    const member = await startPoolMember(inject('redisUrl'), prefix, a.url, config);
    opened.push(member);
    return member;
  };
  const members = [];
  for (let i = 0; i < size; i++) members.push(await join());
  return { a, b, members, prefix, join };
}

const states = (members: PoolMember[], provider = 'a', model = 'model-a') => members.map((m) => m.breakers.state(provider, model));

async function openA(p: Pool): Promise<void> {
  const [first] = p.members as [PoolMember];
  for (let i = 0; i < BREAKER.failureThreshold; i++) expect(await first.call('dead', FAIL)).toMatchObject({ kind: 'error', status: 502 });
}

describe('a deployment that keeps failing', () => {
  it("after failureThreshold failures in one worker, the breaker is open in every worker, and no worker calls it until the reset", async () => {
    const p = await pool();
    const [first, second, third] = p.members as [PoolMember, PoolMember, PoolMember];
    expect(await first.call('dead', FAIL)).toMatchObject({ status: 502 });
    expect(await first.call('dead', FAIL)).toMatchObject({ status: 502 });
    expect(states(p.members)).toEqual(['closed', 'closed', 'closed']);
    expect(await first.call('dead', FAIL)).toMatchObject({ status: 502 });
    await waitFor(() => states(p.members).every((s) => s === 'open'), { what: 'the breaker to be open in every worker' });
    expect(p.a.stats().received).toBe(3);
    // Healthy requests now: none of them reaches the deployment while its breaker is open.
    for (const member of [first, second, third, second, third]) {
      const result = await member.call('dead');
      expect(result).toMatchObject({ kind: 'error', status: 503, error: { code: 'upstream_unavailable' } });
      expect(Number((result as { headers: Record<string, string> }).headers['retry-after'])).toBeGreaterThanOrEqual(1);
    }
    expect(p.a.stats().received).toBe(3);
    // The two others learnt it from the pool, not from failures of their own.
    for (const member of [second, third]) expect(member.logs).toContainEqual(expect.objectContaining({ msg: 'circuit breaker opened', source: 'pool', deployment: 'a|model-a' }));
  });

  it('failures spread over workers count per worker: below the threshold in each, nothing opens', async () => {
    const p = await pool();
    for (const member of p.members) for (let i = 0; i < BREAKER.failureThreshold - 1; i++) await member.call('dead', FAIL);
    expect(states(p.members)).toEqual(['closed', 'closed', 'closed']);
    expect(p.a.stats().received).toBe(3 * (BREAKER.failureThreshold - 1));
  });

  it("a client's 400s never open a breaker, however many", async () => {
    const p = await pool(1);
    for (let i = 0; i < 2 * BREAKER.failureThreshold; i++) expect(await p.members[0]!.call('dead', { 'x-mock-status': '400' })).toMatchObject({ status: 400 });
    expect(states(p.members)).toEqual(['closed']);
    expect(p.a.stats().received).toBe(2 * BREAKER.failureThreshold);
  });

  it('a target whose breaker is open is skipped at once: the next target answers, the open one is not called', async () => {
    const p = await pool(2);
    await openA(p);
    await waitFor(() => states(p.members).every((s) => s === 'open'), { what: 'the breaker to be open in both workers' });
    const result = await p.members[1]!.call('both');
    expect(result).toMatchObject({ kind: 'body', status: 200 });
    expect(JSON.parse((result as { body: string }).body)).toMatchObject({ model: 'model-b' });
    expect([p.a.stats().received, p.b.stats().received]).toEqual([3, 1]);
  });

  it('with every target open, the answer is 503 with the Retry-After of the earliest reset', async () => {
    const p = await pool(1, { ...BREAKER, resetTimeoutMs: 4_000 });
    await openA(p);
    for (let i = 0; i < BREAKER.failureThreshold; i++) await p.members[0]!.call('other', FAIL);
    const result = await p.members[0]!.call('both');
    expect(result).toMatchObject({ kind: 'error', status: 503, error: { type: 'server_error', code: 'upstream_unavailable' } });
    const seconds = Number((result as { headers: Record<string, string> }).headers['retry-after']);
    expect(seconds).toBeGreaterThanOrEqual(1);
    expect(seconds).toBeLessThanOrEqual(4);
    expect([p.a.stats().received, p.b.stats().received]).toEqual([3, 3]);
  });

  it('a worker that starts while a breaker is open knows it at once, without a nudge or a call', async () => {
    const p = await pool(1, { ...BREAKER, resetTimeoutMs: 10_000 });
    await openA(p);
    const late = await p.join();
    expect(late.breakers.state('a', 'model-a')).toBe('open');
    expect(await late.call('dead')).toMatchObject({ status: 503 });
    expect(p.a.stats().received).toBe(3);
  });
});

describe('recovery', () => {
  it('after the reset exactly one probe goes out for the whole pool; its success closes the breaker in every worker', async () => {
    const p = await pool();
    const [first, second, third] = p.members as [PoolMember, PoolMember, PoolMember];
    await openA(p);
    await waitFor(() => states(p.members).every((s) => s === 'half-open'), { timeoutMs: 10_000, what: 'every worker to reach half-open after the reset' });
    // The probe is held at the mock until the test lets it answer.
    const probe = second.call('dead', { 'x-mock-gate': 'probe' });
    await waitFor(() => p.a.stats().inFlight === 1, { what: 'the probe to reach the deployment' });
    for (const member of [first, third, first, third, second]) expect(await member.call('dead')).toMatchObject({ status: 503, error: { code: 'upstream_unavailable' } });
    expect(p.a.stats().received).toBe(4);
    p.a.openGate('probe');
    expect(await probe).toMatchObject({ kind: 'body', status: 200 });
    await waitFor(() => states(p.members).every((s) => s === 'closed'), { what: 'the breaker to close in every worker' });
    for (const member of [first, third]) expect(await member.call('dead')).toMatchObject({ kind: 'body', status: 200 });
    expect(p.a.stats().received).toBe(6);
  });

  it('a probe cancelled by its client closes nothing: the breaker re-opens for the pool and another probe follows', async () => {
    const p = await pool();
    const [first, second] = p.members as [PoolMember, PoolMember, PoolMember];
    await openA(p);
    await waitFor(() => states(p.members).every((s) => s === 'half-open'), { timeoutMs: 10_000, what: 'every worker to reach half-open after the reset' });
    const client = new AbortController();
    const probe = first.call('dead', { 'x-mock-gate': 'never' }, client.signal);
    await waitFor(() => p.a.stats().inFlight === 1, { what: 'the probe to reach the deployment' });
    client.abort(new Error('client gone'));
    await expect(probe).rejects.toThrow('cancelled');
    await waitFor(() => states(p.members).every((s) => s === 'open'), { what: 'the breaker to re-open in every worker' });
    // Re-opened briefly only: a later probe succeeds and closes it everywhere.
    await waitFor(() => states(p.members).every((s) => s === 'half-open'), { timeoutMs: 10_000, what: 'half-open again' });
    expect(await second.call('dead')).toMatchObject({ kind: 'body', status: 200 });
    await waitFor(() => states(p.members).every((s) => s === 'closed'), { what: 'the breaker to close in every worker' });
  });

  it('a failed probe re-opens the breaker for the whole pool', async () => {
    const p = await pool();
    const [first, second, third] = p.members as [PoolMember, PoolMember, PoolMember];
    await openA(p);
    await waitFor(() => states(p.members).every((s) => s === 'half-open'), { timeoutMs: 10_000, what: 'every worker to reach half-open after the reset' });
    expect(await third.call('dead', FAIL)).toMatchObject({ status: 502 });
    await waitFor(() => states(p.members).every((s) => s === 'open'), { what: 'the breaker to re-open in every worker' });
    for (const member of [first, second]) expect(await member.call('dead')).toMatchObject({ status: 503 });
    expect(p.a.stats().received).toBe(4);
  });
});
