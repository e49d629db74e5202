// Active health checks feeding the pool-wide breakers: three "workers" in this process sharing one real Redis. One
// worker at a time probes (a lease, taken over when its holder goes); a dead provider is opened in every worker before
// a user request fails on it; once it answers again, the half-open probe closes it.
import { afterEach, describe, expect, inject, it } from 'vitest';
import { startMockUpstream, type MockUpstream } from '../../src/mock-upstream/index.ts';
import { uniquePrefix } from '../support/redis.ts';
import { waitFor } from '../support/wait.ts';
import { startPoolMember, type PoolMember } from './worker-harness.ts';

const opened: Array<{ close(): Promise<void> }> = [];
afterEach(async () => {
  for (const item of opened.splice(0).reverse()) await item.close();
});

async function pool(size: number, resetTimeoutMs = 1_000): Promise<{ mock: MockUpstream; members: PoolMember[] }> {
  const mock = await startMockUpstream();
  opened.push(mock);
  const prefix = uniquePrefix('health');
  const config = {
    worker: { maxAttempts: 1 },
    providers: [{ id: 'a', type: 'openai', baseUrl: mock.url, circuitBreaker: { failureThreshold: 5, resetTimeoutMs }, healthCheck: { intervalMs: 200 } }],
    models: [
      { name: 'chat', route: [{ provider: 'a', model: 'model-chat' }] },
      { name: 'mini', route: [{ provider: 'a', model: 'model-mini' }] },
    ],
  };
  const members: PoolMember[] = [];
  for (let i = 0; i < size; i++) {
    const member = await startPoolMember(inject('redisUrl'), prefix, mock.url, config);
    opened.push(member);
    members.push(member);
  }
  return { mock, members };
}

const allOpen = (members: PoolMember[]) => members.every((m) => m.breakers.state('a', 'model-chat') === 'open' && m.breakers.state('a', 'model-mini') === 'open');

describe('health checks', () => {
  it("a provider failing its probe has every deployment's breaker opened in every worker, before any user request reaches it", async () => {
    const { mock, members } = await pool(3);
    mock.setOutage({ status: 503 });
    await waitFor(() => allOpen(members), { what: "the provider's breakers to open in every worker" });
    expect(mock.stats().received).toBe(0);
    for (const member of members) expect(await member.call('chat')).toMatchObject({ kind: 'error', status: 503, error: { code: 'upstream_unavailable' } });
    expect(mock.stats().received).toBe(0);
    expect(members.flatMap((m) => m.logs)).toContainEqual(expect.objectContaining({ msg: 'health check failed', provider: 'a', reason: 'probe answered 503' }));
  });

  it('one worker probes at a time; when it goes, another takes the lease over', async () => {
    const { mock, members } = await pool(3);
    await waitFor(() => mock.stats().probes >= 4, { what: 'four health probes' });
    const probing = members.filter((m) => m.health.probesSent > 0);
    expect(probing).toHaveLength(1);
    expect(probing[0]!.health.probesSent).toBe(mock.stats().probes);
    await probing[0]!.close();
    const rest = members.filter((m) => m !== probing[0]);
    await waitFor(() => rest.some((m) => m.health.probesSent > 0), { what: 'another worker to take the health-check lease over' });
    expect(rest.filter((m) => m.health.probesSent > 0)).toHaveLength(1);
  });

  it('while the provider stays dead the breakers stay open; once it answers again, one probe call closes them everywhere', async () => {
    const { mock, members } = await pool(2);
    mock.setOutage({ status: 503 });
    await waitFor(() => allOpen(members), { what: "the provider's breakers to open in every worker" });
    mock.setOutage(undefined);
    // The health check no longer holds them open: after resetTimeoutMs a user request probes, and its success closes them.
    await waitFor(() => members.every((m) => m.breakers.state('a', 'model-chat') === 'half-open'), { timeoutMs: 10_000, what: 'half-open after the reset' });
    expect(await members[0]!.call('chat')).toMatchObject({ kind: 'body', status: 200 });
    await waitFor(() => members.every((m) => m.breakers.state('a', 'model-chat') === 'closed'), { what: 'the breaker to close in every worker' });
    expect(mock.stats().received).toBe(1);
  });
});
