// Early load shedding: workers count the jobs they finish and the time those jobs held a slot, and the slots they
// offer, into per-second buckets in Redis; the ingress turns them into the pool's capacity (its slots ÷ the mean time
// a job holds one), estimates a new request's wait as its place in line ÷ that capacity and refuses it (503) when the
// wait exceeds its limit.
import { DelayedError, RateLimitError, WaitingChildrenError, WaitingError } from 'bullmq';
import type { Cluster, Redis } from 'ioredis';
import type { QueueName, RedisKeys } from '../queue/keys.ts';

/** Seconds of buckets averaged into the drain rate (the current, still-filling second is left out). */
export const DRAIN_WINDOW_SECONDS = 10;

/** A bucket outlives the window a little, then expires: the counters never grow. */
const BUCKET_TTL_SECONDS = DRAIN_WINDOW_SECONDS + 5;

/** A bucket's fields: jobs finished, the milliseconds they held their slots, slot-milliseconds the workers offered. */
const FIELD_DONE = 'done';
const FIELD_BUSY_MS = 'busy_ms';
const FIELD_SLOT_MS = 'slot_ms';

export interface DrainMeter {
  /**
   * Wraps the worker's processor: every job it ends (answered or failed) is counted with the time it held its slot.
   * A job BullMQ moves aside (delayed, waiting) did not finish and is not counted.
   */
  track<J, T, S, R>(processor: (job: J, token: T, signal: S) => Promise<R>): (job: J, token: T, signal: S) => Promise<R>;
  /** Writes what is counted since the last write (the timer does it every second). */
  flush(): Promise<void>;
  /** Flushes what is counted and stops the timer (idempotent). */
  close(): Promise<void>;
}

/** What the workers drained over the window: what they did, and what they could have done. */
export interface DrainRates {
  /** Jobs finished a second: what the traffic asked for, when the workers were not the bottleneck. */
  throughput: number;
  /**
   * Jobs the pool could finish a second: its slots ÷ the mean time a finished job held one. A trickle of traffic on
   * an idle pool measures what the pool could do, not the trickle's pace (a spike after a quiet minute is not shed for
   * the quiet minute); a saturated pool measures its throughput, and an upstream that slows down lengthens the jobs
   * and so lowers it. 0 with nothing finished in the window.
   */
  capacity: number;
}

/** BullMQ's control-flow errors: the job was moved aside (delayed, waiting for children or a rate limit), not ended. */
function movedAside(err: unknown): boolean {
  return err instanceof DelayedError || err instanceof WaitingChildrenError || err instanceof RateLimitError || err instanceof WaitingError;
}

/**
 * The worker side: three HINCRBY and an EXPIRE per second per worker process, idle or not, never per job. Buckets are
 * keyed by the worker's epoch second: clocks of a few ms apart only move a job between neighbouring buckets of the
 * same window. `slots`: the jobs this process runs at once (its concurrency).
 */
export function createDrainMeter(redis: Redis | Cluster, keys: RedisKeys, queue: QueueName, slots: number, options: { flushMs?: number; now?: () => number } = {}): DrainMeter {
  const clock = options.now ?? Date.now;
  let done = 0;
  let busyMs = 0;
  let lastFlush = clock();
  let closed: Promise<void> | undefined;
  const flush = async () => {
    const now = clock();
    const slotMs = slots * (now - lastFlush);
    const counts = { done, busyMs: Math.round(busyMs) };
    lastFlush = now;
    done = 0;
    busyMs = 0;
    // Idle seconds are written too: the slots a pool offers are half of its capacity.
    const key = keys.drainKey(queue, Math.floor(now / 1000));
    try {
      await redis
        .multi()
        .hincrby(key, FIELD_DONE, counts.done)
        .hincrby(key, FIELD_BUSY_MS, counts.busyMs)
        .hincrby(key, FIELD_SLOT_MS, Math.round(slotMs))
        .expire(key, BUCKET_TTL_SECONDS)
        .exec();
    } catch {
      // Redis away: this second is lost, which only leaves the estimate to the other seconds of the window.
    }
  };
  const timer = setInterval(() => void flush(), options.flushMs ?? 1_000);
  timer.unref();
  return {
    track(processor) {
      // Three named parameters: BullMQ hands a processor its abort signal only when it declares three (its length).
      return async (job, token, signal) => {
        const started = clock();
        let ended = true;
        try {
          return await processor(job, token, signal);
        } catch (err) {
          if (movedAside(err)) ended = false;
          throw err;
        } finally {
          if (ended) {
            done++;
            busyMs += clock() - started;
          }
        }
      };
    },
    flush,
    close() {
      clearInterval(timer);
      closed ??= flush();
      return closed;
    },
  };
}

/**
 * The pool's throughput and capacity over the last DRAIN_WINDOW_SECONDS whole seconds, from every worker's buckets
 * (one MULTI in the deployment's slot).
 */
export async function readDrainRates(redis: Redis | Cluster, keys: RedisKeys, queue: QueueName, nowMs = Date.now()): Promise<DrainRates> {
  const current = Math.floor(nowMs / 1000);
  const multi = redis.multi();
  for (let i = 1; i <= DRAIN_WINDOW_SECONDS; i++) multi.hmget(keys.drainKey(queue, current - i), FIELD_DONE, FIELD_BUSY_MS, FIELD_SLOT_MS);
  const replies = (await multi.exec()) ?? [];
  let done = 0;
  let busy = 0;
  let offered = 0;
  let seconds = 0;
  for (const [err, fields] of replies) {
    if (err) throw err;
    const [d, b, s] = (fields as (string | null)[]).map((v) => (v === null ? 0 : Number(v) || 0));
    done += d!;
    busy += b!;
    offered += s!;
    if (s! > 0) seconds++;
  }
  const throughput = done / DRAIN_WINDOW_SECONDS;
  // Slots the pool offered on average over the seconds it existed (a pool started 3 s ago offers all its slots, not
  // 30 % of them), each finishing one job per mean job time (at least 1 ms).
  const slots = seconds > 0 ? offered / (seconds * 1000) : 0;
  const capacity = done > 0 ? (slots * 1000) / Math.max(1, busy / done) : 0;
  return { throughput, capacity };
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
