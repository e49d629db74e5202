// File storage on S3-compatible object storage, against a real S3-compatible HTTP server (s3rver, from npm, no install
// script: multipart uploads, ranged GETs, access keys; it does not verify SigV4 signatures themselves, so
// test/unit/batch-s3-signing.test.ts recomputes them): streamed multipart uploads, reads from an offset, the size limit
// failing an upload without leaving an object, and a whole batch whose files live in the bucket.
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { S3FileStorage, type S3Settings } from '../../src/files/s3-storage.ts';
import { FileMissingError, FileTooLargeError } from '../../src/files/storage.ts';
import { freePort } from '../support/ports.ts';
import { startBatchHarness } from './batches-harness.ts';
import { calledTool, parseJsonl, toolLine } from './batches-harness-lines.ts';

interface S3rverServer {
  run(): Promise<unknown>;
  close(): Promise<void>;
  httpServer?: { closeAllConnections(): void };
}
// s3rver ships no types: loaded through require.
const S3rver = createRequire(import.meta.url)('s3rver') as new (options: Record<string, unknown>) => S3rverServer;

const BUCKET = 'spillway-test';
let server: S3rverServer;
let directory: string;
let settings: S3Settings;

beforeAll(async () => {
  directory = mkdtempSync(join(tmpdir(), 's3rver-'));
  const port = await freePort();
  server = new S3rver({ port, address: '127.0.0.1', directory, silent: true, configureBuckets: [{ name: BUCKET }] });
  await server.run();
  // s3rver's own account: it verifies every request's SigV4 signature with this key pair.
  settings = { bucket: BUCKET, region: 'us-east-1', endpoint: `http://127.0.0.1:${port}`, forcePathStyle: true, prefix: 'test/', accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };
});

afterAll(async () => {
  server?.httpServer?.closeAllConnections();
  await server?.close();
  if (directory !== undefined) rmSync(directory, { recursive: true, force: true });
});

/** `size` bytes in 64 KiB chunks, produced lazily: the whole never exists in the test's memory either. */
function generated(size: number): Readable {
  let sent = 0;
  return new Readable({
    read() {
      if (sent >= size) return void this.push(null);
      const n = Math.min(65_536, size - sent);
      const chunk = Buffer.alloc(n);
      for (let i = 0; i < n; i++) chunk[i] = (sent + i) % 251;
      sent += n;
      this.push(chunk);
    },
  });
}

async function sha256(stream: Readable): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of stream) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

describe('S3 file storage', () => {
  it('uploads a 20 MB stream as a multipart upload and reads it back whole and from an offset', async () => {
    const storage = new S3FileStorage(settings);
    try {
      const size = 20 * 1024 * 1024 + 123;
      expect(await storage.put('files/file-big', generated(size), { maxBytes: size })).toEqual({ bytes: size });
      expect(await sha256(await storage.read('files/file-big'))).toBe(await sha256(generated(size)));
      const offset = 9 * 1024 * 1024 + 7;
      const tail = generated(size);
      const skip = async function* () {
        let at = 0;
        for await (const chunk of tail as AsyncIterable<Buffer>) {
          const from = Math.max(0, offset - at);
          if (from < chunk.length) yield chunk.subarray(from);
          at += chunk.length;
        }
      };
      expect(await sha256(await storage.read('files/file-big', { start: offset }))).toBe(await sha256(Readable.from(skip())));
      // Reading from the very end gives nothing, not an error.
      expect(await sha256(await storage.read('files/file-big', { start: size }))).toBe(createHash('sha256').digest('hex'));
      await storage.delete('files/file-big');
      await expect(storage.read('files/file-big')).rejects.toBeInstanceOf(FileMissingError);
    } finally {
      await storage.close();
    }
  });

  it('fails an upload past maxBytes and leaves no object behind', async () => {
    const storage = new S3FileStorage(settings);
    try {
      await expect(storage.put('files/file-too-big', generated(10 * 1024 * 1024), { maxBytes: 9 * 1024 * 1024 })).rejects.toBeInstanceOf(FileTooLargeError);
      const listed = await storage.client.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: 'test/files/file-too-big' }));
      expect(listed.KeyCount ?? 0).toBe(0);
    } finally {
      await storage.close();
    }
  });

  it('sends the configured access key in a SigV4 Authorization header (an unknown key is refused by the server)', async () => {
    const storage = new S3FileStorage({ ...settings, accessKeyId: 'NOT-A-KEY' });
    try {
      await expect(storage.put('files/file-unsigned', Readable.from([Buffer.from('x')]))).rejects.toMatchObject({ name: 'InvalidAccessKeyId' });
    } finally {
      await storage.close();
    }
  });

  it('runs a whole batch with its input and output files in the bucket', async () => {
    const h = await startBatchHarness({ redisUrl: inject('redisUrl'), config: { files: { s3: settings } } });
    try {
      const lines = Array.from({ length: 40 }, (_, i) => toolLine(i));
      const batch = await h.client.batches.create({ input_file_id: await h.upload(lines), endpoint: '/v1/chat/completions', completion_window: '24h' });
      const done = await h.waitForStatus(batch.id, ['completed', 'failed']);
      expect(done.request_counts).toEqual({ total: 40, completed: 40, failed: 0 });
      const output = parseJsonl(await h.content(done.output_file_id!));
      expect(output.map((l) => calledTool(l)).sort()).toEqual(lines.map((_, i) => `answer_${i}`).sort());
      const storage = new S3FileStorage(settings);
      try {
        const listed = await storage.client.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: 'test/' }));
        const keys = (listed.Contents ?? []).map((o) => o.Key);
        expect(keys).toContain(`test/files/${done.input_file_id}`);
        expect(keys).toContain(`test/files/${done.output_file_id}`);
        // The segments were folded into the output file and deleted.
        expect(keys.filter((k) => k?.startsWith(`test/batches/${batch.id}/`))).toEqual([]);
      } finally {
        await storage.close();
      }
    } finally {
      await h.close();
    }
  });
});
