// Webhook events of batches, shaped as OpenAI's own (batch.completed, .failed, .expired, .cancelled:
// `{ id, object: "event", type, created_at, data: { id } }`) so `client.webhooks.unwrap()` takes them, and their
// delivery: the batch's record is read through BatchWebhookSource, signed and posted like a job's event. The event id
// is derived from the batch and the type: a redelivery is recognisably the same event.
import { createHash } from 'node:crypto';
import { UnrecoverableError, type Job } from 'bullmq';
import type { Logger } from 'pino';
import type { DeliveryClient } from './deliver.ts';
import type { Sign } from './signing.ts';
import type { WebhookJob } from './webhook-queue.ts';

export type BatchFinalStatus = 'completed' | 'failed' | 'expired' | 'cancelled';
export type BatchEventType = `batch.${BatchFinalStatus}`;

export interface BatchWebhookEvent {
  id: string;
  object: 'event';
  type: BatchEventType;
  /** Epoch seconds: when the batch reached its final status. */
  created_at: number;
  data: { id: string };
}

/**
 * A webhook delivery job carries a job status (`succeeded`…); a batch's final statuses map onto them one to one, so
 * the `webhooks` queue and its retries serve batches unchanged.
 */
export const BATCH_TO_JOB_STATUS = { completed: 'succeeded', failed: 'failed', expired: 'expired', cancelled: 'cancelled' } as const;

export function batchEventId(batchId: string, status: BatchFinalStatus): string {
  return `evt_${createHash('sha256').update(`${batchId}\nbatch.${status}`).digest('hex').slice(0, 32)}`;
}

export function buildBatchEvent(batchId: string, status: BatchFinalStatus, finishedAtMs: number): BatchWebhookEvent {
  return { id: batchEventId(batchId, status), object: 'event', type: `batch.${status}`, created_at: Math.floor(finishedAtMs / 1000), data: { id: batchId } };
}

/** What the delivery needs of a batch (implemented over the batch store, src/batches). */
export interface BatchWebhookSource {
  get(tenant: string, batchId: string): Promise<{ status: string; finishedAt: number | undefined; url: string | undefined; webhookState: string | undefined } | undefined>;
  recordDelivery(tenant: string, batchId: string, entry: Record<string, unknown>, state: 'pending' | 'delivered' | 'failed' | 'stopped', attempt: number): Promise<void>;
}

export interface BatchDeliveryDeps {
  batches: BatchWebhookSource;
  client: DeliveryClient;
  signers: ReadonlyMap<string, Sign>;
  logger: Logger;
}

/** One delivery attempt of a batch event: 2xx ends it, 410 stops it, anything else is retried by BullMQ until dead-lettered. */
export async function deliverBatchEvent(deps: BatchDeliveryDeps, job: Job<WebhookJob>, data: WebhookJob): Promise<'delivered' | 'skipped'> {
  const status = (Object.keys(BATCH_TO_JOB_STATUS) as BatchFinalStatus[]).find((s) => BATCH_TO_JOB_STATUS[s] === data.status)!;
  const log = () => deps.logger.child({ tenant: data.tenant, batchId: data.jobId, deliveryId: job.id });
  const batch = await deps.batches.get(data.tenant, data.jobId);
  if (batch === undefined || batch.status !== status || batch.url === undefined) {
    log().warn('webhook skipped: the batch is gone or has no webhook');
    return 'skipped';
  }
  if (!data.manual && batch.webhookState === 'delivered') return 'skipped';
  const attempt = job.attemptsMade + 1;
  const maxAttempts = job.opts.attempts ?? 1;
  const event = buildBatchEvent(data.jobId, status, batch.finishedAt ?? Date.now());
  const sign = deps.signers.get(data.tenant);
  const payload = JSON.stringify(event);
  const result =
    sign === undefined
      ? { statusCode: null, latencyMs: 0, error: 'no signing secret is configured for the tenant', responseBody: '' }
      : await deps.client.deliver(batch.url, payload, { ...sign(event.id, Math.floor(Date.now() / 1000), payload) });
  const delivered = result.statusCode !== null && result.statusCode >= 200 && result.statusCode < 300;
  const gone = result.statusCode === 410;
  const final = delivered || gone || sign === undefined || attempt >= maxAttempts;
  const outcome = delivered ? 'delivered' : gone ? 'stopped' : final ? 'failed' : 'retrying';
  const entry = {
    event_id: event.id,
    type: event.type,
    attempt,
    at: Math.floor(Date.now() / 1000),
    status_code: result.statusCode,
    latency_ms: result.latencyMs,
    error: result.error,
    outcome,
  };
  await deps.batches.recordDelivery(data.tenant, data.jobId, entry, outcome === 'retrying' ? 'pending' : outcome, attempt);
  if (delivered) return 'delivered';
  log().warn({ attempt, statusCode: result.statusCode, error: result.error, outcome }, 'webhook delivery failed');
  if (final) throw new UnrecoverableError(result.error ?? 'webhook delivery failed');
  throw new Error(result.error ?? 'webhook delivery failed');
}
