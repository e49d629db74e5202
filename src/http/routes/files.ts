// /v1/files: upload (multipart, streamed straight to the file storage), list, retrieve, download (streamed), delete,
// per tenant. Another tenant's file answers 404. Never holds a file in memory, never puts its bytes in Redis.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import multipart from '@fastify/multipart';
import { z } from 'zod';
import type { Authenticate } from '../plugins/auth.ts';
import { fileInUse, fileNotFound, fileStorageUnavailable, fileTooLarge, invalidRequest, serviceUnavailable, SpillwayError } from '../../errors.ts';
import { FileMissingError, FileTooLargeError, type FileStorage } from '../../files/storage.ts';
import { newFileId, type FileRecords } from '../../files/file-records.ts';
import { FILE_ID_PATTERN, storageKeyOf, toPublicFile, type FileRecord } from '../../files/file-object.ts';

/** What the ingress needs for files (built in roles/ingress.ts). */
export interface FileServices {
  storage: FileStorage;
  records: FileRecords;
  maxBytes: number;
  ttlSeconds: number;
}

export interface FileRouteDeps {
  files: FileServices;
  authenticate: Authenticate;
}

/** OpenAI's bounds for `expires_after.seconds`: one hour to 30 days. */
const EXPIRY_MIN_SECONDS = 3_600;
const EXPIRY_MAX_SECONDS = 2_592_000;

const ListQuerySchema = z.strictObject({
  // Any purpose may be asked for, as OpenAI allows: one this broker never stores lists nothing.
  purpose: z.string().min(1).max(64).optional(),
  limit: z.coerce.number().int().min(1).max(10_000).default(10_000),
  order: z.enum(['asc', 'desc']).default('desc'),
  after: z.string().min(1).max(64).optional(),
});

export function registerFileRoutes(api: FastifyInstance, deps: FileRouteDeps): void {
  const { files } = deps;
  // multipart/form-data is parsed only here: every other route keeps the JSON-only parser (415 for anything else).
  void api.register(async (scope) => {
    await scope.register(multipart, { limits: { fileSize: files.maxBytes, files: 1, fields: 8, parts: 9, fieldSize: 1024 } });
    scope.post('/v1/files', async (request) => {
      const tenant = deps.authenticate(request);
      const record = await upload(request, tenant.id, files);
      return toPublicFile(record);
    });
  });

  api.get('/v1/files', async (request) => {
    const tenant = deps.authenticate(request);
    const parsed = ListQuerySchema.safeParse(request.query ?? {});
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      throw invalidRequest(`Invalid value for '${issue.path.join('.')}': ${issue.message}.`, issue.path.join('.') || null, 'invalid_value');
    }
    const query = parsed.data;
    const page = await withRedis(() =>
      files.records.list(tenant.id, { limit: query.limit, order: query.order, ...(query.after === undefined ? {} : { after: query.after }), ...(query.purpose === undefined ? {} : { purpose: query.purpose }) }),
    );
    const data = page.records.map(toPublicFile);
    return { object: 'list', data, first_id: data[0]?.id ?? null, last_id: data.at(-1)?.id ?? null, has_more: page.hasMore };
  });

  api.get<{ Params: { id: string } }>('/v1/files/:id', async (request) => {
    const tenant = deps.authenticate(request);
    return toPublicFile(await findFile(files, tenant.id, request.params.id));
  });

  api.get<{ Params: { id: string } }>('/v1/files/:id/content', async (request, reply) => {
    const tenant = deps.authenticate(request);
    const record = await findFile(files, tenant.id, request.params.id);
    let stream;
    try {
      stream = await files.storage.read(storageKeyOf(record.id));
    } catch (err) {
      if (err instanceof FileMissingError) throw fileNotFound(record.id);
      request.log.error({ err }, 'reading a file from the storage failed');
      throw fileStorageUnavailable();
    }
    // Streamed to the client as it is read: a 200 MB file never sits in memory.
    return reply
      .header('content-type', 'application/octet-stream')
      .header('content-length', String(record.bytes))
      .header('content-disposition', contentDisposition(record.filename))
      .send(stream);
  });

  api.delete<{ Params: { id: string } }>('/v1/files/:id', async (request) => {
    const tenant = deps.authenticate(request);
    const id = request.params.id;
    if (!FILE_ID_PATTERN.test(id)) throw fileNotFound(id.slice(0, 64));
    let outcome;
    try {
      outcome = await files.records.delete(tenant.id, id, files.storage);
    } catch (err) {
      request.log.error({ err }, 'deleting a file failed');
      throw fileStorageUnavailable();
    }
    if (outcome === 'missing') throw fileNotFound(id);
    if (outcome === 'in_use') throw fileInUse(id);
    return { id, object: 'file', deleted: true };
  });
}

/**
 * Reads the multipart parts in order, streaming the file part into the storage as it arrives; the form's other fields
 * (`purpose`, `expires_after[...]`) are checked once the body has been read, and a refused upload's bytes are deleted.
 */
