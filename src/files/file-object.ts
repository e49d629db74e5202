// The File object as OpenAI's API answers it (GET /v1/files/{id}, list entries, upload answers), and its stored
// record. Pure: no Redis. Never shows where or how the bytes are stored.
import { z } from 'zod';

/** Purposes Spillway accepts at upload (`batch`) and produces (`batch_output`). */
export const FilePurposeSchema = z.enum(['batch', 'batch_output']);
export type FilePurpose = z.infer<typeof FilePurposeSchema>;

export interface FileRecord {
  id: string;
  tenant: string;
  bytes: number;
  /** Epoch ms. */
  createdAt: number;
  /** Epoch ms: the metadata and the bytes are gone after it. */
  expiresAt: number;
  filename: string;
  purpose: FilePurpose;
  /** Unfinished batches reading it (a file in use cannot be deleted). */
  activeBatches: number;
}

export interface PublicFile {
  id: string;
  object: 'file';
  bytes: number;
  created_at: number;
  expires_at: number;
  filename: string;
  purpose: FilePurpose;
  /** Deprecated by OpenAI and still required by its schema: always `processed` once listed. */
  status: 'processed';
  status_details: null;
}

export function toPublicFile(record: FileRecord): PublicFile {
  return {
    id: record.id,
    object: 'file',
    bytes: record.bytes,
    created_at: Math.floor(record.createdAt / 1000),
    expires_at: Math.floor(record.expiresAt / 1000),
    filename: record.filename,
    purpose: record.purpose,
    status: 'processed',
    status_details: null,
  };
}

const ms = z.coerce.number().int();
const StoredFileSchema = z.object({
  id: z.string(),
  tenant: z.string(),
  bytes: ms,
  created_at: ms,
  expires_at: ms,
  filename: z.string(),
  purpose: FilePurposeSchema,
  active_batches: ms.default(0),
});

/** Parses a stored record (HGETALL: every field a string); undefined for a missing or malformed one. */
export function toFileRecord(raw: unknown): FileRecord | undefined {
  if (raw === null || typeof raw !== 'object' || Object.keys(raw).length === 0) return undefined;
  const parsed = StoredFileSchema.safeParse(raw);
  if (!parsed.success) return undefined;
  const r = parsed.data;
  return {
    id: r.id,
    tenant: r.tenant,
    bytes: r.bytes,
    createdAt: r.created_at,
    expiresAt: r.expires_at,
    filename: r.filename,
    purpose: r.purpose,
    activeBatches: r.active_batches,
  };
}

/** The stored fields of a new record. */
export function fileFields(record: FileRecord): string[] {
  return [
    'id', record.id, 'tenant', record.tenant, 'bytes', String(record.bytes), 'created_at', String(record.createdAt),
    'expires_at', String(record.expiresAt), 'filename', record.filename, 'purpose', record.purpose,
    'active_batches', String(record.activeBatches),
  ];
}

/** `file-` and 24 letters and digits, like OpenAI's ids; never a ':' nor a '/'. */
export const FILE_ID_PATTERN = /^file-[A-Za-z0-9]{24}$/;

/** The storage key of a file's bytes: ids are unique across tenants, the metadata says whose it is. */
export function storageKeyOf(fileId: string): string {
  return `files/${fileId}`;
}
