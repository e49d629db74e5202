// The `webhooks` queue's worker: builds a job's event from its record, signs it with the tenant's secrets, POSTs it,
// records every attempt in the delivery log. A 2xx ends it, a 410 stops it, anything else is retried with backoff
// until the attempts run out (dead-lettered). Never logs a secret or a payload.
import { UnrecoverableError, Worker, type Job } from 'bullmq';
import type { Cluster, Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { Config } from '../config/schema.ts';
import { QUEUE_NAMES, type RedisKeys } from '../queue/keys.ts';
import type { DeliveryAttempt, JobStore, TerminalStatus } from '../queue/job-store.ts';
import { buildJobEvent } from './events.ts';
import { deliverBatchEvent, type BatchWebhookSource } from './batch-events.ts';
import { responseEventFor } from '../responses/webhook-event.ts';
import { createSigner, type Sign } from './signing.ts';
import { createDeliveryClient, type DeliveryClient } from './deliver.ts';
import { webhookBackoffMs } from './backoff.ts';
import { WebhookJobSchema, WEBHOOK_BACKOFF, type WebhookJob } from './webhook-queue.ts';
import type { ResolveAll } from './url-safety.ts';

export type DeliveryOutcome = 'delivered' | 'skipped';

export interface WebhookProcessorDeps {
  store: JobStore;
  client: DeliveryClient;
  /** Tenant id → its signer; a tenant without secrets has none (its events are never sent unsigned). */
  signers: ReadonlyMap<string, Sign>;
  includeJob: boolean;
  logger: Logger;
  /** Batches' events (subject `batch`); absent: such deliveries are skipped. */
  batches?: BatchWebhookSource;
}

export function signersFor(config: Config): Map<string, Sign> {
  const signers = new Map<string, Sign>();
  for (const tenant of config.tenants) {
    if (tenant.webhook !== undefined) signers.set(tenant.id, createSigner(tenant.webhook.secrets));
  }
  return signers;
}

export function createWebhookProcessor(deps: WebhookProcessorDeps): (job: Job<WebhookJob>) => Promise<DeliveryOutcome> {
  return async (job) => {
    const parsed = WebhookJobSchema.safeParse(job.data);
    if (!parsed.success) {
      deps.logger.error({ deliveryId: job.id }, 'malformed webhook job');
      throw new UnrecoverableError('malformed webhook job');
    }
    if (parsed.data.subject === 'batch') {
      if (deps.batches === undefined) return 'skipped';
      return deliverBatchEvent({ batches: deps.batches, client: deps.client, signers: deps.signers, logger: deps.logger }, job, parsed.data);
    }
    const { tenant, jobId, status, manual } = parsed.data;
    const log = () => deps.logger.child({ tenant, jobId, deliveryId: job.id });
    const record = await deps.store.get(tenant, jobId);
    if (record === undefined || record.status !== status || record.webhook === undefined) {
      // The record expired (retention shorter than the retries) or never had a webhook: nothing left to send.
      log().warn('webhook skipped: the job record is gone or has no webhook');
      return 'skipped';
    }
    // A delivery job re-run after its worker died right after a 2xx: the receiver has it already.
    if (!manual && record.webhookState === 'delivered') return 'skipped';

    const attempt = job.attemptsMade + 1;
    const maxAttempts = job.opts.attempts ?? 1;
    // A background response's events are OpenAI's own response.* events (src/responses/webhook-event.ts).
    const event = record.endpoint === 'responses' ? responseEventFor({ ...record, status }) : buildJobEvent({ ...record, status }, { includeJob: deps.includeJob });
    const sign = deps.signers.get(tenant);
    const payload = JSON.stringify(event);
    const result =
      sign === undefined
        ? { statusCode: null, latencyMs: 0, error: 'no signing secret is configured for the tenant', responseBody: '' }
        : await deps.client.deliver(record.webhook.url, payload, { ...sign(event.id, Math.floor(Date.now() / 1000), payload) });
    const delivered = result.statusCode !== null && result.statusCode >= 200 && result.statusCode < 300;
    const gone = result.statusCode === 410;
    const final = delivered || gone || sign === undefined || attempt >= maxAttempts;
    const outcome: DeliveryAttempt['outcome'] = delivered ? 'delivered' : gone ? 'stopped' : final ? 'failed' : 'retrying';
    const entry: DeliveryAttempt = {
      event_id: event.id,
      type: event.type,
      attempt,
      at: Math.floor(Date.now() / 1000),
      status_code: result.statusCode,
      latency_ms: result.latencyMs,
      error: result.error,
      outcome,
    };
    await deps.store.recordDelivery(tenant, jobId, entry, outcome === 'retrying' ? 'pending' : outcome);
    if (delivered) return 'delivered';
    log().warn({ attempt, statusCode: result.statusCode, error: result.error, outcome }, 'webhook delivery failed');
    if (final) throw new UnrecoverableError(result.error ?? 'webhook delivery failed');
    throw new Error(result.error ?? 'webhook delivery failed');
  };
}

export interface WebhookWorkerOptions {
  connection: Redis | Cluster;
  keys: RedisKeys;
  store: JobStore;
  config: Config;
  logger: Logger;
  /** Stored on each delivery job as processedBy. */
  name: string;
  /** For tests: DNS resolution at connection time. */
  resolveAll?: ResolveAll;
  /** Batches' events (src/batches/webhook-source.ts). */
  batches?: BatchWebhookSource;
}

export interface RunningWebhookWorker {
  worker: Worker<WebhookJob, DeliveryOutcome>;
  /** Stops taking deliveries, lets the running ones finish, closes the HTTP client. */
  close(force?: boolean): Promise<void>;
}

export async function startWebhookWorker(options: WebhookWorkerOptions): Promise<RunningWebhookWorker> {
  const { config, logger, store } = options;
  const settings = config.webhooks;
  const client = createDeliveryClient({
    policy: { allowHttp: settings.allowHttp, allowHosts: settings.allowHosts },
    timeoutMs: settings.timeoutMs,
    maxResponseBytes: settings.maxResponseBytes,
    ...(options.resolveAll === undefined ? {} : { resolveAll: options.resolveAll }),
  });
  const processor = createWebhookProcessor({ store, client, signers: signersFor(config), includeJob: settings.includeJob, logger, ...(options.batches === undefined ? {} : { batches: options.batches }) });
  const worker = new Worker<WebhookJob, DeliveryOutcome>(QUEUE_NAMES.webhooks, processor, {
    connection: options.connection,
    prefix: options.keys.bullPrefix,
    concurrency: settings.concurrency,
    lockDuration: config.worker.lockDurationMs,
    stalledInterval: config.worker.stalledIntervalMs,
    maxStalledCount: config.worker.maxStalledCount,
    autorun: false,
    name: options.name,
    settings: {
      backoffStrategy: (attemptsMade, type) => (type === WEBHOOK_BACKOFF ? webhookBackoffMs(attemptsMade, settings.backoff) : 0),
    },
  });
  worker.on('error', (err) => logger.error({ err }, 'webhook worker error'));
  // A delivery that failed outside the processor's own bookkeeping (stalled too often): dead-letter it in the record.
  worker.on('failed', (job, err) => {
    if (job === undefined || !(err.message.includes('stalled') && job.finishedOn !== undefined)) return;
    const data = WebhookJobSchema.safeParse(job.data);
    if (!data.success) return;
    void markFailed(store, data.data.tenant, data.data.jobId, data.data.status).catch((markErr: unknown) => logger.warn({ err: markErr }, 'recording a dead webhook failed'));
  });
  void worker.run().catch((err: unknown) => logger.error({ err }, 'webhook worker loop stopped'));
  await worker.waitUntilReady();
  return {
    worker,
    close: async (force = false) => {
      await worker.close(force);
      await client.close();
    },
  };
}

async function markFailed(store: JobStore, tenant: string, jobId: string, status: TerminalStatus): Promise<void> {
  const record = await store.get(tenant, jobId);
  if (record?.status === status && record.webhookState === 'pending') await store.setWebhookState(tenant, jobId, 'failed');
}
