// The consumer side of the `completions` queue: one BullMQ Worker per queue shard this process consumes, behind the
// few methods the worker role uses of a single Worker. Never processes a job itself: the processor is handed in.
import { Worker, type Processor, type WorkerListener } from 'bullmq';
import type { Cluster, Redis } from 'ioredis';
import { QUEUE_NAMES, type RedisKeys } from './keys.ts';

export interface CompletionWorkersOptions {
  connection: Redis | Cluster;
  keys: RedisKeys;
  processor: Processor;
  /** Shards to consume (indexes into keys.shards); default: every shard. */
  shards?: readonly number[] | undefined;
  /**
   * Jobs this process runs at once, over all its shards: each shard's Worker gets an equal part (rounded up). Job ids
   * hash uniformly over the shards, so every shard carries the same share of the load.
   */
  concurrency: number;
  lockDuration: number;
  stalledInterval: number;
  maxStalledCount: number;
  /** Stored on each job as processedBy. */
  name: string;
}

/**
 * After a connection error BullMQ waits `runRetryDelay` (15 s by default) before fetching jobs again: a Redis restart
 * or a cluster failover would leave the queue unserved that long.
 */
const RUN_RETRY_DELAY_MS = 1_000;

/** Jobs one shard's Worker runs at once: an equal part of the process's concurrency, rounded up (at least one). */
function perShardConcurrency(concurrency: number, shardCount: number): number {
  return Math.max(1, Math.ceil(concurrency / shardCount));
}

/** Jobs a worker process runs at once over `shardCount` shards (its concurrency, rounded up to a multiple of them). */
export function processSlots(concurrency: number, shardCount: number): number {
  return perShardConcurrency(concurrency, shardCount) * shardCount;
}

export class CompletionWorkers {
  /** One BullMQ Worker per consumed shard, in shard order. */
  readonly workers: readonly Worker[];
  private readonly keys: RedisKeys;
  private readonly byShard = new Map<number, Worker>();

  constructor(options: CompletionWorkersOptions) {
    this.keys = options.keys;
    const shards = options.shards ?? options.keys.shards.map((s) => s.index);
    const concurrency = perShardConcurrency(options.concurrency, shards.length);
    this.workers = shards.map((index) => {
      const worker = new Worker(QUEUE_NAMES.completions, options.processor, {
        connection: options.connection,
        prefix: options.keys.shards[index]!.bullPrefix,
        concurrency,
        lockDuration: options.lockDuration,
        stalledInterval: options.stalledInterval,
        maxStalledCount: options.maxStalledCount,
        runRetryDelay: RUN_RETRY_DELAY_MS,
        autorun: false,
        name: options.name,
      });
      this.byShard.set(index, worker);
      return worker;
    });
  }

  /** Listens on every shard's Worker. */
  on<U extends keyof WorkerListener>(event: U, listener: WorkerListener[U]): this {
    for (const worker of this.workers) worker.on(event, listener);
    return this;
  }

  /** Aborts the job if this process runs it (its shard's Worker holds it); false otherwise. */
  cancelJob(jobId: string, reason?: string): boolean {
    return this.byShard.get(this.keys.shardOf(jobId).index)?.cancelJob(jobId, reason) ?? false;
  }

  /** Runs every shard's Worker; resolves when they all stop. */
  async run(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.run()));
  }

  async waitUntilReady(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.waitUntilReady()));
  }

  /** Stops taking jobs and waits for the active ones (`force`: without waiting). */
  async close(force = false): Promise<void> {
    await Promise.all(this.workers.map((w) => w.close(force)));
  }
}
