// Early load shedding: workers count finished jobs into per-second buckets in Redis (the drain rate), the ingress
// estimates a new request's wait as its place in line ÷ that rate and refuses it (503) when the wait exceeds its limit.
import type { Cluster, Redis } from 'ioredis';
import type { QueueName, RedisKeys } from '../queue/keys.ts';

/** Seconds of buckets averaged into the drain rate (the current, still-filling second is left out). */
export const DRAIN_WINDOW_SECONDS = 10;

/** A bucket outlives the window a little, then expires: the counters never grow. */
const BUCKET_TTL_SECONDS = DRAIN_WINDOW_SECONDS + 5;

export interface DrainMeter {
  /** Counts one finished job (sync, no I/O: flushed once a second). */
  record(count?: number): void;
  /** Flushes what is counted and stops the timer (idempotent). */
  close(): Promise<void>;
}

/**
 * The worker side: one INCRBY + EXPIRE per second per worker process, not per job. Buckets are keyed by the worker's
 * epoch second: clocks of a few ms apart only move a job between neighbouring buckets of the same window.
 */
export function createDrainMeter(redis: Redis | Cluster, keys: RedisKeys, queue: QueueName, flushMs = 1_000): DrainMeter {
  let pending = 0;
  let closed: Promise<void> | undefined;
  const flush = async () => {
    if (pending === 0) return;
    const count = pending;
    pending = 0;
    const key = keys.drainKey(queue, Math.floor(Date.now() / 1000));
    try {
      await redis.multi().incrby(key, count).expire(key, BUCKET_TTL_SECONDS).exec();
    } catch {
      // Redis away: this second's count is lost, which only makes the rate look lower (less shedding), never higher.
    }
  };
  const timer = setInterval(() => void flush(), flushMs);
  timer.unref();
  return {
    record(count = 1) {
      pending += count;
    },
    close() {
      clearInterval(timer);
      closed ??= flush();
      return closed;
    },
  };
}

/** Jobs finished per second over the last DRAIN_WINDOW_SECONDS whole seconds, from every worker's buckets (one MGET). */
export async function readDrainRate(redis: Redis | Cluster, keys: RedisKeys, queue: QueueName, nowMs = Date.now()): Promise<number> {
  const current = Math.floor(nowMs / 1000);
  const bucketKeys = Array.from({ length: DRAIN_WINDOW_SECONDS }, (_, i) => keys.drainKey(queue, current - 1 - i));
  const counts = await redis.mget(...bucketKeys);
  const total = counts.reduce((sum, value) => sum + (value === null ? 0 : Number(value) || 0), 0);
  return total / DRAIN_WINDOW_SECONDS;
}

/**
 * A new job's place in line: jobs without priority (BullMQ serves its wait list first) plus prioritized jobs whose
 * priority is at most `priority` (BullMQ scores a prioritized job priority × 2^32 + a counter). Delayed jobs are not
 * ahead of it. One MULTI in the queue's slot: call it only when the cheap estimate (the whole depth) says shed.
 */
export async function queuePosition(redis: Redis | Cluster, keys: RedisKeys, queue: QueueName, priority: number): Promise<number> {
  // Queue shards (keys.shards): one MULTI per shard, each in its own slot. Every shard drains at the same share of the
  // pool's rate, so the jobs ahead in all shards over the whole drain rate estimate the wait in any one of them.
  const perShard = await Promise.all(
    keys.shards.map((shard) => {
      const depth = keys.queueDepthKeys(queue, shard.index);
      return redis
        .multi()
        .llen(depth.wait)
        .zcount(depth.prioritized, '-inf', `(${(priority + 1) * 2 ** 32}`)
        .exec();
    }),
  );
  const ahead = perShard.flatMap((replies) => replies ?? []).reduce((sum, [err, value]) => {
    if (err) throw err;
    return sum + Number(value);
  }, 0);
  return ahead + 1;
}

/** Expected wait at `position` (1: next) when the queue drains `drainRate` jobs a second; Infinity with no drain measured. */
export function estimatedWaitMs(position: number, drainRate: number): number {
  if (position <= 1) return 0;
  if (!(drainRate > 0)) return Number.POSITIVE_INFINITY;
  return ((position - 1) / drainRate) * 1000;
}

/**
 * Shed when the estimated wait exceeds the request's queue-wait limit. Never without a measured drain: workers that
 * are starting (KEDA scaling from zero) drain nothing yet, and shedding then would keep the queue empty for ever.
 */
export function shouldShed(position: number, drainRate: number, maxQueueWaitMs: number): boolean {
  if (!(drainRate > 0)) return false;
  return estimatedWaitMs(position, drainRate) > maxQueueWaitMs;
}

/** Retry-After for a shed request: when enough of the line ahead will have drained, at least one second. */
export function shedRetryAfterMs(position: number, drainRate: number, maxQueueWaitMs: number): number {
  const wait = estimatedWaitMs(position, drainRate);
  if (!Number.isFinite(wait)) return 1_000;
  return Math.max(1_000, Math.ceil(wait - maxQueueWaitMs));
}
