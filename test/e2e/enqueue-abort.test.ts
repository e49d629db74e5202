// A client that disconnects while its job is still being enqueued (Redis slow to answer) must neither crash the
// ingress nor cost an upstream call: the job that lands afterwards is dropped by the cancel broadcast.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { startCluster, TENANT_KEY, type Cluster } from '../support/spillway-cluster.ts';
import { startRedisServer, type RedisServer } from '../support/redis.ts';
import { waitFor } from '../support/wait.ts';

let redis: RedisServer;
let cluster: Cluster;
let admin: Redis;

beforeAll(async () => {
  // Its own Redis: the test pauses it, which must not slow down other test files.
  redis = await startRedisServer();
  cluster = await startCluster({ redisUrl: redis.url, workers: 1 });
  admin = new Redis(redis.url);
}, 60_000);

afterAll(async () => {
  admin?.disconnect();
  await cluster?.close();
  await redis?.close();
});

async function pendingGauge(): Promise<number> {
  const text = await (await fetch(`${cluster.baseUrl}/metrics`)).text();
  return Number(/^spillway_ingress_pending_requests (\d+)/m.exec(text)?.[1] ?? NaN);
}

it('survives a client that leaves during enqueue, and the late job never reaches the upstream', async () => {
  // Write commands (Queue.add is a Lua script) wait while Redis is paused: the request sits in enqueue.
  await admin.call('CLIENT', 'PAUSE', '1500', 'WRITE');
  const controller = new AbortController();
  const request = fetch(`${cluster.baseUrl}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${TENANT_KEY}`, 'content-type': 'application/json', 'x-mock-tag': 'enqueue-abort' },
    body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] }),
    signal: controller.signal,
  }).catch((err: unknown) => err);
  await waitFor(async () => (await pendingGauge()) === 1, { what: 'the request to be held by the ingress' });
  controller.abort();
  expect(await request).toBeInstanceOf(Error);

  // Once Redis answers again the job lands; the ingress must still be up and holding nothing.
  await waitFor(async () => (await pendingGauge()) === 0, { timeoutMs: 15_000, what: 'the pending request to be released' });
  expect(cluster.ingress.child.exitCode).toBeNull();

  // A later call goes through the same worker; the abandoned one never reached the upstream.
  const after = await fetch(`${cluster.baseUrl}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${TENANT_KEY}`, 'content-type': 'application/json', 'x-mock-tag': 'after' },
    body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] }),
  });
  expect(after.status).toBe(200);
  await waitFor(async () => (await cluster.queue.getJobCounts('wait', 'active', 'delayed')).wait === 0, { what: 'the queue to be empty' });
  expect(cluster.mock.stats().byTag['enqueue-abort']).toBeUndefined();
});
