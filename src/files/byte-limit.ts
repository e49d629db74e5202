// A pass-through stream that counts bytes and fails past a limit: how both storages enforce `files.maxBytes` while
// streaming, without ever buffering the file. Never changes the bytes it passes on.
import { Transform, type TransformCallback } from 'node:stream';
import { FileTooLargeError } from './storage.ts';

export class ByteLimit extends Transform {
  bytes = 0;
  private readonly limit: number;

  constructor(limit = Number.POSITIVE_INFINITY) {
    super();
    this.limit = limit;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.bytes += chunk.length;
    if (this.bytes > this.limit) {
      callback(new FileTooLargeError(this.limit));
      return;
    }
    callback(null, chunk);
  }
}
