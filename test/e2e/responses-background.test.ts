// Background responses end to end (split-mode processes, real Redis, the mock upstream behind a recording proxy, a
// real webhook receiver): `background: true` answers `queued` at once, runs as an async job, is polled to completion
// with the official client, and its response.completed webhook verifies with `webhooks.unwrap()`; a response cancelled
// while it waits never reaches the upstream and its response.cancelled event is sent.
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import OpenAI from 'openai';
import { startMockUpstream, type MockUpstream } from '../../src/mock-upstream/index.ts';
import { startCluster, TENANT_KEY, type Cluster } from '../support/spillway-cluster.ts';
import { startRecordingProxy, type RecordingProxy } from '../support/recording-proxy.ts';
import { startWebhookReceiver, type WebhookReceiver } from '../support/webhook-receiver.ts';
import { conform } from '../support/responses.ts';
import { createRedisKeys } from '../../src/queue/keys.ts';
import { waitFor } from '../support/wait.ts';

const SLOW_KEY = 'sk-test-slowpoke-0123456789';
const sha = (key: string) => `sha256:${createHash('sha256').update(key).digest('hex')}`;

let upstream: MockUpstream;
let proxy: RecordingProxy;
let receiver: WebhookReceiver;
let cluster: Cluster;

beforeAll(async () => {
  upstream = await startMockUpstream();
  proxy = await startRecordingProxy(upstream.url);
  receiver = await startWebhookReceiver();
  cluster = await startCluster({
    redisUrl: inject('redisUrl'),
    workers: 2,
    config: {
      providers: [
        { id: 'native', type: 'openai', baseUrl: proxy.url, apiKey: 'sk-upstream', timeoutMs: 30_000 },
        { id: 'bridge', type: 'openai', baseUrl: proxy.url, apiKey: 'sk-upstream', timeoutMs: 30_000, responses: 'bridged' },
      ],
      models: [
        { name: 'native-model', route: [{ provider: 'native', model: 'mock-native' }] },
        { name: 'bridged-model', route: [{ provider: 'bridge', model: 'mock-chat' }] },
      ],
      tenants: [
        { id: 'acme', keys: [sha(TENANT_KEY)], webhook: { url: receiver.url, secrets: [receiver.secret] } },
        // One request a minute: its second background response waits for budget, queued, for as long as a test needs.
        { id: 'slowpoke', keys: [sha(SLOW_KEY)], rpm: 1, burst: 1, webhook: { url: receiver.url, secrets: [receiver.secret] } },
      ],
      webhooks: { allowHttp: true, allowHosts: ['127.0.0.1'], timeoutMs: 2_000, maxAttempts: 3, backoff: { initialMs: 100, multiplier: 2, maxMs: 1_000, jitter: 0 } },
    },
  });
}, 60_000);

afterAll(async () => {
  await cluster?.close();
  await receiver?.close();
  await proxy?.close();
  await upstream?.close();
});

const client = (key = TENANT_KEY) => new OpenAI({ baseURL: `${cluster.baseUrl}/v1`, apiKey: key, maxRetries: 0 });

/** The webhook the receiver got for this response and event type, verified by the openai client's unwrap(). */
const webhookFor = (responseId: string, type: string) =>
  waitFor(() => receiver.received.find((w) => w.unwrapped?.type === type && w.unwrapped.data.id === responseId), { timeoutMs: 15_000, what: `${type} for ${responseId}` });

describe.each(['native-model', 'bridged-model'])('%s', (model) => {
  it('a background response is queued at once, completes, is polled, and its webhook verifies with unwrap()', async () => {
    const queued = await client().responses.create({ model, input: 'hello', background: true }, { headers: { 'x-mock-chunks': '3' } });
    expect(queued).toMatchObject({ object: 'response', status: 'queued', background: true });
    expect(conform('Response', queued)).toEqual([]);
    const done = await waitFor(
      async () => {
        const current = await client().responses.retrieve(queued.id);
        return current.status === 'completed' ? current : undefined;
      },
      { timeoutMs: 15_000, what: 'the background response to complete' },
    );
    expect(done.id).toBe(queued.id);
    expect(done.output_text).toBe('tok1 tok2 tok3');
    expect(conform('Response', JSON.parse(JSON.stringify(done)))).toEqual([]);
    const hook = await webhookFor(queued.id, 'response.completed');
    expect(hook.verifiedByStandardWebhooks).toBe(true);
    expect(conform('WebhookResponseCompleted', JSON.parse(hook.body))).toEqual([]);
  });
});

