// The public JSON of an async job, as `GET /v1/jobs/{id}` answers it and as webhook events carry it. One shape for
// both; never includes the tenant, the request body, its hash or anything secret.
import type { Endpoint } from '../config/schema.ts';
import type { JobError, JobRecord, JobStatus, WebhookState } from './job-store.ts';

/** The path of each endpoint an async job may run (a new endpoint becomes submittable once listed here). */
export const ENDPOINT_PATHS: Readonly<Partial<Record<Endpoint, string>>> = {
  'chat.completions': '/v1/chat/completions',
  completions: '/v1/completions',
  embeddings: '/v1/embeddings',
  responses: '/v1/responses',
};

export interface PublicJob {
  id: string;
  object: 'job';
  endpoint: string;
  model: string;
  status: JobStatus;
  /** Epoch seconds, as OpenAI's objects carry them. */
  created_at: number;
  started_at: number | null;
  finished_at: number | null;
  /** When a job that has not started expires. */
  expires_at: number;
  attempts: number;
  /** Place in line while queued (1: next); null otherwise or when not known (waiting for its tenant's budget). */
  queue_position: number | null;
  /** The upstream's HTTP status for a finished call. */
  status_code: number | null;
  /** The exact OpenAI response body of a succeeded job. */
  result: unknown;
  error: JobError | null;
  usage: unknown;
  webhook: { url: string; metadata: Record<string, unknown> | null; status: WebhookState | null } | null;
}

const seconds = (ms: number | undefined): number | null => (ms === undefined ? null : Math.floor(ms / 1000));

export function toPublicJob(record: JobRecord, queuePosition?: number): PublicJob {
  return {
    id: record.id,
    object: 'job',
    endpoint: ENDPOINT_PATHS[record.endpoint] ?? record.endpoint,
    model: record.model,
    status: record.status,
    created_at: Math.floor(record.createdAt / 1000),
    started_at: seconds(record.startedAt),
    finished_at: seconds(record.finishedAt),
    expires_at: Math.floor(record.deadline / 1000),
    attempts: record.attempts,
    queue_position: record.status === 'queued' && queuePosition !== undefined ? queuePosition : null,
    status_code: record.statusCode ?? null,
    result: record.result === undefined ? null : parseBody(record.result),
    error: record.error ?? null,
    usage: record.usage ?? null,
    webhook:
      record.webhook === undefined
        ? null
        : { url: record.webhook.url, metadata: record.webhook.metadata ?? null, status: record.webhookState ?? null },
  };
}

/** The upstream's body is JSON for every endpoint served; a body that is not is handed over as text. */
function parseBody(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}
