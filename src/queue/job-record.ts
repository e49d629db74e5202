// The async job record: its statuses, fields and the parse of its stored form (every hash field is a string), and
// the delivery-attempt entry. Pure: no Redis; job-store.ts reads and writes what is described here.
import { z } from 'zod';
import { EndpointSchema } from '../config/schema.ts';

export const JobStatusSchema = z.enum(['queued', 'running', 'succeeded', 'failed', 'cancelled', 'expired']);
export type JobStatus = z.infer<typeof JobStatusSchema>;
export type TerminalStatus = Extract<JobStatus, 'succeeded' | 'failed' | 'cancelled' | 'expired'>;
export const TERMINAL_STATUSES: readonly TerminalStatus[] = ['succeeded', 'failed', 'cancelled', 'expired'];

export function isTerminal(status: JobStatus): status is TerminalStatus {
  return (TERMINAL_STATUSES as readonly string[]).includes(status);
}

/** pending: an event is being delivered (or waits for its next attempt); failed: dead-lettered; stopped: the receiver answered 410. */
export const WebhookStateSchema = z.enum(['pending', 'delivered', 'failed', 'stopped']);
export type WebhookState = z.infer<typeof WebhookStateSchema>;

const ErrorObjectSchema = z.strictObject({ message: z.string(), type: z.string(), param: z.string().nullable(), code: z.string().nullable() });
export type JobError = z.infer<typeof ErrorObjectSchema>;

export const JobWebhookSchema = z.strictObject({ url: z.string(), metadata: z.record(z.string(), z.unknown()).optional() });
export type JobWebhook = z.infer<typeof JobWebhookSchema>;

const json = <T extends z.ZodType>(schema: T) =>
  z.string().transform((text, ctx) => {
    try {
      return schema.parse(JSON.parse(text)) as z.infer<T>;
    } catch {
      ctx.addIssue({ code: 'custom', message: 'malformed JSON field' });
      return z.NEVER;
    }
  });
const ms = z.coerce.number().int();

/** A record as stored (every hash field is a string); parsed on every read. */
const StoredRecordSchema = z.object({
  id: z.string(),
  tenant: z.string(),
  status: JobStatusSchema,
  endpoint: EndpointSchema,
  model: z.string(),
  request_id: z.string(),
  body_hash: z.string(),
  created_at: ms,
  deadline: ms,
  attempts: ms.default(0),
  started_at: ms.optional(),
  finished_at: ms.optional(),
  status_code: ms.optional(),
  result: z.string().optional(),
  error: json(ErrorObjectSchema).optional(),
  usage: json(z.unknown()).optional(),
  webhook: json(JobWebhookSchema).optional(),
  webhook_state: WebhookStateSchema.optional(),
  webhook_attempts: ms.optional(),
});

export interface JobRecord {
  id: string;
  tenant: string;
  status: JobStatus;
  endpoint: z.infer<typeof EndpointSchema>;
  model: string;
  requestId: string;
  /** SHA-256 of what was asked (idempotency: the same key with another request is refused). */
  bodyHash: string;
  /** Epoch ms. */
  createdAt: number;
  /** Epoch ms past which a job still waiting expires. */
  deadline: number;
  attempts: number;
  startedAt?: number;
  finishedAt?: number;
  /** The upstream's HTTP status (succeeded), or the error's (failed). */
  statusCode?: number;
  /** The upstream's response body, as text, exactly as received. */
  result?: string;
  error?: JobError;
  usage?: unknown;
  webhook?: JobWebhook;
  webhookState?: WebhookState;
  /** Attempts of the current delivery of its event. */
  webhookAttempts?: number;
}

export interface NewJob {
  id: string;
  tenant: string;
  endpoint: JobRecord['endpoint'];
  model: string;
  requestId: string;
  bodyHash: string;
  createdAt: number;
  deadline: number;
  webhook?: JobWebhook;
}

/** What finishing a job writes. */
export interface JobOutcome {
  statusCode?: number;
  result?: string;
  error?: JobError;
  usage?: unknown;
}

/** One delivery attempt, as `GET /v1/jobs/{id}/deliveries` shows it. */
export interface DeliveryAttempt {
  event_id: string;
  type: string;
  attempt: number;
  /** Epoch seconds. */
  at: number;
  status_code: number | null;
  latency_ms: number;
  error: string | null;
  /** delivered (2xx), retrying, failed (dead-lettered), stopped (410), manual (a retry asked for by hand). */
  outcome: 'delivered' | 'retrying' | 'failed' | 'stopped';
}

/** Parses a stored record (HGETALL); undefined for a missing or malformed one. */
export function toRecord(raw: unknown): JobRecord | undefined {
  if (raw === null || typeof raw !== 'object' || Object.keys(raw).length === 0) return undefined;
  const parsed = StoredRecordSchema.safeParse(raw);
  if (!parsed.success) return undefined;
  const r = parsed.data;
  return {
    id: r.id,
    tenant: r.tenant,
    status: r.status,
    endpoint: r.endpoint,
    model: r.model,
    requestId: r.request_id,
    bodyHash: r.body_hash,
    createdAt: r.created_at,
    deadline: r.deadline,
    attempts: r.attempts,
    ...(r.started_at === undefined ? {} : { startedAt: r.started_at }),
    ...(r.finished_at === undefined ? {} : { finishedAt: r.finished_at }),
    ...(r.status_code === undefined ? {} : { statusCode: r.status_code }),
    ...(r.result === undefined ? {} : { result: r.result }),
    ...(r.error === undefined ? {} : { error: r.error }),
    ...(r.usage === undefined ? {} : { usage: r.usage }),
    ...(r.webhook === undefined ? {} : { webhook: r.webhook }),
    ...(r.webhook_state === undefined ? {} : { webhookState: r.webhook_state }),
    ...(r.webhook_attempts === undefined ? {} : { webhookAttempts: r.webhook_attempts }),
  };
}
