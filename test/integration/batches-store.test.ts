// The batch store's scripts on real Redis: a line is recorded once however often its result arrives, a flush is
// committed by one driver only, a line's run lease is held by one run, and every key a batch and its files write
// carries a TTL (nothing grows without bound).
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createRedisKeys, type RedisKeys } from '../../src/queue/keys.ts';
import { BatchStore } from '../../src/batches/batch-store.ts';
import { FileRecords } from '../../src/files/file-records.ts';
import type { BatchRecord } from '../../src/batches/batch-record.ts';
import { uniquePrefix } from '../support/redis.ts';

let redis: Redis;
let keys: RedisKeys;
let store: BatchStore;
let files: FileRecords;
const NO_USAGE = { input: 0, cached: 0, output: 0, reasoning: 0, total: 0 };

beforeAll(() => {
  redis = new Redis(inject('redisUrl'));
  keys = createRedisKeys(uniquePrefix('batch-store'));
  store = new BatchStore(redis, keys, { retentionSeconds: 3_600 });
  files = new FileRecords(redis, keys);
});

afterAll(() => {
  redis?.disconnect();
});

async function newBatch(id: string): Promise<BatchRecord> {
  const now = Date.now();
  await files.create({ id: `file-${id}`, tenant: 't', bytes: 10, createdAt: now, expiresAt: now + 3_600_000, filename: 'in.jsonl', purpose: 'batch', activeBatches: 0 });
  const record = { id, tenant: 't', createdAt: now, expiresAt: now + 86_400_000, inputFileId: `file-${id}` };
  const fields = ['id', id, 'tenant', 't', 'status', 'in_progress', 'endpoint', 'chat.completions', 'input_file_id', record.inputFileId, 'completion_window', '24h', 'created_at', String(now), 'expires_at', String(record.expiresAt), 'total', '3'];
  expect(await store.create(record, fields, record.expiresAt + 86_400_000)).toBe('created');
  return (await store.get('t', id))!;
}

describe('batch store', () => {
  it('records a line once: a second result for it changes nothing', async () => {
    const batch = await newBatch('batch_once');
    await store.markInFlight(batch, [{ line: 1, offset: 0 }], 10);
    expect(await store.recordLine('t', batch.id, 1, 'o', '{"first":true}', { ...NO_USAGE, total: 5 })).toBe('recorded');
    expect(await store.recordLine('t', batch.id, 1, 'e', '{"second":true}', { ...NO_USAGE, total: 5 })).toBe('duplicate');
    const after = (await store.get('t', batch.id))!;
    expect([after.completed, after.failed, after.usage.total]).toEqual([1, 0, 5]);
    expect(await store.pendingResults(after, 0, 10)).toEqual(['o{"first":true}']);
    expect(await store.inFlightCount(after)).toBe(0);
  });

  it('commits a flush for one driver only: the segment number fences a second one', async () => {
    const batch = await newBatch('batch_fence');
    await store.recordLine('t', batch.id, 1, 'o', '{"a":1}', NO_USAGE);
    const segment = { kind: 'output' as const, key: 'batches/x/0', bytes: 8, lines: 1 };
    expect(await store.commitSegment(batch, 0, 1, 8, [segment])).toBe(true);
    expect(await store.commitSegment(batch, 0, 1, 8, [{ ...segment, key: 'batches/x/0-other' }])).toBe(false);
    expect(await store.segments(batch)).toEqual([segment]);
    expect(await store.pendingCount(batch)).toBe(0);
  });

  it('lets one run hold a line at a time, and only that run renew or release it', async () => {
    const batch = await newBatch('batch_runs');
    expect(await store.claimRun('t', batch.id, 2, 'run-a', 5_000)).toEqual({ granted: true });
    const second = await store.claimRun('t', batch.id, 2, 'run-b', 5_000);
    expect(second.granted).toBe(false);
    expect(await store.updateRun('t', batch.id, 2, 'run-b', 'release')).toBe(false);
    expect(await store.updateRun('t', batch.id, 2, 'run-a', 'release')).toBe(true);
    expect(await store.claimRun('t', batch.id, 2, 'run-b', 5_000)).toEqual({ granted: true });
  });

  it('pins the input file while the batch runs and unpins it when the batch ends', async () => {
    const batch = await newBatch('batch_pin');
    expect((await files.get('t', batch.inputFileId))!.activeBatches).toBe(1);
    expect((await files.get('t', batch.inputFileId))!.expiresAt).toBeGreaterThan(batch.expiresAt);
    expect((await store.finish(batch, 'completed', {})).changed).toBe(true);
    expect((await store.finish(batch, 'cancelled', {})).changed).toBe(false);
    expect((await files.get('t', batch.inputFileId))!.activeBatches).toBe(0);
  });

  it('gives every key it writes a TTL', async () => {
    const batch = await newBatch('batch_ttl');
    await store.markInFlight(batch, [{ line: 1, offset: 0 }, { line: 2, offset: 5 }], 10);
    await store.recordLine('t', batch.id, 1, 'o', '{}', NO_USAGE);
    await store.commitSegment(batch, 0, 0, 0, [{ kind: 'output', key: 'k', bytes: 1, lines: 1 }]);
    await store.claimRun('t', batch.id, 2, 'run', 5_000);
    await store.recordDelivery('t', batch.id, '{}', 'delivered', 1, 10);
    const written = [...(await redis.keys(`${keys.tenantKeys('t').batches.replace(/:batches$/, '')}*`)), keys.fileExpiry];
    expect(written.length).toBeGreaterThan(8);
    for (const key of written) expect(await redis.pttl(key), key).toBeGreaterThan(0);
  });
});
