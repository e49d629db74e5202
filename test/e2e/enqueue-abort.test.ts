// Cancellation that races the queue. A client that leaves while its job is still being enqueued (Redis slow to
// answer) must neither crash the ingress nor cost an upstream call: the cancel's remove runs after the add on the same
// connection and deletes the late job. A cancel that finds no job to remove is broadcast, and a worker that later takes
// that job drops it before any upstream call (the broadcast path).
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { startCluster, TENANT_KEY, type Cluster } from '../support/spillway-cluster.ts';
import { startRedisServer, type RedisServer } from '../support/redis.ts';
import { waitFor } from '../support/wait.ts';
import { cancelJob } from '../../src/queue/cancel.ts';
import { createRedisKeys } from '../../src/queue/keys.ts';
import { JOB_SCHEMA_VERSION, type CompletionJob } from '../../src/queue/jobs.ts';

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

const chat = (tag: string, signal?: AbortSignal) =>
  fetch(`${cluster.baseUrl}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${TENANT_KEY}`, 'content-type': 'application/json', 'x-mock-tag': tag },
    body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] }),
    ...(signal ? { signal } : {}),
  });

it('survives a client that leaves during enqueue, and the late job is removed before any worker runs it', async () => {
  // Write commands (Queue.add is a Lua script) wait while Redis is paused: the request sits in enqueue.
  await admin.call('CLIENT', 'PAUSE', '1500', 'WRITE');
  const controller = new AbortController();
  const request = chat('enqueue-abort', controller.signal).catch((err: unknown) => err);
  await waitFor(async () => (await pendingGauge()) === 1, { what: 'the request to be held by the ingress' });
  controller.abort();
  expect(await request).toBeInstanceOf(Error);
  // The ingress lets go of the request at once, without waiting for Redis to answer the enqueue.
  await waitFor(async () => (await pendingGauge()) === 0, { what: 'the pending request to be released' });
  expect(cluster.ingress.child.exitCode).toBeNull();

  // A later call goes through the same worker; the abandoned one never reached the upstream.
  const after = await chat('after');
  expect(after.status).toBe(200);
  await waitFor(async () => (await cluster.queue.getJobCounts('wait', 'active', 'delayed')).wait === 0, { what: 'the queue to be empty' });
  expect(cluster.mock.stats().byTag['enqueue-abort']).toBeUndefined();
});

it('a job cancelled before it exists is dropped by the worker that takes it, without an upstream call', async () => {
  const jobId = randomUUID();
  // Nothing to remove yet: the cancel is broadcast to the workers, which remember it.
  expect(await cancelJob(cluster.queue, admin, createRedisKeys(cluster.prefix), jobId)).toBe('signalled');
  const now = Date.now();
  const job: CompletionJob = {
    v: JOB_SCHEMA_VERSION,
    endpoint: 'chat.completions',
    requestId: randomUUID(),
    tenant: 'acme',
    model: 'gpt-4o-mini',
    body: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] },
    stream: false,
    replyTo: null,
    headers: { 'x-mock-tag': 'broadcast-cancel' },
    enqueuedAt: now,
    deadline: now + 30_000,
  };
  // The job lands after its cancel, as it does when the broadcast overtakes the job's move to active.
  await cluster.queue.add('completion', job, { jobId, attempts: 1 });
  const finished = await waitFor(async () => {
    const stored = await cluster.queue.getJob(jobId);
    return stored?.finishedOn !== undefined ? stored : undefined;
  }, { what: 'the worker to finish the cancelled job' });
  expect(finished.returnvalue).toMatchObject({ kind: 'error', status: 499, error: { code: 'client_closed_request' } });
  expect(cluster.mock.stats().byTag['broadcast-cancel']).toBeUndefined();
});
