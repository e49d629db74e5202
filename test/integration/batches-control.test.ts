// Control of a running batch through an in-process Spillway with the official client: a bounded number of lines in
// flight however long the file (the queue never holds more), `cancelling` → `cancelled` stopping the lines still
// queued or running (their upstream calls aborted) while the finished ones are kept, and `expired` after the
// completion window, the finished lines kept and the others in the error file as `batch_expired`.
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { ClusterOptions } from '../support/spillway-cluster.ts';
import { waitFor } from '../support/wait.ts';
import { startBatchHarness, type BatchHarness } from './batches-harness.ts';
import { parseJsonl, toolLine } from './batches-harness-lines.ts';
import { QUEUE_NAMES } from '../../src/queue/keys.ts';
import { Redis } from 'ioredis';

const MAX_IN_FLIGHT = 8;

/** `gpt-4o-mini` answers at once; `held-<gate>` models are held by the mock until the test opens their gate. */
function config(extra: ClusterOptions['config'] = {}) {
  return (mockUrl: string): ClusterOptions['config'] => {
    const gates = ['cancel', 'bounded', 'expiry'];
    return {
      worker: { concurrency: 64, lockDurationMs: 2_000, stalledIntervalMs: 1_000 },
      providers: [
        { id: 'mock', type: 'openai', baseUrl: mockUrl, apiKey: 'sk-upstream-secret-value' },
        ...gates.map((gate) => ({ id: `held-${gate}`, type: 'openai', baseUrl: mockUrl, apiKey: 'sk-upstream-secret-value', headers: { 'x-mock-gate': gate } })),
      ],
      models: [
        { name: 'gpt-4o-mini', route: [{ provider: 'mock', model: 'mock-chat' }] },
        ...gates.map((gate) => ({ name: `held-${gate}`, route: [{ provider: `held-${gate}`, model: 'mock-chat' }] })),
      ],
      ...extra,
    };
  };
}

let h: BatchHarness;
let redis: Redis;

beforeAll(async () => {
  h = await startBatchHarness({ redisUrl: inject('redisUrl'), config: config({ batches: { maxInFlight: MAX_IN_FLIGHT, pollMs: 50 } }) });
  redis = new Redis(inject('redisUrl'));
});

afterAll(async () => {
  redis?.disconnect();
  await h?.close();
});

/** Line jobs of the batch that sit in the completions queue (waiting, prioritized, delayed or active). */
async function linesInQueue(batchId: string): Promise<number> {
  const depth = h.keys.queueDepthKeys(QUEUE_NAMES.completions);
  const [wait, active, prioritized, delayed] = await Promise.all([
    redis.lrange(depth.wait, 0, -1),
    redis.lrange(depth.active, 0, -1),
    redis.zrange(depth.prioritized, 0, -1),
    redis.zrange(depth.delayed, 0, -1),
  ]);
  return [...wait, ...active, ...prioritized, ...delayed].filter((id) => id.startsWith(`${batchId}-`)).length;
}

describe('lines in flight', () => {
  it(`never puts more than batches.maxInFlight (${MAX_IN_FLIGHT}) of a 300-line batch in the queue, and feeds more as they finish`, async () => {
    const lines = Array.from({ length: 300 }, (_, i) => toolLine(i, 'held-bounded'));
    const batch = await h.client.batches.create({ input_file_id: await h.upload(lines), endpoint: '/v1/chat/completions', completion_window: '24h' });
    // Every line is held upstream: the window fills and stays full, the workers (64 slots) could take far more.
    await waitFor(() => h.mock.stats().inFlight === MAX_IN_FLIGHT, { what: 'the window of lines to reach the upstream' });
    const samples: number[] = [];
    for (let i = 0; i < 10; i++) samples.push(await linesInQueue(batch.id));
    expect(Math.max(...samples)).toBe(MAX_IN_FLIGHT);
    h.mock.openGate('bounded');
    const done = await h.waitForStatus(batch.id, ['completed', 'failed'], 30_000);
    expect(done.request_counts).toEqual({ total: 300, completed: 300, failed: 0 });
    expect(h.mock.stats().maxInFlight).toBeLessThanOrEqual(MAX_IN_FLIGHT);
    expect(await linesInQueue(batch.id)).toBe(0);
  });
});