describe.each(['native-model', 'bridged-model'])('%s: chaining on a background response', (model) => {
  it('a follow-up on a background response nobody has read yet carries its answer; one still running is refused', async () => {
    const first = await client().responses.create({ model, input: 'first turn', background: true }, { headers: { 'x-mock-chunks': '3' } });
    // Ended (its webhook went out) but never polled: the store still holds the queued shell.
    await webhookFor(first.id, 'response.completed');
    const before = proxy.requests.length;
    const second = await client().responses.create({ model, input: 'second turn', previous_response_id: first.id }, { headers: { 'x-mock-chunks': '2' } });
    expect(second.status).toBe('completed');
    const sent = proxy.requests.slice(before).map((call) => JSON.stringify(call.body));
    expect(sent.some((body) => body.includes('tok1 tok2 tok3') && body.includes('first turn'))).toBe(true);

    const running = await client().responses.create({ model, input: 'held', background: true }, { headers: { 'x-mock-gate': `held-${model}` } });
    await waitFor(() => upstream.stats().inFlight > 0, { what: 'the held call to reach the upstream' });
    const refused = await client()
      .responses.create({ model, input: 'too soon', previous_response_id: running.id })
      .catch((err: unknown) => err);
    expect(refused).toBeInstanceOf(OpenAI.BadRequestError);
    expect((refused as InstanceType<typeof OpenAI.BadRequestError>).error).toMatchObject({ param: 'previous_response_id', code: 'previous_response_not_finished' });
    upstream.openGate(`held-${model}`);
    await webhookFor(running.id, 'response.completed');
  });
});

it('background: true with store: false is refused, as OpenAI refuses it, and nothing is queued or stored', async () => {
  const before = upstream.stats().received;
  const refused = await client()
    .responses.create({ model: 'bridged-model', input: 'x', background: true, store: false })
    .catch((err: unknown) => err);
  expect(refused).toBeInstanceOf(OpenAI.BadRequestError);
  expect((refused as InstanceType<typeof OpenAI.BadRequestError>).error).toMatchObject({ type: 'invalid_request_error', param: 'store' });
  expect(upstream.stats().received).toBe(before);
});

it('a background response whose job record expired before it was read is failed, not queued for ever', async () => {
  const queued = await client().responses.create({ model: 'bridged-model', input: 'lost', background: true });
  await webhookFor(queued.id, 'response.completed');
  // Days later, unread: the job's record has expired (async retention is shorter than the response store's).
  await cluster.redis.del(createRedisKeys(cluster.prefix).tenantKeys('acme').job(`job_${queued.id.slice('resp_'.length)}`));
  const lost = await client().responses.retrieve(queued.id);
  expect(lost).toMatchObject({ id: queued.id, status: 'failed', error: { code: 'server_error' } });
  expect(conform('Response', JSON.parse(JSON.stringify(lost)))).toEqual([]);
  expect((await client().responses.retrieve(queued.id)).status).toBe('failed');
});

it('a background response cancelled while it waits never reaches the upstream, and response.cancelled is sent', async () => {
  const first = await client(SLOW_KEY).responses.create({ model: 'bridged-model', input: 'one', background: true }, { headers: { 'x-mock-tag': 'bg-first' } });
  const second = await client(SLOW_KEY).responses.create({ model: 'bridged-model', input: 'two', background: true }, { headers: { 'x-mock-tag': 'bg-second' } });
  await webhookFor(first.id, 'response.completed');
  // The first used the tenant's one request a minute: the second waits, queued, for its budget.
  expect((await client(SLOW_KEY).responses.retrieve(second.id)).status).toBe('queued');
  const cancelled = await client(SLOW_KEY).responses.cancel(second.id);
  expect(cancelled).toMatchObject({ id: second.id, status: 'cancelled' });
  expect(conform('Response', JSON.parse(JSON.stringify(cancelled)))).toEqual([]);
  const hook = await webhookFor(second.id, 'response.cancelled');
  expect(conform('WebhookResponseCancelled', JSON.parse(hook.body))).toEqual([]);
  expect((await client(SLOW_KEY).responses.retrieve(second.id)).status).toBe('cancelled');
  expect(upstream.stats().byTag['bg-second']).toBeUndefined();
  // Cancelled: the job is gone from the queue, so no worker can take it later either.
  expect(await cluster.queue.getJob(`job_${second.id.slice('resp_'.length)}`)).toBeUndefined();
});
