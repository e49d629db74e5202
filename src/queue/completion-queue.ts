// The producer side of the `completions` queue: one BullMQ Queue, the job options every completion job gets,
// and cancellation. Never retries a job through BullMQ `attempts`: the worker's call loop owns retries.
import { setTimeout as sleep } from 'node:timers/promises';
import { Queue, type JobsOptions } from 'bullmq';
import type { Redis } from 'ioredis';
import { QUEUE_NAMES, type RedisKeys } from './keys.ts';
import type { CompletionJob, JobResult } from './jobs.ts';
import { cancelJob } from './cancel.ts';

export interface CompletionQueueOptions {
  connection: Redis;
  keys: RedisKeys;
  keepCompletedSeconds: number;
  keepFailedSeconds: number;
  /** Told when a job is known to be in Redis (the reply bus may then treat its absence as a loss). */
  onEnqueued?: (jobId: string) => void;
}

export class CompletionQueue {
  readonly queue: Queue<CompletionJob, JobResult>;
  private readonly connection: Redis;
  private readonly keys: RedisKeys;
  private readonly jobOptions: JobsOptions;
  private readonly onEnqueued: ((jobId: string) => void) | undefined;

  constructor(options: CompletionQueueOptions) {
    this.connection = options.connection;
    this.keys = options.keys;
    this.onEnqueued = options.onEnqueued;
    this.queue = new Queue<CompletionJob, JobResult>(QUEUE_NAMES.completions, {
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

  /**
   * Adds the job under the caller's id (the ingress registers its reply sink under that id first). On the ingress's
   * connection every command has a timeout: a rejection may still leave the job written (see `discard`).
   */
  async enqueue(jobId: string, data: CompletionJob, options: { delayMs?: number; priority?: number } = {}): Promise<void> {
    await this.queue.add('completion', data, {
      ...this.jobOptions,
      jobId,
      ...(options.delayMs ? { delay: options.delayMs } : {}),
      ...(options.priority ? { priority: options.priority } : {}),
    });
    this.onEnqueued?.(jobId);
  }

  cancel(jobId: string): Promise<'removed' | 'signalled'> {
    return cancelJob(this.queue, this.connection, this.keys, jobId);
  }

  /**
   * Best effort, never rejects: makes sure a job whose `enqueue` reported an error does not run for nobody. The add
   * may have been written anyway (a command that timed out still executes once Redis answers again), so the cancel
   * is retried with backoff until Redis has answered it, or until `untilMs` (the job's deadline: past it, a worker
   * drops the job without calling upstream). A cancel runs on the add's connection, so it executes after the add.
   */
  async discard(jobId: string, untilMs: number): Promise<'removed' | 'signalled' | 'gave_up'> {
    let delayMs = 100;
    for (;;) {
      try {
        return await this.cancel(jobId);
      } catch {
        // Redis still unavailable or not answering: try again, a last time at `untilMs`.
      }
      const left = untilMs - Date.now();
      if (left <= 0) return 'gave_up';
      await sleep(Math.min(delayMs, left), undefined, { ref: false });
      delayMs = Math.min(delayMs * 2, 2_000);
    }
  }

  async close(): Promise<void> {
    await this.queue.close();
  }
}
