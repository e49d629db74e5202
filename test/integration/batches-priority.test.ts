// A synchronous request of a tenant whose 10,000-line batch fills the workers waits only for the next free worker slot,
// as it would behind any running job: it is first in line, ahead of every batch line still waiting (they carry the
// `batch` class's priorities, after every `normal` one), and it starts before all of them. Shown by queue positions
// and start order, not by timings: the running lines are held upstream while the positions are read, then released.
import { createHash } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { CompletionQueue } from '../../src/queue/completion-queue.ts';
import { QUEUE_NAMES } from '../../src/queue/keys.ts';
import { TENANT_KEY } from '../support/spillway-cluster.ts';
import { waitFor } from '../support/wait.ts';
import { startBatchHarness, type BatchHarness } from './batches-harness.ts';
import { toolLine } from './batches-harness-lines.ts';

const LINES = 10_000;
const CONCURRENCY = 4;
const IN_FLIGHT = 40;
const hash = (key: string) => `sha256:${createHash('sha256').update(key).digest('hex')}`;

let h: BatchHarness;
let redis: Redis;
let queue: CompletionQueue;

beforeAll(async () => {
  h = await startBatchHarness({
    redisUrl: inject('redisUrl'),
    config: (mockUrl) => ({
      worker: { concurrency: CONCURRENCY, lockDurationMs: 5_000, stalledIntervalMs: 1_000 },
      batches: { maxInFlight: IN_FLIGHT, pollMs: 50 },
      // Finished jobs kept, so their start times can be read afterwards.
      jobs: { keepCompletedSeconds: 600 },
      providers: [
        { id: 'mock', type: 'openai', baseUrl: mockUrl, apiKey: 'sk-upstream-secret-value' },
        { id: 'held', type: 'openai', baseUrl: mockUrl, apiKey: 'sk-upstream-secret-value', headers: { 'x-mock-gate': 'lines' } },
      ],
      models: [
        { name: 'gpt-4o-mini', route: [{ provider: 'mock', model: 'mock-chat' }] },
        { name: 'held', route: [{ provider: 'held', model: 'mock-chat' }] },
      ],
      // Two tenants: fair share is on, so every job carries a priority (the sync request its tenant's `normal` class).
      tenants: [
        { id: 'acme', keys: [hash(TENANT_KEY)] },
        { id: 'globex', keys: [hash('sk-test-globex-0000000000')] },
      ],
    }),
  });
  redis = new Redis(inject('redisUrl'));
  queue = new CompletionQueue({ connection: redis, keys: h.keys, keepCompletedSeconds: 600, keepFailedSeconds: 600 });
});

afterAll(async () => {
  h?.mock.openGate('lines');
  await queue?.close();
  redis?.disconnect();
  await h?.close();
});

/** The completions queue's waiting jobs in the order workers take them: the plain wait list, then by priority. */
async function line(): Promise<string[]> {
  const depth = h.keys.queueDepthKeys(QUEUE_NAMES.completions);
  const wait = await redis.lrange(depth.wait, 0, -1);
  const prioritized = await redis.zrange(depth.prioritized, 0, -1);
  // BullMQ's wait list is consumed from its tail (RPOPLPUSH): the next job is the last element.
  return [...wait.reverse(), ...prioritized];
}

describe('a synchronous request during a 10,000-line batch', () => {
  it('is first in line ahead of every waiting batch line, and starts before all of them', async () => {
    // Validation, upload and the first window of a 10,000-line batch; every line is held upstream once it runs.
    const lines = Array.from({ length: LINES }, (_, i) => toolLine(i, 'held'));
    const batch = await h.client.batches.create({ input_file_id: await h.upload(lines), endpoint: '/v1/chat/completions', completion_window: '24h' });
    await waitFor(() => h.mock.stats().inFlight === CONCURRENCY, { timeoutMs: 20_000, what: 'every worker slot busy with a batch line' });
    await waitFor(async () => (await line()).filter((id) => id.startsWith(batch.id)).length === IN_FLIGHT - CONCURRENCY, { what: 'the rest of the window waiting' });

    // The tenant's synchronous request: it waits for a worker slot like any request when the pool is busy.
    const answer = h.client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'now' }] }, { headers: { 'x-request-id': 'sync-during-batch' } });
    const waiting = await waitFor(async () => {
      const ids = await line();
      return ids.some((id) => !id.startsWith(batch.id)) ? ids : undefined;
    }, { what: 'the synchronous request in the queue' });
    const waitingLines = waiting.filter((id) => id.startsWith(batch.id));
    expect(waitingLines).toHaveLength(IN_FLIGHT - CONCURRENCY);
    // Position 1: the next worker slot that frees takes it, whatever the batch has waiting.
    expect(waiting.findIndex((id) => !id.startsWith(batch.id))).toBe(0);
    const syncJobId = waiting[0]!;

    // Free the slots: the synchronous request starts first, then the batch lines that were waiting.
    h.mock.openGate('lines');
    const completion = await answer;
    expect(completion.object).toBe('chat.completion');
    const syncJob = await waitFor(async () => (await queue.getJob(syncJobId))?.processedOn !== undefined ? queue.getJob(syncJobId) : undefined, { what: 'the sync job' });
    const lineStarts = await waitFor(async () => {
      const jobs = await Promise.all(waitingLines.map((id) => queue.getJob(id)));
      return jobs.every((j) => j?.processedOn !== undefined) ? jobs.map((j) => j!.processedOn!) : undefined;
    }, { timeoutMs: 20_000, what: 'the waiting batch lines to start' });
    expect(Math.min(...lineStarts)).toBeGreaterThanOrEqual(syncJob!.processedOn!);
    // Its wait was the wait for a free slot: its priority is of the `normal` class, every line's of the `batch` class.
    expect(syncJob!.opts.priority).toBeLessThan(Math.min(...(await Promise.all(waitingLines.map(async (id) => (await queue.getJob(id))!.opts.priority!)))));

    await h.client.batches.cancel(batch.id);
    const cancelled = await h.waitForStatus(batch.id, ['cancelled', 'completed'], 30_000);
    expect(cancelled.request_counts?.total).toBe(LINES);
  }, 60_000);
});