describe('cancel', () => {
  it('goes cancelling → cancelled, aborts the running lines upstream, drops the queued ones and keeps the finished ones', async () => {
    // Lines 0-4 answer at once; lines 5-29 are held upstream until the test opens the gate (it never does before the cancel).
    const lines = Array.from({ length: 30 }, (_, i) => toolLine(i, i < 5 ? 'gpt-4o-mini' : 'held-cancel'));
    const start = h.mock.stats();
    const batch = await h.client.batches.create({ input_file_id: await h.upload(lines), endpoint: '/v1/chat/completions', completion_window: '24h' });
    await waitFor(async () => (await h.client.batches.retrieve(batch.id)).request_counts?.completed === 5, { what: 'the five fast lines' });
    await waitFor(() => h.mock.stats().inFlight === MAX_IN_FLIGHT, { what: 'held lines to fill the window' });

    const cancelling = await h.client.batches.cancel(batch.id);
    expect(cancelling.status).toBe('cancelling');
    expect(cancelling.cancelling_at).not.toBeNull();
    const cancelled = await h.waitForStatus(batch.id, ['cancelled']);
    expect(cancelled.cancelled_at).not.toBeNull();
    expect(cancelled.request_counts).toEqual({ total: 30, completed: 5, failed: 0 });
    // The held calls were aborted (nothing generated for a cancelled batch), and no line ran after the cancel.
    const after = h.mock.stats();
    expect(after.aborted - start.aborted).toBe(MAX_IN_FLIGHT);
    expect(after.received - start.received).toBe(5 + MAX_IN_FLIGHT);
    const output = parseJsonl(await h.content(cancelled.output_file_id!));
    expect(output.map((l) => l.custom_id).sort()).toEqual(['req-0', 'req-1', 'req-2', 'req-3', 'req-4']);
    h.mock.openGate('cancel');
    expect(await linesInQueue(batch.id)).toBe(0);
    // A second cancel answers the batch as it is; the input file is free again.
    expect((await h.client.batches.cancel(batch.id)).status).toBe('cancelled');
    expect((await h.client.files.delete(cancelled.input_file_id)).deleted).toBe(true);
  });

  it('refuses to cancel a batch that has completed', async () => {
    const batch = await h.client.batches.create({ input_file_id: await h.upload([toolLine(1)]), endpoint: '/v1/chat/completions', completion_window: '24h' });
    await h.waitForStatus(batch.id, ['completed']);
    const response = await fetch(`${h.baseUrl}/v1/batches/${batch.id}/cancel`, { method: 'POST', headers: { authorization: `Bearer ${h.apiKey}` } });
    expect(response.status).toBe(400);
    expect(((await response.json()) as { error: { code: string } }).error.code).toBe('batch_not_cancellable');
  });
});

describe('the completion window', () => {
  let short: BatchHarness;
  beforeAll(async () => {
    short = await startBatchHarness({ redisUrl: inject('redisUrl'), config: config({ batches: { maxInFlight: 4, pollMs: 50, completionWindowSeconds: 3 } }) });
  });
  afterAll(async () => {
    await short?.close();
  });

  it('expires a batch past its window, keeps its finished lines and lists the rest as batch_expired in the error file', async () => {
    const lines = Array.from({ length: 12 }, (_, i) => toolLine(i, i < 4 ? 'gpt-4o-mini' : 'held-expiry'));
    const batch = await short.client.batches.create({ input_file_id: await short.upload(lines), endpoint: '/v1/chat/completions', completion_window: '24h' });
    expect(batch.expires_at! - batch.created_at).toBe(3);
    const expired = await short.waitForStatus(batch.id, ['expired', 'completed', 'failed'], 20_000);
    expect(expired.status).toBe('expired');
    expect(expired.expired_at).toBeGreaterThanOrEqual(batch.expires_at!);
    expect(expired.request_counts).toEqual({ total: 12, completed: 4, failed: 8 });
    const output = parseJsonl(await short.content(expired.output_file_id!));
    expect(output.map((l) => l.custom_id).sort()).toEqual(['req-0', 'req-1', 'req-2', 'req-3']);
    const errors = parseJsonl(await short.content(expired.error_file_id!));
    expect(errors.map((l) => l.custom_id).sort()).toEqual(lines.map((_, i) => `req-${i}`).slice(4).sort());
    for (const line of errors) {
      expect(line.response).toBeNull();
      expect(line.error).toEqual({ code: 'batch_expired', message: 'This request could not be executed before the completion window expired.' });
    }
    short.mock.openGate('expiry');
  });
});
