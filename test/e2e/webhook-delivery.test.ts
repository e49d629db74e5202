// Webhook delivery end to end against a real receiver: a receiver that is down gets the event once it is back
// (retried with backoff meanwhile); one that always fails gets it dead-lettered after the configured attempts, visible
// in the delivery log, and sent again by hand; one that answers 410 is not tried again.
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { Queue } from 'bullmq';
import { startCluster, TENANT_KEY, type Cluster } from '../support/spillway-cluster.ts';
import { startWebhookReceiver, type ReceivedWebhook, type WebhookReceiver } from '../support/webhook-receiver.ts';
import { waitFor } from '../support/wait.ts';
import { createRedisKeys, QUEUE_NAMES } from '../../src/queue/keys.ts';

const MAX_ATTEMPTS = 4;
const BACKOFF = { initialMs: 300, multiplier: 2, maxMs: 5_000, jitter: 0 };

let cluster: Cluster;
let receiver: WebhookReceiver;
let webhooks: Queue;

beforeAll(async () => {
  receiver = await startWebhookReceiver();
  cluster = await startCluster({
    redisUrl: inject('redisUrl'),
    workers: 1,
    config: {
      tenants: [{ id: 'acme', keys: [`sha256:${createHash('sha256').update(TENANT_KEY).digest('hex')}`], webhook: { url: receiver.url, secrets: [receiver.secret] } }],
      webhooks: { allowHttp: true, allowHosts: ['127.0.0.1'], timeoutMs: 2_000, maxAttempts: MAX_ATTEMPTS, backoff: BACKOFF },
    },
  });
  webhooks = new Queue(QUEUE_NAMES.webhooks, { connection: cluster.redis, prefix: createRedisKeys(cluster.prefix).bullPrefix });
}, 60_000);

afterAll(async () => {
  await webhooks?.close();
  await cluster?.close();
  await receiver?.close();
});

interface Attempt {
  event_id: string;
  attempt: number;
  status_code: number | null;
  error: string | null;
  outcome: string;
}

