// File storage in a local directory (a volume shared by every ingress and worker): write to a temporary name, fsync,
// rename, so a reader never sees half a file and a crash leaves only a temporary file behind. Never reads a whole file.
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, open, rename, rm, stat } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { dirname, join, resolve } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { ByteLimit } from './byte-limit.ts';
import { checkKey, FileMissingError, type FileStorage, type PutOptions } from './storage.ts';

export class LocalFileStorage implements FileStorage {
  readonly describe: string;
  private readonly root: string;

  constructor(dir: string) {
    this.root = resolve(dir);
    this.describe = `dir:${this.root}`;
  }

  async put(key: string, body: Readable, options: PutOptions = {}): Promise<{ bytes: number }> {
    const path = this.pathOf(key);
    await mkdir(dirname(path), { recursive: true });
    // A name of its own per write: two writers of one key (a driver taken over after a stall) never mix their bytes.
    const temporary = `${path}.part-${randomBytes(6).toString('hex')}`;
    const limit = new ByteLimit(options.maxBytes);
    try {
      await pipeline(body, limit, createWriteStream(temporary, { flags: 'wx' }));
      // The bytes reach the disk before the name does: after a power cut the file is whole or absent.
      const handle = await open(temporary, 'r');
      try {
        await handle.sync();
      } finally {
        await handle.close();
      }
      await rename(temporary, path);
    } catch (err) {
      body.destroy();
      await rm(temporary, { force: true });
      throw err;
    }
    return { bytes: limit.bytes };
  }

  async read(key: string, options: { start?: number } = {}): Promise<Readable> {
    const path = this.pathOf(key);
    try {
      await stat(path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new FileMissingError(key);
      throw err;
    }
    return createReadStream(path, { start: options.start ?? 0, highWaterMark: 256 * 1024 });
  }

  async delete(key: string): Promise<void> {
    await rm(this.pathOf(key), { force: true });
  }

  async close(): Promise<void> {
    // Nothing held open between calls.
  }

  private pathOf(key: string): string {
    return join(this.root, checkKey(key));
  }
}
