// /v1/files through an in-process Spillway with the official client and plain HTTP: uploads stream into the local
// directory (byte for byte, nothing left behind by a refused one), the size limit answers 413, a file a running batch
// reads cannot be deleted, lists page per tenant, and expired files' bytes are swept.
import { createHash } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { toFile } from 'openai';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { FileRecords } from '../../src/files/file-records.ts';
import { LocalFileStorage } from '../../src/files/local-storage.ts';
import { createRedisKeys } from '../../src/queue/keys.ts';
import { uniquePrefix } from '../support/redis.ts';
import { startBatchHarness, type BatchHarness } from './batches-harness.ts';
import { toolLine } from './batches-harness-lines.ts';

const MAX_BYTES = 2 * 1024 * 1024;

let h: BatchHarness;

beforeAll(async () => {
  h = await startBatchHarness({
    redisUrl: inject('redisUrl'),
    config: (mockUrl) => ({
      files: { maxBytes: MAX_BYTES },
      providers: [
        { id: 'mock', type: 'openai', baseUrl: mockUrl, apiKey: 'sk-upstream-secret-value' },
        { id: 'held', type: 'openai', baseUrl: mockUrl, apiKey: 'sk-upstream-secret-value', headers: { 'x-mock-gate': 'files-held' } },
      ],
      models: [
        { name: 'gpt-4o-mini', route: [{ provider: 'mock', model: 'mock-chat' }] },
        { name: 'held', route: [{ provider: 'held', model: 'mock-chat' }] },
      ],
    }),
  });
});

afterAll(async () => {
  h?.mock.openGate('files-held');
  await h?.close();
});

/** Files the storage holds (the bytes of uploads, outputs and segments), relative names. */
function storedNames(): string[] {
  const dir = join(h.filesDir, 'files');
  return existsSync(dir) ? readdirSync(dir) : [];
}

async function rawUpload(body: FormData): Promise<{ status: number; json: { error?: { code: string | null; param: string | null; type: string } } }> {
  const response = await fetch(`${h.baseUrl}/v1/files`, { method: 'POST', headers: { authorization: `Bearer ${h.apiKey}` }, body });
  return { status: response.status, json: (await response.json()) as { error?: { code: string | null; param: string | null; type: string } } };
}

