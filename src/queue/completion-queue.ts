// The producer side of the `completions` queue: one BullMQ Queue, the job options every completion job gets,
// and cancellation. Never retries a job through BullMQ `attempts`: the worker's call loop owns retries.
import { Queue, type JobsOptions } from 'bullmq';
import type { Redis } from 'ioredis';
import { QUEUE_NAMES, type RedisKeys } from './keys.ts';
import type { CompletionJob, CompletionResult } from './jobs.ts';
import { cancelJob } from './cancel.ts';

export interface CompletionQueueOptions {
  connection: Redis;
  keys: RedisKeys;
  keepCompletedSeconds: number;
  keepFailedSeconds: number;
}

export class CompletionQueue {
  readonly queue: Queue<CompletionJob, CompletionResult>;
  private readonly connection: Redis;
  private readonly keys: RedisKeys;
  private readonly jobOptions: JobsOptions;

  constructor(options: CompletionQueueOptions) {
    this.connection = options.connection;
    this.keys = options.keys;
    this.queue = new Queue<CompletionJob, CompletionResult>(QUEUE_NAMES.completions, {
      connection: options.connection,
      prefix: options.keys.bullPrefix,
    });
    this.jobOptions = {
      attempts: 1,
      // Finished jobs stay a while so an ingress that missed the reply (pub/sub reconnect) can read the result.
      removeOnComplete: { age: options.keepCompletedSeconds },
      removeOnFail: { age: options.keepFailedSeconds },
    };
  }

  /** Adds the job under the caller's id (the ingress registers its reply sink under that id first). */
  async enqueue(jobId: string, data: CompletionJob, options: { delayMs?: number; priority?: number } = {}): Promise<void> {
    await this.queue.add('completion', data, {
      ...this.jobOptions,
      jobId,
      ...(options.delayMs ? { delay: options.delayMs } : {}),
      ...(options.priority ? { priority: options.priority } : {}),
    });
  }

  cancel(jobId: string): Promise<'removed' | 'signalled'> {
    return cancelJob(this.queue, this.connection, this.keys, jobId);
  }

  async close(): Promise<void> {
    await this.queue.close();
  }
}