async function api(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<{ status: number; json: Record<string, unknown> }> {
  const response = await fetch(`${cluster.baseUrl}${path}`, {
    method,
    headers: { authorization: `Bearer ${TENANT_KEY}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: response.status, json: (await response.json()) as Record<string, unknown> };
}

const submitJob = async (headers: Record<string, string> = {}) =>
  (await api('POST', '/v1/jobs', { endpoint: '/v1/chat/completions', body: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] } }, headers)).json.id as string;
const deliveries = async (id: string) => (await api('GET', `/v1/jobs/${id}/deliveries`)).json.data as Attempt[];
const webhookStatus = async (id: string) => ((await api('GET', `/v1/jobs/${id}`)).json.webhook as { status: string }).status;
const postsFor = (id: string): ReceivedWebhook[] => receiver.received.filter((r) => r.unwrapped?.data.id === id);

describe('webhook delivery', () => {
  it('retries a receiver that is down and delivers once it is back', async () => {
    await receiver.down();
    const id = await submitJob();
    await waitFor(async () => (await deliveries(id)).length >= 2, { what: 'two failed attempts' });
    const failed = await deliveries(id);
    expect(failed.slice(0, 2)).toEqual([
      expect.objectContaining({ attempt: 1, status_code: null, outcome: 'retrying', error: expect.stringContaining('ECONNREFUSED') }),
      expect.objectContaining({ attempt: 2, status_code: null, outcome: 'retrying' }),
    ]);
    expect(await webhookStatus(id)).toBe('pending');

    await receiver.up();
    await waitFor(async () => (await webhookStatus(id)) === 'delivered', { what: 'the delivery once the receiver is back' });
    const log = await deliveries(id);
    expect(log.at(-1)).toMatchObject({ outcome: 'delivered', status_code: 200 });
    expect(log.map((a) => a.attempt)).toEqual(log.map((_, i) => i + 1));
    expect(new Set(log.map((a) => a.event_id)).size).toBe(1);
    expect(postsFor(id)).toHaveLength(1);
    expect(postsFor(id)[0]!.verifiedByStandardWebhooks).toBe(true);
  });

  it('backs off between attempts, dead-letters after the configured attempts, and sends again by hand', async () => {
    receiver.answer(503);
    const id = await submitJob();
    await waitFor(async () => (await webhookStatus(id)) === 'failed', { timeoutMs: 15_000, what: 'the event to be dead-lettered' });
    const posts = postsFor(id);
    expect(posts).toHaveLength(MAX_ATTEMPTS);
    // Each wait at least the configured backoff: initialMs × multiplier^(n-1) (jitter 0 in this config).
    for (let n = 1; n < posts.length; n++) {
      expect(posts[n]!.receivedAt - posts[n - 1]!.receivedAt).toBeGreaterThanOrEqual(BACKOFF.initialMs * BACKOFF.multiplier ** (n - 1));
    }
    const log = await deliveries(id);
    expect(log.map((a) => [a.attempt, a.status_code, a.outcome])).toEqual([
      [1, 503, 'retrying'],
      [2, 503, 'retrying'],
      [3, 503, 'retrying'],
      [4, 503, 'failed'],
    ]);
    const dead = await webhooks.getJob(log[0]!.event_id);
    expect(await dead?.getState()).toBe('failed');

    receiver.answer(200);
    const retried = await api('POST', `/v1/jobs/${id}/deliveries/retry`);
    expect(retried.status).toBe(202);
    await waitFor(async () => (await webhookStatus(id)) === 'delivered', { what: 'the retried delivery' });
    expect((await deliveries(id)).at(-1)).toMatchObject({ event_id: log[0]!.event_id, attempt: 1, status_code: 200, outcome: 'delivered' });
    expect(postsFor(id).at(-1)!.id).toBe(log[0]!.event_id);
  });

  it('refuses a manual send while a delivery is still under way (409), so the event is never sent twice at once', async () => {
    receiver.answer(503);
    try {
      const id = await submitJob();
      // Answered 503: its first attempt failed, the next ones are due; the delivery is pending.
      await waitFor(() => postsFor(id).length >= 1, { what: 'the first attempt' });
      expect(await webhookStatus(id)).toBe('pending');
      const refused = await Promise.all(Array.from({ length: 5 }, () => api('POST', `/v1/jobs/${id}/deliveries/retry`)));
      expect(refused.map((r) => r.status)).toEqual(Array(5).fill(409));
      expect(refused[0]!.json.error).toMatchObject({ type: 'invalid_request_error', code: 'webhook_not_deliverable' });
      await waitFor(async () => (await webhookStatus(id)) === 'failed', { timeoutMs: 15_000, what: 'the event to be dead-lettered' });
      // Only the automatic attempts were made.
      expect(postsFor(id)).toHaveLength(MAX_ATTEMPTS);
    } finally {
      receiver.answer(200);
    }
  });

  it('stops at once when the receiver answers 410 Gone', async () => {
    receiver.answer(410);
    try {
      const id = await submitJob();
      await waitFor(async () => (await webhookStatus(id)) === 'stopped', { what: 'the delivery to stop' });
      const log = await deliveries(id);
      expect(log).toEqual([expect.objectContaining({ attempt: 1, status_code: 410, outcome: 'stopped' })]);
      const job = await webhooks.getJob(log[0]!.event_id);
      expect(await job?.getState()).toBe('failed');
      expect(job?.attemptsMade).toBe(1);
    } finally {
      receiver.answer(200);
    }
  });

  it('refuses to send the event of a job that has not finished (409) or does not exist (404)', async () => {
    const id = await submitJob({ 'x-mock-gate': 'retry-early', 'x-mock-tag': 'retry-early' });
    await waitFor(() => cluster.mock.stats().byTag['retry-early']?.received === 1, { what: 'the upstream call' });
    const early = await api('POST', `/v1/jobs/${id}/deliveries/retry`);
    expect(early.status).toBe(409);
    expect(early.json.error).toMatchObject({ type: 'invalid_request_error', code: 'webhook_not_deliverable' });
    cluster.mock.openGate('retry-early');
    expect((await api('POST', '/v1/jobs/job_00000000000000000000000000000000/deliveries/retry')).status).toBe(404);
  });
});
