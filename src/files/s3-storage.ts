// File storage in an S3-compatible bucket through the AWS SDK: uploads stream as multipart (lib-storage: at most
// queueSize × partSize bytes buffered), reads stream with a Range from any offset. Never holds a whole file in memory.
import { PassThrough, Readable } from 'node:stream';
import { DeleteObjectCommand, GetObjectCommand, S3Client, type S3ClientConfig } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import type { Config } from '../config/schema.ts';
import { ByteLimit } from './byte-limit.ts';
import { checkKey, FileMissingError, FileTooLargeError, type FileStorage, type PutOptions } from './storage.ts';

export type S3Settings = NonNullable<Config['files']['s3']>;

/** 8 MiB parts, two in flight: 16 MiB of buffer per upload at most (S3's smallest part is 5 MiB). */
const PART_BYTES = 8 * 1024 * 1024;
const PARTS_IN_FLIGHT = 2;

/** The client options for these settings (exported for the unit test of request shape and signing). */
export function s3ClientConfig(settings: S3Settings): S3ClientConfig {
  return {
    region: settings.region,
    forcePathStyle: settings.forcePathStyle,
    ...(settings.endpoint === undefined ? {} : { endpoint: settings.endpoint }),
    ...(settings.accessKeyId === undefined || settings.secretAccessKey === undefined
      ? {}
      : { credentials: { accessKeyId: settings.accessKeyId, secretAccessKey: settings.secretAccessKey } }),
    // Checksums only where S3 requires them: the SDK's default (a CRC trailer on every streamed upload, aws-chunked)
    // is refused by many S3-compatible stores; SigV4 still signs every request and its payload hash.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    maxAttempts: 3,
  };
}

export class S3FileStorage implements FileStorage {
  readonly describe: string;
  readonly client: S3Client;
  private readonly bucket: string;
  private readonly prefix: string;

  constructor(settings: S3Settings, client?: S3Client) {
    this.bucket = settings.bucket;
    this.prefix = settings.prefix;
    this.client = client ?? new S3Client(s3ClientConfig(settings));
    this.describe = `s3://${settings.bucket}/${settings.prefix}`;
  }

  async put(key: string, body: Readable, options: PutOptions = {}): Promise<{ bytes: number }> {
    const limit = new ByteLimit(options.maxBytes);
    let tooLarge: FileTooLargeError | undefined;
    limit.once('error', (err) => {
      if (err instanceof FileTooLargeError) tooLarge = err;
    });
    const counted = body.pipe(limit);
    // A source error must reach the upload (pipe() does not forward errors): the multipart upload is then aborted.
    body.once('error', (err) => limit.destroy(err));
    const upload = new Upload({
      client: this.client,
      params: { Bucket: this.bucket, Key: this.objectKey(key), Body: counted },
      partSize: PART_BYTES,
      queueSize: PARTS_IN_FLIGHT,
      // A failed upload leaves no parts behind to pay for.
      leavePartsOnError: false,
    });
    try {
      await upload.done();
    } catch (err) {
      body.destroy();
      limit.destroy();
      // The limit's error is the cause, whatever the abort of the multipart upload then answered.
      throw tooLarge ?? err;
    }
    return { bytes: limit.bytes };
  }

  async read(key: string, options: { start?: number } = {}): Promise<Readable> {
    const start = options.start ?? 0;
    try {
      const answer = await this.client.send(
        new GetObjectCommand({ Bucket: this.bucket, Key: this.objectKey(key), ...(start > 0 ? { Range: `bytes=${start}-` } : {}) }),
      );
      if (answer.Body instanceof Readable) return answer.Body;
      // Other runtimes' bodies: a web stream.
      return Readable.fromWeb(answer.Body!.transformToWebStream() as Parameters<typeof Readable.fromWeb>[0]);
    } catch (err) {
      const name = (err as { name?: string }).name;
      if (name === 'NoSuchKey' || name === 'NotFound') throw new FileMissingError(key);
      // A range starting exactly at the end of the object: nothing left to read.
      if (name === 'InvalidRange' && start > 0) return emptyStream();
      throw err;
    }
  }

  async delete(key: string): Promise<void> {
    await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.objectKey(key) }));
  }

  async close(): Promise<void> {
    this.client.destroy();
  }

  private objectKey(key: string): string {
    return `${this.prefix}${checkKey(key)}`;
  }
}

function emptyStream(): Readable {
  const stream = new PassThrough();
  stream.end();
  return stream;
}
