// A batch as stored (one Redis hash: the Batch object's fields, its counts and the driver's cursor) and as OpenAI's
// API shows it (the Batch object). Pure: no Redis. Never shows the tenant, the forwarded headers or the cursor.
import { z } from 'zod';
import type { Endpoint } from '../config/schema.ts';
import { ENDPOINT_PATHS } from '../queue/job-object.ts';

export const BatchStatusSchema = z.enum(['validating', 'failed', 'in_progress', 'finalizing', 'completed', 'expired', 'cancelling', 'cancelled']);
export type BatchStatus = z.infer<typeof BatchStatusSchema>;
export type FinalStatus = Extract<BatchStatus, 'failed' | 'completed' | 'expired' | 'cancelled'>;
export const FINAL_STATUSES: readonly FinalStatus[] = ['failed', 'completed', 'expired', 'cancelled'];

export function isFinal(status: BatchStatus): status is FinalStatus {
  return (FINAL_STATUSES as readonly string[]).includes(status);
}

/** One validation problem, as the Batch object's `errors.data` lists them. */
export interface BatchError {
  code: string;
  message: string;
  param: string | null;
  /** 1-based line of the input file; null for a problem of the whole file. */
  line: number | null;
}

export interface BatchRecord {
  id: string;
  tenant: string;
  status: BatchStatus;
  endpoint: Endpoint;
  inputFileId: string;
  completionWindow: string;
  /** Epoch ms, as every time below. */
  createdAt: number;
  expiresAt: number;
  inProgressAt?: number;
  finalizingAt?: number;
  completedAt?: number;
  failedAt?: number;
  expiredAt?: number;
  cancellingAt?: number;
  cancelledAt?: number;
  outputFileId?: string;
  errorFileId?: string;
  errors?: BatchError[];
  metadata?: Record<string, string>;
  model?: string;
  total: number;
  completed: number;
  failed: number;
  usage: { input: number; cached: number; output: number; reasoning: number; total: number };
  /** Client headers forwarded to the upstream with every line (`server.forwardHeaders`, from the create request). */
  headers: Record<string, string>;
  requestId: string;
  /** The driver's cursor: the last line handed to the queue (0: none) and the byte offset just after it. */
  cursorLine: number;
  cursorOffset: number;
  /** Set while the driver winds the batch down: the final status it is heading for. */
  final?: FinalStatus;
  /** Segments committed so far (the next one's number). */
  segments: number;
  /** Bytes of finished lines not yet flushed into a segment. */
  pendingBytes: number;
  webhook?: { url: string };
  /** `output_expires_after.seconds` of the create request: how long the output and error files live. */
  outputTtlMs?: number;
  webhookState?: 'pending' | 'delivered' | 'failed' | 'stopped';
}

const ms = z.coerce.number().int();
const count = ms.default(0);
const json = <T extends z.ZodType>(schema: T) =>
  z.string().transform((text, ctx) => {
    try {
      return schema.parse(JSON.parse(text)) as z.infer<T>;
    } catch {
      ctx.addIssue({ code: 'custom', message: 'malformed JSON field' });
      return z.NEVER;
    }
  });
const ErrorSchema = z.object({ code: z.string(), message: z.string(), param: z.string().nullable(), line: z.number().int().nullable() });

const StoredBatchSchema = z.object({
  id: z.string(),
  tenant: z.string(),
  status: BatchStatusSchema,
  endpoint: z.enum(['chat.completions', 'completions', 'embeddings', 'responses']),
  input_file_id: z.string(),
  completion_window: z.string(),
  created_at: ms,
  expires_at: ms,
  in_progress_at: ms.optional(),
  finalizing_at: ms.optional(),
  completed_at: ms.optional(),
  failed_at: ms.optional(),
  expired_at: ms.optional(),
  cancelling_at: ms.optional(),
  cancelled_at: ms.optional(),
  output_file_id: z.string().optional(),
  error_file_id: z.string().optional(),
  errors: json(z.array(ErrorSchema)).optional(),
  metadata: json(z.record(z.string(), z.string())).optional(),
  model: z.string().optional(),
  total: count,
  completed: count,
  failed: count,
  input_tokens: count,
  cached_tokens: count,
  output_tokens: count,
  reasoning_tokens: count,
  total_tokens: count,
  headers: json(z.record(z.string(), z.string())).optional(),
  request_id: z.string().default(''),
  cursor_line: count,
  cursor_offset: count,
  final: z.enum(['failed', 'completed', 'expired', 'cancelled']).optional(),
  segments: count,
  pending_bytes: count,
  webhook: json(z.object({ url: z.string() })).optional(),
  output_ttl_ms: ms.optional(),
  webhook_state: z.enum(['pending', 'delivered', 'failed', 'stopped']).optional(),
});

