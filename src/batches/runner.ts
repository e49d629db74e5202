// The `batches` queue: one driver job per batch (its id the batch's), taken by a worker process and driven to the
// end (src/batches/driver.ts). A driver whose worker dies is taken over by another after the lock expires (BullMQ's
// stall check) and resumes from Redis; one whose worker shuts down hands its job back at once.
import { DelayedError, Queue, UnrecoverableError, Worker, type Job } from 'bullmq';
import type { Cluster, Redis } from 'ioredis';
import type { Logger } from 'pino';
import { z } from 'zod';
import { QUEUE_NAMES, type RedisKeys } from '../queue/keys.ts';
import { BatchDriver, DriveInterrupted, type DriverDeps } from './driver.ts';

export const DriverJobSchema = z.strictObject({ v: z.literal(1), tenant: z.string().min(1), batchId: z.string().min(1) });
export type DriverJob = z.infer<typeof DriverJobSchema>;

/** The producer (the ingress, at POST /v1/batches): one driver job per batch, added once whatever happens. */
export class BatchQueue {
  readonly queue: Queue<DriverJob>;

  constructor(connection: Redis | Cluster, keys: RedisKeys) {
    this.queue = new Queue<DriverJob>(QUEUE_NAMES.batches, { connection, prefix: keys.bullPrefix, streams: { events: { maxLen: 0 } } });
  }

  async start(tenant: string, batchId: string): Promise<void> {
    await this.queue.add('drive', { v: 1, tenant, batchId }, { jobId: batchId, attempts: 1, removeOnComplete: true, removeOnFail: { age: 7 * 86_400 } });
  }

  async close(): Promise<void> {
    await this.queue.close();
  }
}

export interface RunnerOptions {
  connection: Redis | Cluster;
  keys: RedisKeys;
  deps: DriverDeps;
  logger: Logger;
  concurrency: number;
  lockDurationMs: number;
  stalledIntervalMs: number;
  name: string;
}

export interface RunningBatchRunner {
  worker: Worker<DriverJob>;
  /** Hands the batches being driven back to the queue (another worker resumes them) and stops taking new ones. */
  close(): Promise<void>;
}

/** A driver that hits an unexpected error (Redis unavailable) tries again after this long, from where it was. */
const RETRY_MS = 1_000;

export async function startBatchRunner(options: RunnerOptions): Promise<RunningBatchRunner> {
  const stopping = new AbortController();
  const processor = async (job: Job<DriverJob>, token?: string): Promise<string> => {
    const parsed = DriverJobSchema.safeParse(job.data);
    if (!parsed.success) throw new UnrecoverableError('malformed batch driver job');
    const log = options.logger.child({ batchId: parsed.data.batchId, tenant: parsed.data.tenant });
    const driver = new BatchDriver(options.deps, stopping.signal, log);
    try {
      return await driver.drive(parsed.data.tenant, parsed.data.batchId);
    } catch (err) {
      if (token === undefined) throw err;
      if (!(err instanceof DriveInterrupted)) log.warn({ err }, 'batch driver failed; resuming shortly');
      // Back to the queue, not failed: a batch is never abandoned because of a process or a Redis hiccup.
      await job.moveToDelayed(Date.now() + (err instanceof DriveInterrupted ? 0 : RETRY_MS), token);
      throw new DelayedError();
    }
  };
  const worker = new Worker<DriverJob>(QUEUE_NAMES.batches, processor, {
    connection: options.connection,
    prefix: options.keys.bullPrefix,
    concurrency: options.concurrency,
    lockDuration: options.lockDurationMs,
    stalledInterval: options.stalledIntervalMs,
    // Every crash of a driving worker is a stall: a batch outlives any number of them.
    maxStalledCount: 1_000_000,
    autorun: false,
    name: options.name,
  });
  worker.on('error', (err) => options.logger.error({ err }, 'batch runner error'));
  void worker.run().catch((err: unknown) => options.logger.error({ err }, 'batch runner loop stopped'));
  await worker.waitUntilReady();
  return {
    worker,
    close: async () => {
      stopping.abort();
      await worker.close();
    },
  };
}
