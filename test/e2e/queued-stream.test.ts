// Requests that wait in the queue, through real processes: a stream queued behind a saturated worker pool is kept
// alive (head, then `: keep-alive` comments) so a client or proxy that gives up after a silence still gets its answer;
// a request whose deadline passes in the queue gets the ingress's own 504 and never reaches the upstream.
// Default: a short form. SPILLWAY_LONG_TESTS=1: the figures (90 s in the queue, a client that gives up after 30 s).
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import OpenAI from 'openai';
import { Agent, fetch as undiciFetch } from 'undici';
import { startCluster, TENANT_KEY, type Cluster } from '../support/spillway-cluster.ts';
import { waitFor } from '../support/wait.ts';

const LONG = process.env.SPILLWAY_LONG_TESTS === '1';
/** How long the blocking job holds the only worker slot, the keep-alive interval, and the client's patience. */
const QUEUED_MS = LONG ? 90_000 : 6_000;
const KEEP_ALIVE_MS = LONG ? 10_000 : 1_000;
const CLIENT_IDLE_MS = LONG ? 30_000 : 3_000;
const HASTY_KEY = 'sk-test-hasty-0123456789';

let cluster: Cluster;

beforeAll(async () => {
  cluster = await startCluster({
    redisUrl: inject('redisUrl'),
    workers: 1,
    // The blocking call's answer head comes after QUEUED_MS: the provider must wait that long for it.
    provider: { timeoutMs: QUEUED_MS + 30_000 },
    config: {
      // One worker slot: one slow call saturates the pool.
      worker: { concurrency: 1, lockDurationMs: 2_000, stalledIntervalMs: 1_000 },
      // The deadline is the tenant's queue wait plus this: short, so the hasty tenant's passes in the queue.
      server: { streamKeepAliveMs: KEEP_ALIVE_MS, requestTimeoutMs: 1_000 },
      tenants: [
        { id: 'acme', keys: [`sha256:${sha256(TENANT_KEY)}`], maxQueueWaitMs: 2 * QUEUED_MS },
        // A tenant whose requests may wait 300 ms in the queue: its deadline passes there.
        { id: 'hasty', keys: [`sha256:${sha256(HASTY_KEY)}`], maxQueueWaitMs: 300 },
      ],
    },
  });
}, 60_000);

afterAll(async () => {
  await cluster?.close();
});

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/** Fills the only worker slot for QUEUED_MS; resolves once the upstream has the call (wrapped: the SDK's promise is a thenable). */
async function saturate(tag: string): Promise<{ blocker: Promise<unknown> }> {
  const client = new OpenAI({ baseURL: `${cluster.baseUrl}/v1`, apiKey: TENANT_KEY, maxRetries: 0, timeout: 3 * QUEUED_MS });
  const blocker = client.chat.completions.create(
    { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] },
    { headers: { 'x-mock-tag': tag, 'x-mock-latency-ms': String(QUEUED_MS) } },
  );
  await waitFor(() => cluster.mock.stats().byTag[tag]?.received === 1, { what: 'the blocking call to reach the upstream' });
  return { blocker };
}

it('a stream queued behind a saturated pool, read by a client that gives up after a silence, receives its answer', async () => {
  const { blocker } = await saturate('blocker');
  // The client gives up when no byte arrives for CLIENT_IDLE_MS, head or body: like a proxy's idle timeout.
  const impatient = new Agent({ headersTimeout: CLIENT_IDLE_MS, bodyTimeout: CLIENT_IDLE_MS });
  const client = new OpenAI({
    baseURL: `${cluster.baseUrl}/v1`,
    apiKey: TENANT_KEY,
    maxRetries: 0,
    timeout: 3 * QUEUED_MS,
    fetch: undiciFetch as unknown as typeof fetch,
    fetchOptions: { dispatcher: impatient } as Record<string, unknown>,
  });
  const started = Date.now();
  const stream = await client.chat.completions.create(
    { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hello' }], stream: true },
    { headers: { 'x-mock-tag': 'queued-stream', 'x-mock-chunks': '5' } },
  );
  let text = '';
  for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? '';
  expect(text).toBe('tok1 tok2 tok3 tok4 tok5');
  // It really waited in the queue longer than the client's patience: only the keep-alive carried it through.
  expect(Date.now() - started).toBeGreaterThan(CLIENT_IDLE_MS);
  expect(cluster.mock.stats().byTag['queued-stream']).toMatchObject({ received: 1, completed: 1 });
  await blocker;
  await impatient.close();
}, 4 * QUEUED_MS + 30_000);

it('a stream that asks for its queue position hears it in SSE comments while it waits, then gets its answer', async () => {
  const { blocker } = await saturate('blocker-position');
  const response = await fetch(`${cluster.baseUrl}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${TENANT_KEY}`, 'content-type': 'application/json', 'x-spillway-queue-position': 'true', 'x-mock-chunks': '3' },
    body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }], stream: true }),
  });
  expect(response.status).toBe(200);
  const text = await response.text();
  // Next in line behind the one running job; the answer follows the comments, which SSE parsers ignore.
  expect(text).toMatch(/^: queued position=1 eta_ms=-?\d+$/m);
  const firstData = text.indexOf('data: ');
  expect(text.indexOf(': queued')).toBeLessThan(firstData);
  expect(text.trimEnd().endsWith('data: [DONE]')).toBe(true);
  await blocker;
}, 4 * QUEUED_MS + 30_000);

it('every answer says how long it waited in the queue (x-spillway-queue-wait-ms), JSON and stream', async () => {
  const { blocker } = await saturate('blocker-wait');
  const post = (stream: boolean) =>
    fetch(`${cluster.baseUrl}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TENANT_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }], ...(stream ? { stream: true } : {}) }),
    });
  const queued = await post(false);
  expect(queued.status).toBe(200);
  await queued.text();
  await blocker;
  // The worker is free now: the next one waits next to nothing, the one behind the blocker waited for it.
  const unqueued = await post(false);
  await unqueued.text();
  const stream = await post(true);
  await stream.text();
  const waited = (r: Response) => Number(r.headers.get('x-spillway-queue-wait-ms'));
  expect(Number.isInteger(waited(queued))).toBe(true);
  expect(Number.isInteger(waited(stream))).toBe(true);
  expect(waited(queued)).toBeGreaterThan(waited(unqueued));
}, 4 * QUEUED_MS + 30_000);

it('a request whose deadline passes in the queue gets the ingress 504 and never reaches the upstream', async () => {
  const { blocker } = await saturate('blocker-2');
  const client = new OpenAI({ baseURL: `${cluster.baseUrl}/v1`, apiKey: HASTY_KEY, maxRetries: 0 });
  const err = await client.chat.completions
    .create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] }, { headers: { 'x-mock-tag': 'expired-in-queue' } })
    .catch((e: unknown) => e);
  expect(err).toBeInstanceOf(OpenAI.APIError);
  expect((err as InstanceType<typeof OpenAI.APIError>).status).toBe(504);
  expect((err as InstanceType<typeof OpenAI.APIError>).code).toBe('deadline_exceeded');
  await blocker;
  // The worker takes the expired job after the blocker and drops it: the upstream never sees it.
  await waitFor(async () => (await cluster.queue.getJobCounts('wait', 'active')).wait === 0, { what: 'the expired job to be taken' });
  expect(cluster.mock.stats().byTag['expired-in-queue']).toBeUndefined();
}, 4 * QUEUED_MS + 30_000);
