// A Redis restart under load, through a real split-mode cluster (1 ingress, 2 workers) on a Redis of the test's own
// (no persistence: the restart loses every job), driven by the official openai client. 200 requests are in flight,
// JSON and streams, active on workers or still queued: every client must get its answer or a clear 503 promptly (not
// at its deadline), and no upstream call may go on for a client that was already answered with an error.
import { afterAll, beforeAll, expect, it } from 'vitest';
import OpenAI from 'openai';
import { startCluster, TENANT_KEY, type Cluster } from '../support/spillway-cluster.ts';
import { startRedisServer, type RedisServer } from '../support/redis.ts';
import { waitFor } from '../support/wait.ts';

let redis: RedisServer;
let cluster: Cluster;
let client: OpenAI;

const CONCURRENCY = 80; // per worker: 160 requests active upstream, 40 waiting in the queue
const JSON_REQUESTS = 120;
const STREAM_REQUESTS = 80;

beforeAll(async () => {
  redis = await startRedisServer();
  cluster = await startCluster({
    redisUrl: redis.url,
    workers: 2,
    // Deadlines far away: an answer that waits for its deadline fails the test by its timeout.
    config: { worker: { concurrency: CONCURRENCY }, server: { requestTimeoutMs: 300_000, maxDeadlineMs: 600_000 } },
  });
  client = new OpenAI({ baseURL: `${cluster.baseUrl}/v1`, apiKey: TENANT_KEY, maxRetries: 0, timeout: 120_000 });
}, 60_000);

afterAll(async () => {
  await cluster?.close();
  await redis?.close();
});

type Outcome = { tag: string; answered: true } | { tag: string; answered: false; status: number | undefined; code: string | null | undefined; error: string };

async function outcomeOf(tag: string, call: () => Promise<void>): Promise<Outcome> {
  try {
    await call();
    return { tag, answered: true };
  } catch (err) {
    const e = err as { status?: number; code?: string | null; message?: string };
    return { tag, answered: false, status: e.status, code: e.code, error: String(e.message) };
  }
}

function jsonRequest(tag: string): Promise<Outcome> {
  return outcomeOf(tag, async () => {
    // Long enough upstream (15 s) to be in flight throughout the restart.
    await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] }, { headers: { 'x-mock-tag': tag, 'x-mock-latency-ms': '15000' } });
  });
}

function streamRequest(tag: string): Promise<Outcome> {
  return outcomeOf(tag, async () => {
    const stream = await client.chat.completions.create(
      { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }], stream: true },
      { headers: { 'x-mock-tag': tag, 'x-mock-chunks': '150', 'x-mock-chunk-delay-ms': '100' } },
    );
    for await (const chunk of stream) void chunk;
  });
}

it('Redis restarted under 200 in-flight requests: each client gets its answer or a 503 at once, and no upstream call runs on for an answered client', { timeout: 90_000 }, async () => {
  const outcomes = [
    ...Array.from({ length: JSON_REQUESTS }, (_, i) => jsonRequest(`json-${i}`)),
    ...Array.from({ length: STREAM_REQUESTS }, (_, i) => streamRequest(`stream-${i}`)),
  ];
  await waitFor(() => cluster.mock.stats().inFlight === 2 * CONCURRENCY, { timeoutMs: 20_000, what: 'every worker slot to be busy upstream' });
  await waitFor(async () => (await cluster.queue.getJobCounts('wait')).wait === JSON_REQUESTS + STREAM_REQUESTS - 2 * CONCURRENCY, {
    what: 'the other requests to wait in the queue',
  });

  await redis.stop();
  await redis.restart();

  const settled = await Promise.all(outcomes);
  const failed = settled.filter((o): o is Extract<Outcome, { answered: false }> => !o.answered);
  // A 503 as JSON (status), or after a stream's head as an SSE error event (code only): broker faults, never 502/504.
  const unclear = failed.filter((o) => !(o.status === 503 || (o.status === undefined && (o.code === 'job_lost' || o.code === 'service_unavailable'))));
  expect(unclear).toEqual([]);
  expect(failed.every((o) => o.code === 'job_lost' || o.code === 'service_unavailable')).toBe(true);

  // Every upstream call ends; none whose client got an error ran to completion.
  await waitFor(() => cluster.mock.stats().inFlight === 0, { timeoutMs: 15_000, what: 'every upstream call to end' });
  const byTag = cluster.mock.stats().byTag;
  const completedForNobody = failed.filter((o) => (byTag[o.tag]?.completed ?? 0) > 0).map((o) => o.tag);
  expect(completedForNobody).toEqual([]);

  // And the cluster serves again.
  const after = await waitFor(
    () => client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] }, { headers: { 'x-mock-tag': 'after' } }),
    { timeoutMs: 20_000, what: 'a request to succeed again' },
  );
  expect(after.choices[0]?.message.content).toMatch(/^tok1/);
});
