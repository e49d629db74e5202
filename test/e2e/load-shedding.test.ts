// Early load shedding through real processes (ingress, a worker, real Redis, mock upstream): a request the queue would
// not reach within its queue-wait limit is refused at once with 503 and Retry-After, costs no upstream call, and may be
// retried; a spike after a quiet spell is not shed for the quiet spell's pace (the pool's capacity is measured, not
// its throughput). Each test has a deployment of its own: the capacity is measured over the last ten seconds of jobs.
import { createHash } from 'node:crypto';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { startCluster, type Cluster } from '../support/spillway-cluster.ts';
import { waitFor } from '../support/wait.ts';

const key = (tenant: string) => `sk-test-${tenant}-0123456789`;
const sha = (text: string) => `sha256:${createHash('sha256').update(text).digest('hex')}`;

let cluster: Cluster | undefined;

afterEach(async () => {
  await cluster?.close();
  cluster = undefined;
});

/** One ingress and one worker with 4 slots; the tenant `id` waits at most `maxQueueWaitMs` in the queue. */
async function start(id: string, maxQueueWaitMs: number): Promise<Cluster> {
  cluster = await startCluster({
    redisUrl: inject('redisUrl'),
    workers: 1,
    config: {
      worker: { concurrency: 4, lockDurationMs: 5_000, stalledIntervalMs: 2_000 },
      server: { requestTimeoutMs: 60_000, maxDeadlineMs: 600_000 },
      tenants: [{ id, keys: [sha(key(id))], maxQueueWaitMs }],
    },
  });
  return cluster;
}

function chat(c: Cluster, tenantId: string, latencyMs: number) {
  return fetch(`${c.baseUrl}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key(tenantId)}`, 'content-type': 'application/json', 'x-mock-latency-ms': String(latencyMs) },
    body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] }),
  });
}

async function shedCount(c: Cluster, tenantId: string): Promise<number> {
  const text = await (await fetch(`${c.baseUrl}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith('spillway_admission_decisions_total') && l.includes(`tenant="${tenantId}"`) && l.includes('outcome="shed"'));
  return line === undefined ? 0 : Number(line.split(' ').at(-1));
}

describe('early load shedding', () => {
  it('refuses at once with 503 and Retry-After what the queue would not reach within its queue-wait limit; the upstream never sees it', async () => {
    const c = await start('backlogged', 3_000);
    // 4 slots, 1 s jobs: 40 requests are a 10 s backlog. Nothing has ended yet, so nothing is known of the capacity and
    // none of them is shed.
    const backlog = Array.from({ length: 40 }, () => chat(c, 'backlogged', 1_000).then((r) => r.status));
    await waitFor(() => c.mock.stats().completed >= 4, { timeoutMs: 20_000, what: 'the first jobs to end' });
    // Once the pool's capacity is measured (about 4 jobs a second), a new request behind ~30 jobs is ~7 s away: shed.
    // Probes go out every 250 ms without waiting for their answers (an admitted one answers only after the backlog).
    const probes: Promise<Response>[] = [];
    await waitFor(
      async () => {
        probes.push(chat(c, 'backlogged', 1_000));
        return (await shedCount(c, 'backlogged')) >= 1;
      },
      { timeoutMs: 20_000, intervalMs: 250, what: 'a request to be shed' },
    );
    // Refused while the line it would have joined was still there: at once, not after waiting in it.
    expect(c.mock.stats().completed).toBeLessThan(40);
    // The rest of a burst behind the same line is shed too, each with a Retry-After and an OpenAI-shaped error.
    const more = await Promise.all(Array.from({ length: 5 }, () => chat(c, 'backlogged', 1_000)));
    expect(more.map((r) => r.status)).toEqual(Array(5).fill(503));
    for (const response of more) {
      expect(Number(response.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
      expect(await response.json()).toEqual({
        error: { message: expect.stringMatching(/estimated wait/) as unknown, type: 'server_error', param: null, code: 'server_overloaded' },
      });
    }
    const probeAnswers = await Promise.all(probes);
    const admitted = probeAnswers.filter((r) => r.status !== 503).map((r) => r.status);
    const shedProbes = probeAnswers.length - admitted.length;
    expect(shedProbes).toBeGreaterThanOrEqual(1);

    const statuses = [...(await Promise.all(backlog)), ...admitted];
    expect(statuses).toEqual(Array(statuses.length).fill(200));
    // The upstream saw exactly the admitted requests, none of the shed ones.
    expect(c.mock.stats().received).toBe(statuses.length);
    expect(await shedCount(c, 'backlogged')).toBe(shedProbes + 5);
    // Once the line has drained, the retry is admitted.
    expect((await chat(c, 'backlogged', 0)).status).toBe(200);
  }, 90_000);

  it('a spike after a quiet spell is queued, not shed for the quiet pace', async () => {
    const c = await start('spiky', 30_000);
    // A quiet spell: one 200 ms request at a time for a few seconds, the pool almost idle.
    for (let i = 0; i < 6; i++) {
      expect((await chat(c, 'spiky', 200)).status).toBe(200);
      await new Promise((resolve) => setTimeout(resolve, 300));
    }
    // Then a spike in two waves, the second once the ingress has read the line the first one made. The quiet spell's
    // pace (under a job a second) would put the second wave minutes away and shed it; the pool's 4 slots at ~200 ms a
    // job serve all 200 in about ten seconds.
    const first = Array.from({ length: 100 }, () => chat(c, 'spiky', 200).then((r) => r.status));
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    const second = Array.from({ length: 100 }, () => chat(c, 'spiky', 200).then((r) => r.status));
    expect(await Promise.all([...first, ...second])).toEqual(Array(200).fill(200));
    expect(await shedCount(c, 'spiky')).toBe(0);
  }, 90_000);
});