/** Parses a stored batch (HGETALL); undefined for a missing or malformed one. */
export function toBatchRecord(raw: unknown): BatchRecord | undefined {
  if (raw === null || typeof raw !== 'object' || Object.keys(raw).length === 0) return undefined;
  const parsed = StoredBatchSchema.safeParse(raw);
  if (!parsed.success) return undefined;
  const r = parsed.data;
  const optional = <K extends string, V>(key: K, value: V | undefined) => (value === undefined ? {} : ({ [key]: value } as Record<K, V>));
  return {
    id: r.id,
    tenant: r.tenant,
    status: r.status,
    endpoint: r.endpoint,
    inputFileId: r.input_file_id,
    completionWindow: r.completion_window,
    createdAt: r.created_at,
    expiresAt: r.expires_at,
    ...optional('inProgressAt', r.in_progress_at),
    ...optional('finalizingAt', r.finalizing_at),
    ...optional('completedAt', r.completed_at),
    ...optional('failedAt', r.failed_at),
    ...optional('expiredAt', r.expired_at),
    ...optional('cancellingAt', r.cancelling_at),
    ...optional('cancelledAt', r.cancelled_at),
    ...optional('outputFileId', r.output_file_id),
    ...optional('errorFileId', r.error_file_id),
    ...optional('errors', r.errors),
    ...optional('metadata', r.metadata),
    ...optional('model', r.model),
    total: r.total,
    completed: r.completed,
    failed: r.failed,
    usage: { input: r.input_tokens, cached: r.cached_tokens, output: r.output_tokens, reasoning: r.reasoning_tokens, total: r.total_tokens },
    headers: r.headers ?? {},
    requestId: r.request_id,
    cursorLine: r.cursor_line,
    cursorOffset: r.cursor_offset,
    ...optional('final', r.final),
    segments: r.segments,
    pendingBytes: r.pending_bytes,
    ...optional('webhook', r.webhook),
    ...optional('outputTtlMs', r.output_ttl_ms),
    ...optional('webhookState', r.webhook_state),
  };
}

/** The Batch object of OpenAI's API. Times in epoch seconds; what has not happened is null, as OpenAI answers it. */
export interface PublicBatch {
  id: string;
  object: 'batch';
  endpoint: string;
  model?: string;
  errors: { object: 'list'; data: BatchError[] } | null;
  input_file_id: string;
  completion_window: string;
  status: BatchStatus;
  output_file_id: string | null;
  error_file_id: string | null;
  created_at: number;
  in_progress_at: number | null;
  expires_at: number;
  finalizing_at: number | null;
  completed_at: number | null;
  failed_at: number | null;
  expired_at: number | null;
  cancelling_at: number | null;
  cancelled_at: number | null;
  request_counts: { total: number; completed: number; failed: number };
  usage: {
    input_tokens: number;
    input_tokens_details: { cached_tokens: number };
    output_tokens: number;
    output_tokens_details: { reasoning_tokens: number };
    total_tokens: number;
  };
  metadata: Record<string, string> | null;
}

const seconds = (value: number | undefined): number | null => (value === undefined ? null : Math.floor(value / 1000));

export function toPublicBatch(record: BatchRecord): PublicBatch {
  return {
    id: record.id,
    object: 'batch',
    endpoint: ENDPOINT_PATHS[record.endpoint] ?? record.endpoint,
    ...(record.model === undefined ? {} : { model: record.model }),
    errors: record.errors === undefined || record.errors.length === 0 ? null : { object: 'list', data: record.errors },
    input_file_id: record.inputFileId,
    completion_window: record.completionWindow,
    status: record.status,
    output_file_id: record.outputFileId ?? null,
    error_file_id: record.errorFileId ?? null,
    created_at: Math.floor(record.createdAt / 1000),
    in_progress_at: seconds(record.inProgressAt),
    expires_at: Math.floor(record.expiresAt / 1000),
    finalizing_at: seconds(record.finalizingAt),
    completed_at: seconds(record.completedAt),
    failed_at: seconds(record.failedAt),
    expired_at: seconds(record.expiredAt),
    cancelling_at: seconds(record.cancellingAt),
    cancelled_at: seconds(record.cancelledAt),
    request_counts: { total: record.total, completed: record.completed, failed: record.failed },
    usage: {
      input_tokens: record.usage.input,
      input_tokens_details: { cached_tokens: record.usage.cached },
      output_tokens: record.usage.output,
      output_tokens_details: { reasoning_tokens: record.usage.reasoning },
      total_tokens: record.usage.total,
    },
    metadata: record.metadata ?? null,
  };
}

/** `batch_` and 32 hex digits: never a ':' (BullMQ refuses it in job ids), never only digits. */
export const BATCH_ID_PATTERN = /^batch_[0-9a-f]{32}$/;

/** The queue job id of one line: deterministic, so handing a line to the queue twice adds it once. */
export function lineJobId(batchId: string, line: number): string {
  return `${batchId}-${line}`;
}
