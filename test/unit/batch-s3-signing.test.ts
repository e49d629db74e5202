// The S3 storage's requests, as they would leave for the bucket (captured by a request handler, no network): the
// shape (path-style URL with the prefix, Range for a read from an offset, no checksum trailer) and the AWS SigV4
// signature, recomputed here from the spec with node:crypto. The S3-compatible server the integration test uses
// (s3rver) does not verify signatures, so this is where signing is checked.
import { createHash, createHmac } from 'node:crypto';
import { Readable } from 'node:stream';
import { S3Client } from '@aws-sdk/client-s3';
import { describe, expect, it } from 'vitest';
import { S3FileStorage, s3ClientConfig, type S3Settings } from '../../src/files/s3-storage.ts';

interface Captured {
  method: string;
  path: string;
  query: Record<string, string | string[] | null>;
  headers: Record<string, string>;
}

const settings: S3Settings = {
  bucket: 'spillway-files',
  region: 'eu-west-3',
  endpoint: 'https://objects.example.test',
  forcePathStyle: true,
  prefix: 'prod/',
  accessKeyId: 'AKIDEXAMPLE',
  secretAccessKey: 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY',
};

function capturingStorage(): { storage: S3FileStorage; captured: Captured[] } {
  const captured: Captured[] = [];
  const requestHandler = {
    handle: async (request: Captured & { body?: unknown }) => {
      captured.push({ method: request.method, path: request.path, query: request.query, headers: { ...request.headers } });
      // Drain a streamed body, as a real connection would.
      if (request.body instanceof Readable) for await (const _chunk of request.body) void _chunk;
      return { response: { statusCode: 200, headers: { etag: '"0123"', 'content-length': '2' }, body: Readable.from([Buffer.from('ok')]) } };
    },
  };
  const client = new S3Client({ ...s3ClientConfig(settings), requestHandler: requestHandler as never });
  return { storage: new S3FileStorage(settings, client), captured };
}

const hmac = (key: Buffer | string, data: string) => createHmac('sha256', key).update(data).digest();
const sha256 = (data: string) => createHash('sha256').update(data).digest('hex');
const encode = (segment: string) => encodeURIComponent(segment).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);

/** AWS Signature Version 4, from the published algorithm (canonical request → string to sign → derived key). */
function expectedSignature(request: Captured, secret: string): { signature: string; signedHeaders: string[] } {
  const auth = request.headers.authorization!;
  const match = /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/s3\/aws4_request, SignedHeaders=([^,]+), Signature=([0-9a-f]{64})$/.exec(auth);
  if (match === null) throw new Error(`not a SigV4 Authorization header: ${auth}`);
  const [, , date, region, signed] = match as unknown as [string, string, string, string, string];
  const signedHeaders = signed.split(';');
  const query = Object.entries(request.query)
    .flatMap(([k, v]) => (Array.isArray(v) ? v.map((x) => [k, x] as const) : [[k, v ?? ''] as const]))
    .map(([k, v]) => `${encode(k)}=${encode(v)}`)
    .sort()
    .join('&');
  const canonical = [
    request.method,
    request.path.split('/').map(encode).join('/'),
    query,
    ...signedHeaders.map((name) => `${name}:${String(request.headers[name] ?? '').trim().replace(/\s+/g, ' ')}`),
    '',
    signed,
    request.headers['x-amz-content-sha256']!,
  ].join('\n');
  const amzDate = request.headers['x-amz-date']!;
  const scope = `${date}/${region}/s3/aws4_request`;
  const stringToSign = ['AWS4-HMAC-SHA256', amzDate, scope, sha256(canonical)].join('\n');
  const key = hmac(hmac(hmac(hmac(`AWS4${secret}`, date), region), 's3'), 'aws4_request');
  return { signature: createHmac('sha256', key).update(stringToSign).digest('hex'), signedHeaders };
}

describe('S3 requests', () => {
  it('puts an object path-style under the prefix, signed with SigV4 over its headers and payload hash', async () => {
    const { storage, captured } = capturingStorage();
    await storage.put('files/file-abc', Readable.from([Buffer.from('{"a":1}\n')]));
    await storage.close();
    const put = captured.find((r) => r.method === 'PUT')!;
    expect(put.path).toBe('/spillway-files/prod/files/file-abc');
    expect(put.headers.host).toBe('objects.example.test');
    // requestChecksumCalculation WHEN_REQUIRED: no CRC trailer, no aws-chunked encoding (refused by many S3-compatible stores).
    expect(Object.keys(put.headers).filter((h) => h.startsWith('x-amz-checksum') || h === 'x-amz-trailer')).toEqual([]);
    expect(put.headers['content-encoding'] ?? '').not.toContain('aws-chunked');
    const { signature, signedHeaders } = expectedSignature(put, settings.secretAccessKey!);
    expect(signedHeaders).toEqual(expect.arrayContaining(['host', 'x-amz-content-sha256', 'x-amz-date']));
    expect(put.headers.authorization).toContain(`Credential=${settings.accessKeyId}/`);
    expect(put.headers.authorization).toContain(`/${settings.region}/s3/aws4_request`);
    expect(put.headers.authorization!.endsWith(`Signature=${signature}`)).toBe(true);
  });

  it('reads from an offset with a signed Range header', async () => {
    const { storage, captured } = capturingStorage();
    const stream = await storage.read('files/file-abc', { start: 1_234 });
    stream.resume();
    await storage.close();
    const get = captured.find((r) => r.method === 'GET')!;
    expect(get.path).toBe('/spillway-files/prod/files/file-abc');
    expect(get.headers.range).toBe('bytes=1234-');
    const { signature, signedHeaders } = expectedSignature(get, settings.secretAccessKey!);
    expect(signedHeaders).toContain('range');
    expect(get.headers.authorization!.endsWith(`Signature=${signature}`)).toBe(true);
  });

  it('a signature computed with another secret does not match (the check above can fail)', async () => {
    const { storage, captured } = capturingStorage();
    await storage.delete('files/file-abc');
    await storage.close();
    const del = captured.find((r) => r.method === 'DELETE')!;
    expect(del.headers.authorization!.endsWith(`Signature=${expectedSignature(del, 'another-secret').signature}`)).toBe(false);
    expect(del.headers.authorization!.endsWith(`Signature=${expectedSignature(del, settings.secretAccessKey!).signature}`)).toBe(true);
  });
});