describe('files', () => {
  it('stores an upload byte for byte and streams it back', async () => {
    // About 1.5 MB of lines: far larger than any single chunk of the multipart stream, under the test's 2 MiB limit.
    const text = `${Array.from({ length: 6_500 }, (_, i) => toolLine(i)).join('\n')}\n`;
    expect(Buffer.byteLength(text)).toBeLessThan(MAX_BYTES);
    const file = await h.client.files.create({ file: await toFile(Buffer.from(text), 'big.jsonl'), purpose: 'batch' });
    expect(file).toMatchObject({ object: 'file', purpose: 'batch', filename: 'big.jsonl', bytes: Buffer.byteLength(text), status: 'processed' });
    expect(file.id).toMatch(/^file-[A-Za-z0-9]{24}$/);
    expect(file.expires_at! - file.created_at).toBe(30 * 86_400);
    const downloaded = Buffer.from(await (await h.client.files.content(file.id)).arrayBuffer());
    expect(createHash('sha256').update(downloaded).digest('hex')).toBe(createHash('sha256').update(text).digest('hex'));
    expect(storedNames()).toContain(file.id);

    const deleted = await h.client.files.delete(file.id);
    expect(deleted).toEqual({ id: file.id, object: 'file', deleted: true });
    await expect(h.client.files.retrieve(file.id)).rejects.toMatchObject({ status: 404 });
    expect(storedNames()).not.toContain(file.id);
  });

  it('answers 413 past files.maxBytes and keeps nothing of the upload', async () => {
    const before = storedNames();
    const form = new FormData();
    form.append('purpose', 'batch');
    form.append('file', new Blob([Buffer.alloc(MAX_BYTES + 1, 0x61)]), 'too-big.jsonl');
    const { status, json } = await rawUpload(form);
    expect(status).toBe(413);
    expect(json.error).toMatchObject({ type: 'invalid_request_error', code: 'file_too_large', param: 'file' });
    expect(storedNames()).toEqual(before);
    expect(readdirSync(join(h.filesDir, 'files')).filter((name) => name.includes('.part-'))).toEqual([]);
  });

  it('refuses a purpose other than batch, a missing file and a bad expires_after, in OpenAI\'s error shape', async () => {
    const before = storedNames();
    const wrongPurpose = new FormData();
    wrongPurpose.append('purpose', 'fine-tune');
    wrongPurpose.append('file', new Blob(['{}\n']), 'x.jsonl');
    expect(await rawUpload(wrongPurpose)).toMatchObject({ status: 400, json: { error: { param: 'purpose', code: 'invalid_value' } } });
    const noFile = new FormData();
    noFile.append('purpose', 'batch');
    expect(await rawUpload(noFile)).toMatchObject({ status: 400, json: { error: { param: 'file', code: 'missing_required_parameter' } } });
    const badExpiry = new FormData();
    badExpiry.append('purpose', 'batch');
    badExpiry.append('expires_after[anchor]', 'created_at');
    badExpiry.append('expires_after[seconds]', '60');
    badExpiry.append('file', new Blob(['{}\n']), 'x.jsonl');
    expect(await rawUpload(badExpiry)).toMatchObject({ status: 400, json: { error: { param: 'expires_after.seconds' } } });
    expect(storedNames()).toEqual(before);
  });

  it('honours expires_after from the official client', async () => {
    const file = await h.client.files.create({ file: await toFile(Buffer.from(`${toolLine(1)}\n`), 'short.jsonl'), purpose: 'batch', expires_after: { anchor: 'created_at', seconds: 3_600 } });
    expect(file.expires_at! - file.created_at).toBe(3_600);
  });

  it('lists the tenant\'s files newest first, by page, filtered by purpose', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) ids.push(await h.upload([toolLine(i)], `list-${i}.jsonl`));
    const first = await h.client.files.list({ limit: 2, purpose: 'batch' });
    expect(first.data.map((f) => f.id)).toEqual([ids[2], ids[1]]);
    expect(first.has_more).toBe(true);
    const second = await h.client.files.list({ limit: 2, purpose: 'batch', after: ids[1]! });
    expect(second.data[0]!.id).toBe(ids[0]);
    const ascending = await h.client.files.list({ order: 'asc', purpose: 'batch' });
    expect(ascending.data.map((f) => f.id).slice(-3)).toEqual(ids);
    expect((await h.client.files.list({ purpose: 'batch_output' })).data.every((f) => f.purpose === 'batch_output')).toBe(true);
  });

  it('any filename a client uploads downloads again: non-ASCII and control characters in a plain fallback and RFC 5987', async () => {
    for (const name of ['日本語.jsonl', 'tab\there "quoted" \\ back.jsonl', 'bell\u0007.jsonl']) {
      const text = `${toolLine(1)}\n`;
      const file = await h.client.files.create({ file: await toFile(Buffer.from(text), name), purpose: 'batch' });
      const response = await fetch(`${h.baseUrl}/v1/files/${file.id}/content`, { headers: { authorization: `Bearer ${h.apiKey}` } });
      expect(response.status).toBe(200);
      expect(await response.text()).toBe(text);
      const disposition = response.headers.get('content-disposition')!;
      expect(disposition).toMatch(/^attachment; filename="[\x20-\x7e]*"; filename\*=UTF-8''/);
      // The name as stored (the multipart parser keeps what follows a backslash, as a path's last part).
      expect(decodeURIComponent(disposition.split("UTF-8''")[1]!)).toBe(file.filename);
    }
  });

  it('a malformed multipart body is a 400 the client should not retry, not a 503', async () => {
    for (const [contentType, body] of [
      ['multipart/form-data', 'no boundary'],
      ['multipart/form-data; boundary=zzz', 'garbage without any part'],
      ['multipart/form-data; boundary=zzz', '--zzz\r\ncontent-disposition: form-data; name="purpose"\r\n\r\nbatch'],
    ]) {
      const response = await fetch(`${h.baseUrl}/v1/files`, { method: 'POST', headers: { authorization: `Bearer ${h.apiKey}`, 'content-type': contentType! }, body });
      expect(response.status, `${contentType}: ${body}`).toBe(400);
      expect(((await response.json()) as { error: { type: string } }).error.type).toBe('invalid_request_error');
    }
  });

  it('lists nothing, not a 400, for a purpose this broker never stores (as OpenAI answers)', async () => {
    const list = await fetch(`${h.baseUrl}/v1/files?purpose=fine-tune`, { headers: { authorization: `Bearer ${h.apiKey}` } });
    expect(list.status).toBe(200);
    expect(((await list.json()) as { data: unknown[] }).data).toEqual([]);
  });

  it('refuses to delete the input file of a batch still running (409), and allows it once the batch has ended', async () => {
    const fileId = await h.upload([toolLine(1, 'held')]);
    const batch = await h.client.batches.create({ input_file_id: fileId, endpoint: '/v1/chat/completions', completion_window: '24h' });
    await h.waitForStatus(batch.id, ['in_progress']);
    await expect(h.client.files.delete(fileId)).rejects.toMatchObject({ status: 409, code: 'file_in_use' });
    // Pinned for as long as the batch may run: past its window, plus a day; and the expiry index lives that long too,
    // or the file's bytes would never be swept.
    const pinnedUntil = (await h.client.files.retrieve(fileId)).expires_at!;
    expect(pinnedUntil).toBeGreaterThanOrEqual(batch.expires_at! + 86_400);
    const redis = new Redis(inject('redisUrl'));
    try {
      expect(await redis.pttl(h.keys.fileExpiry)).toBeGreaterThan(pinnedUntil * 1000 - Date.now());
    } finally {
      redis.disconnect();
    }
    h.mock.openGate('files-held');
    await h.waitForStatus(batch.id, ['completed']);
    expect((await h.client.files.delete(fileId)).deleted).toBe(true);
  });
});

