// Where the bytes of files live: a small interface (put a stream, read a stream from an offset, delete), with a local
// directory by default and S3-compatible object storage where configured. Never holds a whole file in memory.
import type { Readable } from 'node:stream';
import type { Config } from '../config/schema.ts';

export interface PutOptions {
  /** Refuse (FileTooLargeError, nothing kept) once more than this many bytes arrive. */
  maxBytes?: number;
}

export interface FileStorage {
  /** Where the bytes go, for logs: `dir:<path>` or `s3://<bucket>/<prefix>`. */
  readonly describe: string;
  /**
   * Writes `body` under `key`, streaming. Atomic for readers: a key holds either its whole earlier content, or the
   * whole new one, never a part (a put that fails leaves nothing). Resolves with the number of bytes written.
   */
  put(key: string, body: Readable, options?: PutOptions): Promise<{ bytes: number }>;
  /** The bytes of `key` from byte `start` (default 0) to the end. Rejects with FileMissingError for an unknown key. */
  read(key: string, options?: { start?: number }): Promise<Readable>;
  /** Removes `key`; a key already gone is fine. */
  delete(key: string): Promise<void>;
  close(): Promise<void>;
}

/** More bytes arrived than `maxBytes`: the write was abandoned. */
export class FileTooLargeError extends Error {
  readonly limitBytes: number;
  constructor(limitBytes: number) {
    super(`file larger than ${limitBytes} bytes`);
    this.name = 'FileTooLargeError';
    this.limitBytes = limitBytes;
  }
}

/** The key names nothing in the storage (never written, deleted, or expired). */
export class FileMissingError extends Error {
  constructor(key: string) {
    super(`no stored file under ${key}`);
    this.name = 'FileMissingError';
  }
}

/**
 * Keys are ours (ids and fixed words), never a client's file name: letters, digits, `-`, `_`, `.` in `/`-separated
 * segments, no `..`. Checked by both implementations so a bug can never reach outside the directory or the prefix.
 */
const KEY = /^(?!.*\.\.)[A-Za-z0-9_-][A-Za-z0-9._-]*(\/[A-Za-z0-9_-][A-Za-z0-9._-]*)*$/;

export function checkKey(key: string): string {
  if (!KEY.test(key) || key.length > 512) throw new Error(`invalid storage key: ${JSON.stringify(key.slice(0, 80))}`);
  return key;
}

/** The storage the config names: S3 when `files.s3` is set, else the local directory. Loaded lazily (the AWS SDK is large). */
export async function createFileStorage(files: Config['files']): Promise<FileStorage> {
  if (files.s3 !== undefined) {
    const { S3FileStorage } = await import('./s3-storage.ts');
    return new S3FileStorage(files.s3);
  }
  const { LocalFileStorage } = await import('./local-storage.ts');
  return new LocalFileStorage(files.dir);
}
