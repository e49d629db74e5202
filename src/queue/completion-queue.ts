// The producer side of the `completions` queue: one BullMQ Queue per shard, the job options every completion job gets,
// and cancellation. Never retries a job through BullMQ `attempts`: the worker's call loop owns retries.
import { setTimeout as sleep } from 'node:timers/promises';
import { Queue, type Job, type JobsOptions } from 'bullmq';
import type { Cluster, Redis } from 'ioredis';
import { QUEUE_NAMES, type RedisKeys } from './keys.ts';
import type { CompletionJob, JobResult } from './jobs.ts';
import { cancelJob } from './cancel.ts';

/**
 * BullMQ writes 4 entries per job to each queue's event stream (added, waiting, active, completed: the last one with
 * the whole return value) and nothing in Spillway reads them (no QueueEvents anywhere). They cannot be switched off,
 * so the stream is trimmed hard: `MAXLEN ~ 100` keeps one or two stream nodes (100 to 199 events, the last seconds
 * of a busy queue, for a debugging session or the bench's timings) instead of 10,000 events (megabytes of answers).
 * Not 0: Redis would then delete each event as it is written, which saves nothing and leaves no trace at all.
 */
export const EVENTS_MAX_LEN = 100;

export interface CompletionQueueOptions {
  connection: Redis | Cluster;
  keys: RedisKeys;
  /**
   * 0: a completed job is removed at once (its answer travelled over pub/sub; an answer nobody heard is parked by the
   * worker under `keys.parkedReply`). More: completed jobs and their return values stay that long (queue UI, forensics),
   * at a cost of several Redis commands per job.
   */
  keepCompletedSeconds: number;
  keepFailedSeconds: number;
  /** Told when a job is known to be in Redis (the reply bus may then treat its absence as a loss). */
  onEnqueued?: (jobId: string) => void;
}

export class CompletionQueue {
  /** One BullMQ Queue per shard (`keys.shards`), in shard order. */
  readonly queues: readonly Queue<CompletionJob, JobResult>[];
  /** Shard 0's queue: the whole queue with one shard (the default). */
  readonly queue: Queue<CompletionJob, JobResult>;
  private readonly connection: Redis | Cluster;
  private readonly keys: RedisKeys;
  private readonly jobOptions: JobsOptions;
  private readonly onEnqueued: ((jobId: string) => void) | undefined;

  constructor(options: CompletionQueueOptions) {
    this.connection = options.connection;
    this.keys = options.keys;
    this.onEnqueued = options.onEnqueued;
    this.queues = options.keys.shards.map(
      (shard) =>
        new Queue<CompletionJob, JobResult>(QUEUE_NAMES.completions, {
          connection: options.connection,
          prefix: shard.bullPrefix,
          streams: { events: { maxLen: EVENTS_MAX_LEN } },
        }),
    );
    this.queue = this.queues[0]!;
    this.jobOptions = {
      attempts: 1,
      // Removing at once costs one DEL; keeping costs a ZADD, an HSET of the whole answer, a range scan, and later
      // the removal itself (≈ 6 commands per job).
      removeOnComplete: options.keepCompletedSeconds > 0 ? { age: options.keepCompletedSeconds } : true,
      removeOnFail: { age: options.keepFailedSeconds },
    };
  }

  /** The queue of the shard `jobId` hashes to. */
  queueOf(jobId: string): Queue<CompletionJob, JobResult> {
    return this.queues[this.keys.shardOf(jobId).index]!;
  }

  /**
   * Adds the job under the caller's id (the ingress registers its reply sink under that id first), in the shard the id
   * hashes to. On the ingress's connection every command has a timeout: a rejection may still leave the job written
   * (see `discard`).
   */
  async enqueue(jobId: string, data: CompletionJob, options: { delayMs?: number; priority?: number } = {}): Promise<void> {
    await this.queueOf(jobId).add('completion', data, {
      ...this.jobOptions,
      jobId,
      ...(options.delayMs ? { delay: options.delayMs } : {}),
      ...(options.priority ? { priority: options.priority } : {}),
    });
    this.onEnqueued?.(jobId);
  }

  /** The job as Redis holds it, from its shard; undefined when it is not (or no longer) there. */
  getJob(jobId: string): Promise<Job<CompletionJob, JobResult> | undefined> {
    return this.queueOf(jobId).getJob(jobId);
  }

  /** Job counts summed over every shard. */
  async getJobCounts(...types: Parameters<Queue['getJobCounts']>): Promise<Record<string, number>> {
    const perShard = await Promise.all(this.queues.map((q) => q.getJobCounts(...types)));
    const total: Record<string, number> = {};
    for (const counts of perShard) for (const [state, n] of Object.entries(counts)) total[state] = (total[state] ?? 0) + n;
    return total;
  }

  cancel(jobId: string): Promise<'removed' | 'signalled'> {
    return cancelJob(this.queueOf(jobId), this.connection, this.keys, jobId);
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
    await Promise.all(this.queues.map((q) => q.close()));
  }
}