describe('expiry', () => {
  it('a pinned file moved later in the expiry index keeps the index alive until then (else its bytes are never swept)', async () => {
    const redis = new Redis(inject('redisUrl'));
    try {
      const keys = createRedisKeys(uniquePrefix('file-expiry'));
      const records = new FileRecords(redis, keys);
      const until = Date.now() + 48 * 3_600_000;
      await records.extendExpiry('acme', 'file-pinned', until);
      expect(await redis.pttl(keys.fileExpiry)).toBeGreaterThan(until - Date.now());
    } finally {
      redis.disconnect();
    }
  });

  it('the sweeper deletes the bytes and metadata of files past their expiry, and only those', async () => {
    const redis = new Redis(inject('redisUrl'));
    try {
      const records = new FileRecords(redis, h.keys);
      const storage = new LocalFileStorage(join(h.filesDir));
      const short = await h.client.files.create({ file: await toFile(Buffer.from(`${toolLine(1)}\n`), 'a.jsonl'), purpose: 'batch', expires_after: { anchor: 'created_at', seconds: 3_600 } });
      const long = await h.upload([toolLine(2)]);
      // As if two hours had passed: the one-hour file is due, the 30-day one is not.
      await records.sweep(storage, Date.now() + 2 * 3_600_000, 10_000);
      expect(storedNames()).not.toContain(short.id);
      expect(storedNames()).toContain(long);
      expect(await records.get('acme', short.id)).toBeUndefined();
      expect((await h.client.files.retrieve(long)).id).toBe(long);
    } finally {
      redis.disconnect();
    }
  });
});
