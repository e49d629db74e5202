// Per-tenant isolation and webhooks of the Batch API, through an in-process Spillway with the official client: a second
// tenant can neither see, read, delete nor cancel the first tenant's files and batches (404, as for an unknown id), and
// each final status sends its batch.* event, signed so that the openai client's webhooks.unwrap() verifies it.
import { createHash } from 'node:crypto';
import OpenAI, { NotFoundError } from 'openai';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { TENANT_KEY } from '../support/spillway-cluster.ts';
import { startWebhookReceiver, type WebhookReceiver } from '../support/webhook-receiver.ts';
import { waitFor } from '../support/wait.ts';
import { startBatchHarness, type BatchHarness } from './batches-harness.ts';
import { toolLine } from './batches-harness-lines.ts';

const OTHER_KEY = 'sk-test-other-9876543210';
const WINDOW_SECONDS = 5;
const hash = (key: string) => `sha256:${createHash('sha256').update(key).digest('hex')}`;

let h: BatchHarness;
let receiver: WebhookReceiver;
let other: OpenAI;

beforeAll(async () => {
  receiver = await startWebhookReceiver();
  h = await startBatchHarness({
    redisUrl: inject('redisUrl'),
    config: (mockUrl) => ({
      batches: { pollMs: 50, completionWindowSeconds: WINDOW_SECONDS },
      webhooks: { allowHttp: true, allowHosts: ['127.0.0.1'], maxAttempts: 3, backoff: { initialMs: 100 } },
      providers: [
        { id: 'mock', type: 'openai', baseUrl: mockUrl, apiKey: 'sk-upstream-secret-value' },
        { id: 'held', type: 'openai', baseUrl: mockUrl, apiKey: 'sk-upstream-secret-value', headers: { 'x-mock-gate': 'held' } },
      ],
      models: [
        { name: 'gpt-4o-mini', route: [{ provider: 'mock', model: 'mock-chat' }] },
        { name: 'held', route: [{ provider: 'held', model: 'mock-chat' }] },
      ],
      tenants: [
        { id: 'acme', keys: [hash(TENANT_KEY)], webhook: { url: receiver.url, secrets: [receiver.secret] } },
        { id: 'globex', keys: [hash(OTHER_KEY)] },
      ],
    }),
  });
  other = new OpenAI({ apiKey: OTHER_KEY, baseURL: `${h.baseUrl}/v1`, maxRetries: 0 });
});

afterAll(async () => {
  h?.mock.openGate('held');
  await h?.close();
  await receiver?.close();
});

describe('another tenant', () => {
  it('gets 404 for the first tenant\'s files and batches, and sees none of them in its lists', async () => {
    const fileId = await h.upload([toolLine(1, 'held')]);
    const batch = await h.client.batches.create({ input_file_id: fileId, endpoint: '/v1/chat/completions', completion_window: '24h' });
    await h.waitForStatus(batch.id, ['in_progress']);

    const attempts: Array<[string, () => Promise<unknown>]> = [
      ['files.retrieve', () => other.files.retrieve(fileId)],
      ['files.content', () => other.files.content(fileId)],
      ['files.delete', () => other.files.delete(fileId)],
      ['batches.retrieve', () => other.batches.retrieve(batch.id)],
      ['batches.cancel', () => other.batches.cancel(batch.id)],
    ];
    for (const [what, attempt] of attempts) await expect(attempt(), what).rejects.toBeInstanceOf(NotFoundError);
    // Its own batch cannot use the file either: to it, the file does not exist.
    await expect(other.batches.create({ input_file_id: fileId, endpoint: '/v1/chat/completions', completion_window: '24h' })).rejects.toMatchObject({ status: 400, param: 'input_file_id' });
    expect((await other.files.list()).data).toEqual([]);
    expect((await other.batches.list()).data).toEqual([]);
    // Nothing of it changed: the owner still has both, the batch still running.
    expect((await h.client.files.retrieve(fileId)).id).toBe(fileId);
    expect((await h.client.batches.retrieve(batch.id)).status).toBe('in_progress');
    await h.client.batches.cancel(batch.id);
    await h.waitForStatus(batch.id, ['cancelled']);
  });
});

describe('batch webhooks', () => {
  async function eventFor(batchId: string) {
    const delivery = await waitFor(() => receiver.received.find((r) => r.unwrapped?.data.id === batchId), { timeoutMs: 20_000, what: `the webhook of ${batchId}` });
    expect(delivery.verifiedByStandardWebhooks).toBe(true);
    expect(delivery.unwrapError).toBeUndefined();
    return delivery;
  }

  it('sends batch.completed, batch.failed, batch.cancelled and batch.expired, each verified by openai\'s webhooks.unwrap()', async () => {
    const create = async (lines: string[]) => h.client.batches.create({ input_file_id: await h.upload(lines), endpoint: '/v1/chat/completions', completion_window: '24h' });
    const completed = await create([toolLine(1), toolLine(2)]);
    const failed = await create(['not json']);
    const cancelled = await create([toolLine(3, 'held')]);
    const expired = await create([toolLine(4, 'held')]);
    await h.waitForStatus(cancelled.id, ['in_progress']);
    await h.client.batches.cancel(cancelled.id);

    const events = new Map<string, NonNullable<Awaited<ReturnType<typeof eventFor>>['unwrapped']>>();
    for (const batch of [completed, failed, cancelled, expired]) events.set(batch.id, (await eventFor(batch.id)).unwrapped!);
    expect(events.get(completed.id)!.type).toBe('batch.completed');
    expect(events.get(failed.id)!.type).toBe('batch.failed');
    expect(events.get(cancelled.id)!.type).toBe('batch.cancelled');
    expect(events.get(expired.id)!.type).toBe('batch.expired');
    for (const [batchId, event] of events) {
      expect(event).toMatchObject({ object: 'event', data: { id: batchId } });
      expect(event.id).toMatch(/^evt_[0-9a-f]{32}$/);
      const batch = await h.client.batches.retrieve(batchId);
      const finishedAt = batch.completed_at ?? batch.failed_at ?? batch.cancelled_at ?? batch.expired_at;
      expect(event.created_at).toBe(finishedAt);
    }
    // One event per batch: the delivery's id is the event's.
    const ids = receiver.received.filter((r) => events.has(r.unwrapped?.data.id ?? '')).map((r) => r.id);
    expect(new Set(ids).size).toBe(4);
  }, 40_000);
});
