// The producer side of the `webhooks` queue: one delivery job per job event, retried with backoff by BullMQ (the only
// retry layer for deliveries), then dead-lettered. The job carries ids only: the event is built from the job record.
import { Queue, type JobsOptions } from 'bullmq';
import type { Cluster, Redis } from 'ioredis';
import { z } from 'zod';
import { QUEUE_NAMES, type RedisKeys } from '../queue/keys.ts';
import type { TerminalStatus } from '../queue/job-store.ts';
import { eventIdFor, eventTypeFor } from './events.ts';
import { BATCH_TO_JOB_STATUS, batchEventId, type BatchFinalStatus } from './batch-events.ts';

export const WEBHOOK_JOB_VERSION = 1;

export const WebhookJobSchema = z.strictObject({
  v: z.literal(WEBHOOK_JOB_VERSION),
  tenant: z.string().min(1),
  /** The async job whose event this delivers. */
  jobId: z.string().min(1),
  status: z.enum(['succeeded', 'failed', 'cancelled', 'expired']),
  /** Asked for by hand (POST /v1/jobs/{id}/deliveries/retry): sent even if an earlier delivery succeeded. */
  manual: z.boolean(),
  /**
   * `batch`: the event of a batch (src/webhooks/batch-events.ts): `jobId` is the batch's id and `status` its final
   * status mapped onto a job's (BATCH_TO_JOB_STATUS). Absent: an async job's event.
   */
  subject: z.literal('batch').optional(),
});
export type WebhookJob = z.infer<typeof WebhookJobSchema>;

/** The name of the backoff strategy the delivery worker defines (BullMQ `settings.backoffStrategy`). */
export const WEBHOOK_BACKOFF = 'webhook';

export interface WebhookQueueOptions {
  connection: Redis | Cluster;
  keys: RedisKeys;
  maxAttempts: number;
  /** How long finished delivery jobs stay (a re-run of the job that enqueued one must find it and add nothing). */
  keepSeconds: number;
}

export class WebhookQueue {
  readonly queue: Queue<WebhookJob>;
  private readonly jobOptions: JobsOptions;

  constructor(options: WebhookQueueOptions) {
    this.queue = new Queue<WebhookJob>(QUEUE_NAMES.webhooks, { connection: options.connection, prefix: options.keys.bullPrefix });
    this.jobOptions = {
      attempts: options.maxAttempts,
      backoff: { type: WEBHOOK_BACKOFF },
      removeOnComplete: { age: options.keepSeconds },
      removeOnFail: { age: options.keepSeconds },
    };
  }

  /**
   * Enqueues the delivery of a job's final event. The delivery job's id is the event's id: whoever reaches this twice
   * for one event (a worker re-running a job after a crash) adds nothing the second time.
   */
  async enqueue(tenant: string, jobId: string, status: TerminalStatus): Promise<void> {
    const data: WebhookJob = { v: WEBHOOK_JOB_VERSION, tenant, jobId, status, manual: false };
    await this.queue.add('delivery', data, { ...this.jobOptions, jobId: eventIdFor(jobId, eventTypeFor(status)) });
  }

  /** Enqueues the delivery of a batch's final event; its id is the event's (a second enqueue adds nothing). */
  async enqueueBatch(tenant: string, batchId: string, status: BatchFinalStatus): Promise<void> {
    const data: WebhookJob = { v: WEBHOOK_JOB_VERSION, tenant, jobId: batchId, status: BATCH_TO_JOB_STATUS[status], manual: false, subject: 'batch' };
    await this.queue.add('delivery', data, { ...this.jobOptions, jobId: batchEventId(batchId, status) });
  }

  /** Sends the event again with a fresh set of attempts (the event id, the receiver's deduplication key, stays). */
  async retry(tenant: string, jobId: string, status: TerminalStatus, now = Date.now()): Promise<void> {
    const data: WebhookJob = { v: WEBHOOK_JOB_VERSION, tenant, jobId, status, manual: true };
    await this.queue.add('delivery', data, { ...this.jobOptions, jobId: `${eventIdFor(jobId, eventTypeFor(status))}-retry-${now}` });
  }

  async close(): Promise<void> {
    await this.queue.close();
  }
}
