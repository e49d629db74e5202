// A batch's output and error files: finished lines are flushed from Redis into segment files as they accumulate (so
// Redis holds a bounded tail, never the file), and at the end the segments are streamed into the two files OpenAI's
// clients download. Every write is a stream; a flush is committed in Redis only if no other driver moved on first.
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import type { FileStorage } from '../files/storage.ts';
import type { FileRecords } from '../files/file-records.ts';
import { storageKeyOf, type FileRecord } from '../files/file-object.ts';
import type { BatchRecord } from './batch-record.ts';
import type { BatchStore, Segment } from './batch-store.ts';
import { readLines } from './input-lines.ts';
import { lineForError } from './line-output.ts';
import { bitSet } from './feeder.ts';

/** A flush is due past this many waiting lines or bytes, or this long after the previous one. */
export const FLUSH_LINES = 1_000;
export const FLUSH_BYTES = 4 * 1024 * 1024;
export const FLUSH_INTERVAL_MS = 1_000;
/** Results read from Redis per round trip while writing a segment (bounds the memory a flush uses). */
const PAGE = 200;

export interface OutputDeps {
  store: BatchStore;
  storage: FileStorage;
  files: FileRecords;
  outputTtlMs: number;
}

export class OutputFiles {
  private readonly deps: OutputDeps;
  private lastFlush = Date.now();

  constructor(deps: OutputDeps) {
    this.deps = deps;
  }

  /** Flushes the waiting results if a flush is due (or `force`); true when it flushed something. */
  async flush(batch: BatchRecord, force = false): Promise<boolean> {
    const { store, storage } = this.deps;
    const count = await store.pendingCount(batch);
    if (count === 0) return false;
    const due = force || count >= FLUSH_LINES || batch.pendingBytes >= FLUSH_BYTES || Date.now() - this.lastFlush >= FLUSH_INTERVAL_MS;
    if (!due) return false;
    const number = batch.segments;
    const written: Segment[] = [];
    let bytes = 0;
    for (const kind of ['output', 'error'] as const) {
      const prefix = kind === 'output' ? 'o' : 'e';
      let lines = 0;
      const pages = async function* () {
        for (let start = 0; start < count; start += PAGE) {
          const entries = await store.pendingResults(batch, start, Math.min(PAGE, count - start));
          const chunk: string[] = [];
          for (const entry of entries) {
            if (kind === 'output') bytes += Buffer.byteLength(entry);
            if (!entry.startsWith(prefix)) continue;
            chunk.push(entry.slice(1), '\n');
            lines++;
          }
          if (chunk.length > 0) yield chunk.join('');
        }
      };
      // Its own name per flush attempt: a driver that lost the race deletes only its own files.
      const key = `batches/${batch.id}/${String(number).padStart(6, '0')}-${kind}-${randomBytes(4).toString('hex')}.jsonl`;
      const { bytes: size } = await storage.put(key, Readable.from(pages()));
      if (lines === 0) await storage.delete(key);
      else written.push({ kind, key, bytes: size, lines });
    }
    const committed = await store.commitSegment(batch, number, count, bytes, written);
    if (!committed) {
      await Promise.all(written.map((segment) => storage.delete(segment.key)));
      return false;
    }
    batch.segments = number + 1;
    batch.pendingBytes -= bytes;
    this.lastFlush = Date.now();
    return true;
  }

  /**
   * The error lines of an expired batch's requests that never ran (`batch_expired`), streamed from the input file and
   * the done bitmap into one more error segment (its key fixed: writing it again writes the same bytes).
   */
  async expiredLines(batch: BatchRecord): Promise<{ segment: Segment | undefined; lines: number }> {
    const done = await this.deps.store.doneBitmap(batch);
    let lines = 0;
    const input = await this.deps.storage.read(storageKeyOf(batch.inputFileId));
    const rows = async function* () {
      for await (const { line, text } of readLines(input)) {
        if (bitSet(done, line)) continue;
        lines++;
        const customId = (JSON.parse(text) as { custom_id: string }).custom_id;
        yield `${lineForError(batch.id, line, customId, 'batch_expired', 'This request could not be executed before the completion window expired.').text}\n`;
      }
    };
    const key = `batches/${batch.id}/expired.jsonl`;
    const { bytes } = await this.deps.storage.put(key, Readable.from(rows()));
    if (lines === 0) {
      await this.deps.storage.delete(key);
      return { segment: undefined, lines: 0 };
    }
    return { segment: { kind: 'error', key, bytes, lines }, lines };
  }

  /**
   * The output and error files from the segments, streamed one after the other, recorded as `batch_output` files of
   * the tenant. Their ids are derived from the batch: a driver that does this again after a crash rewrites the same.
   */
  async assemble(batch: BatchRecord, segments: readonly Segment[]): Promise<{ outputFileId?: string; errorFileId?: string }> {
    const ids: { outputFileId?: string; errorFileId?: string } = {};
    for (const kind of ['output', 'error'] as const) {
      const parts = segments.filter((segment) => segment.kind === kind);
      if (parts.length === 0) continue;
      const fileId = outputFileIdOf(batch.id, kind);
      const storage = this.deps.storage;
      const concat = async function* () {
        for (const part of parts) yield* (await storage.read(part.key)) as AsyncIterable<Buffer>;
      };
      const { bytes } = await storage.put(storageKeyOf(fileId), Readable.from(concat()));
      const now = Date.now();
      const record: FileRecord = {
        id: fileId,
        tenant: batch.tenant,
        bytes,
        createdAt: now,
        expiresAt: now + (batch.outputTtlMs ?? this.deps.outputTtlMs),
        filename: `${batch.id}_${kind}.jsonl`,
        purpose: 'batch_output',
        activeBatches: 0,
      };
      await this.deps.files.create(record);
      if (kind === 'output') ids.outputFileId = fileId;
      else ids.errorFileId = fileId;
    }
    return ids;
  }

  /** Deletes the segment files (the assembled files hold their bytes now). */
  async discardSegments(segments: readonly Segment[]): Promise<void> {
    await Promise.all(segments.map((segment) => this.deps.storage.delete(segment.key)));
  }
}

/** `file-` and 24 letters and digits derived from the batch and the kind: the same on every attempt. */
export function outputFileIdOf(batchId: string, kind: 'output' | 'error'): string {
  const digest = createHash('sha256').update(`${batchId}\n${kind}`).digest('base64').replace(/[^A-Za-z0-9]/g, '');
  return `file-${digest.slice(0, 24)}`;
}