async function upload(request: FastifyRequest, tenantId: string, files: FileServices): Promise<FileRecord> {
  if (!request.isMultipart()) throw invalidRequest('Send the file as multipart/form-data, with the fields `file` and `purpose`.', 'file', 'invalid_value');
  const fields = new Map<string, string>();
  let stored: { id: string; bytes: number; filename: string } | undefined;
  try {
    for await (const part of request.parts()) {
      if (part.type === 'field') {
        fields.set(part.fieldname, String(part.value));
        continue;
      }
      if (part.fieldname !== 'file' || stored !== undefined) {
        part.file.resume();
        throw invalidRequest(`Unexpected file field '${part.fieldname}': send one file, in the field 'file'.`, part.fieldname, 'invalid_value');
      }
      const id = newFileId();
      const { bytes } = await files.storage.put(storageKeyOf(id), part.file, { maxBytes: files.maxBytes });
      stored = { id, bytes, filename: part.filename || 'upload.jsonl' };
      if (part.file.truncated) throw fileTooLarge(files.maxBytes);
    }
    if (stored === undefined) throw invalidRequest("Missing required parameter: 'file'.", 'file', 'missing_required_parameter');
    const purpose = fields.get('purpose');
    if (purpose === undefined) throw invalidRequest("Missing required parameter: 'purpose'.", 'purpose', 'missing_required_parameter');
    if (purpose !== 'batch') throw invalidRequest(`Invalid value for 'purpose': Spillway stores files for the Batch API only: use 'batch'.`, 'purpose', 'invalid_value');
    const now = Date.now();
    const record: FileRecord = {
      id: stored.id,
      tenant: tenantId,
      bytes: stored.bytes,
      createdAt: now,
      expiresAt: now + expirySeconds(fields, files.ttlSeconds) * 1000,
      filename: stored.filename.slice(0, 255),
      purpose: 'batch',
      activeBatches: 0,
    };
    await withRedis(() => files.records.create(record));
    return record;
  } catch (err) {
    if (stored !== undefined) await files.storage.delete(storageKeyOf(stored.id)).catch(() => undefined);
    throw toUploadError(err, files.maxBytes, request);
  }
}

/** `expires_after[anchor]` and `expires_after[seconds]` (how the official clients send the object in a form). */
function expirySeconds(fields: Map<string, string>, fallback: number): number {
  const anchor = fields.get('expires_after[anchor]');
  const raw = fields.get('expires_after[seconds]');
  if (anchor === undefined && raw === undefined) return fallback;
  if (anchor !== 'created_at') throw invalidRequest("Invalid value for 'expires_after.anchor': must be 'created_at'.", 'expires_after.anchor', 'invalid_value');
  const seconds = Number(raw);
  if (!Number.isInteger(seconds) || seconds < EXPIRY_MIN_SECONDS || seconds > EXPIRY_MAX_SECONDS) {
    throw invalidRequest(`Invalid value for 'expires_after.seconds': an integer from ${EXPIRY_MIN_SECONDS} to ${EXPIRY_MAX_SECONDS}.`, 'expires_after.seconds', 'invalid_value');
  }
  return seconds;
}

/**
 * The download's header for any filename a client uploaded: a plain-ASCII `filename` (every other character, quotes
 * and backslashes replaced) and the exact name as RFC 5987 `filename*`. Node refuses a header with characters past
 * U+00FF or control characters: sent as they are, the download would fail half way.
 */
function contentDisposition(filename: string): string {
  const ascii = filename.replace(/[^\x20-\x7e]|["\\]/g, '_');
  return `attachment; filename="${ascii}"; filename*=UTF-8''${encodeURIComponent(filename)}`;
}

/** busboy's own errors (a body that is not the multipart it says it is) carry no code and say what is wrong. */
const MULTIPART_ERRORS = /^(Multipart: Boundary not found|Unexpected end of multipart data|\w+ terminated early due to unexpected end of multipart data|Malformed)/;

function toUploadError(err: unknown, maxBytes: number, request: FastifyRequest): unknown {
  if (err instanceof SpillwayError) return err;
  if (err instanceof FileTooLargeError || (err as { code?: string }).code === 'FST_REQ_FILE_TOO_LARGE') return fileTooLarge(maxBytes);
  const code = (err as { code?: string }).code;
  if (code !== undefined && code.startsWith('FST_')) return err; // multipart framing errors: Fastify's 4xx, mapped by the error handler
  if (err instanceof Error && MULTIPART_ERRORS.test(err.message)) return invalidRequest(`Malformed multipart/form-data body: ${err.message}.`, 'file', 'invalid_multipart');
  request.log.error({ err }, 'storing an upload failed');
  return fileStorageUnavailable();
}

/** The tenant's file, or 404: an unknown id, an expired file and another tenant's file look the same. */
async function findFile(files: FileServices, tenantId: string, id: string): Promise<FileRecord> {
  if (!FILE_ID_PATTERN.test(id)) throw fileNotFound(id.slice(0, 64));
  const record = await withRedis(() => files.records.get(tenantId, id));
  if (record === undefined || record.expiresAt <= Date.now()) throw fileNotFound(id);
  return record;
}

async function withRedis<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (err) {
    if (err instanceof SpillwayError) throw err;
    throw serviceUnavailable('The file store is unavailable; try again shortly.');
  }
}
