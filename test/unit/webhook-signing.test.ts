// Webhook events and their signatures: shaped as OpenAI's events, signed per Standard Webhooks with every secret of a
// rotation, verified by the `standardwebhooks` library and by the official openai client's `webhooks.unwrap()`.
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { Webhook } from 'standardwebhooks';
import OpenAI from 'openai';
import { createSigner } from '../../src/webhooks/signing.ts';
import { buildJobEvent, eventIdFor } from '../../src/webhooks/events.ts';
import { webhookBackoffMs } from '../../src/webhooks/backoff.ts';
import type { JobRecord } from '../../src/queue/job-store.ts';
import { ConfigSchema } from '../../src/config/schema.ts';

const secret = () => `whsec_${randomBytes(24).toString('base64')}`;
const openai = new OpenAI({ apiKey: 'unused' });

const record: JobRecord & { status: 'succeeded' } = {
  id: 'job_0123456789abcdef0123456789abcdef',
  tenant: 'acme',
  status: 'succeeded',
  endpoint: 'chat.completions',
  model: 'gpt-4o-mini',
  requestId: 'req-1',
  bodyHash: 'h',
  createdAt: 1_700_000_000_000,
  deadline: 1_700_021_600_000,
  attempts: 1,
  startedAt: 1_700_000_001_000,
  finishedAt: 1_700_000_002_500,
  statusCode: 200,
  result: '{"id":"chatcmpl-1","object":"chat.completion","choices":[],"usage":{"total_tokens":3}}',
  usage: { total_tokens: 3 },
  webhook: { url: 'https://hooks.example.com/x', metadata: { order: 'A-1' } },
};

describe('job events', () => {
  it('are shaped as OpenAI webhook events, with the whole job when asked', () => {
    const event = buildJobEvent(record, { includeJob: true });
    expect(event).toEqual({
      id: eventIdFor(record.id, 'job.succeeded'),
      object: 'event',
      type: 'job.succeeded',
      created_at: 1_700_000_002,
      data: {
        id: record.id,
        status: 'succeeded',
        metadata: { order: 'A-1' },
        job: expect.objectContaining({ id: record.id, object: 'job', status: 'succeeded', endpoint: '/v1/chat/completions', result: JSON.parse(record.result!), usage: { total_tokens: 3 } }),
      },
    });
    expect(event.id).toMatch(/^evt_[0-9a-f]{32}$/);
    expect(buildJobEvent(record, { includeJob: false }).data).toEqual({ id: record.id, status: 'succeeded', metadata: { order: 'A-1' } });
  });

  it('keep one id per job and type, so a redelivery is recognisably the same event', () => {
    expect(eventIdFor(record.id, 'job.succeeded')).toBe(eventIdFor(record.id, 'job.succeeded'));
    expect(eventIdFor(record.id, 'job.succeeded')).not.toBe(eventIdFor(record.id, 'job.cancelled'));
    expect(eventIdFor(record.id, 'job.succeeded')).not.toBe(eventIdFor('job_ffffffffffffffffffffffffffffffff', 'job.succeeded'));
  });
});

describe('signatures', () => {
  it('verify with standardwebhooks and with openai webhooks.unwrap()', async () => {
    const key = secret();
    const payload = JSON.stringify(buildJobEvent(record, { includeJob: true }));
    const headers = { ...createSigner([key])('evt_1', Math.floor(Date.now() / 1000), payload) };
    expect(headers['webhook-signature']).toMatch(/^v1,[A-Za-z0-9+/]+=*$/);
    expect(new Webhook(key).verify(payload, headers)).toMatchObject({ type: 'job.succeeded' });
    await expect(openai.webhooks.unwrap(payload, headers, key)).resolves.toMatchObject({ object: 'event', type: 'job.succeeded', data: { id: record.id } });
  });

  it('carry one signature per secret during a rotation: a receiver with either secret verifies', async () => {
    const [newest, oldest] = [secret(), secret()];
    const payload = '{"id":"evt_2","object":"event","type":"job.failed","created_at":1,"data":{"id":"job_x"}}';
    const headers = { ...createSigner([newest, oldest])('evt_2', Math.floor(Date.now() / 1000), payload) };
    expect(headers['webhook-signature'].split(' ')).toHaveLength(2);
    for (const key of [newest, oldest]) {
      expect(() => new Webhook(key).verify(payload, headers)).not.toThrow();
      await expect(openai.webhooks.unwrap(payload, headers, key)).resolves.toMatchObject({ id: 'evt_2' });
    }
    expect(() => new Webhook(secret()).verify(payload, headers)).toThrow();
  });

  it('fail for a tampered body or a stale timestamp', async () => {
    const key = secret();
    const payload = '{"id":"evt_3","object":"event","type":"job.expired","created_at":1,"data":{"id":"job_x"}}';
    const headers = { ...createSigner([key])('evt_3', Math.floor(Date.now() / 1000), payload) };
    expect(() => new Webhook(key).verify(payload.replace('expired', 'succeeded'), headers)).toThrow();
    await expect(openai.webhooks.unwrap(payload.replace('expired', 'succeeded'), headers, key)).rejects.toThrow();
    const stale = { ...createSigner([key])('evt_3', Math.floor(Date.now() / 1000) - 3_600, payload) };
    await expect(openai.webhooks.unwrap(payload, stale, key)).rejects.toThrow(/too old/);
  });
});

describe('delivery backoff', () => {
  const policy = { initialMs: 10_000, multiplier: 3, maxMs: 6 * 3_600_000, jitter: 0.2 };

  it('grows exponentially up to its cap, within ± jitter', () => {
    expect([1, 2, 3, 4].map((n) => webhookBackoffMs(n, policy, () => 0.5))).toEqual([10_000, 30_000, 90_000, 270_000]);
    expect(webhookBackoffMs(20, policy, () => 0.5)).toBe(policy.maxMs);
    expect(webhookBackoffMs(1, policy, () => 0)).toBe(8_000);
    expect(webhookBackoffMs(1, policy, () => 1)).toBe(12_000);
  });

  it('spreads the default attempts over about a day', () => {
    const config = ConfigSchema.parse({ providers: [{ id: 'm', type: 'mock' }], models: [{ name: 'x', route: [{ provider: 'm', model: 'x' }] }], tenants: [{ id: 't', keys: ['dev-key-123'], dev: true }] });
    const waits = Array.from({ length: config.webhooks.maxAttempts - 1 }, (_, i) => webhookBackoffMs(i + 1, config.webhooks.backoff, () => 0.5));
    const hours = waits.reduce((a, b) => a + b, 0) / 3_600_000;
    expect(hours).toBeGreaterThan(18);
    expect(hours).toBeLessThan(30);
  });
});
