// Cancellation of a job whose client is gone: a waiting or delayed job is removed; an active one is aborted by
// the worker holding it (broadcast on the cancel channel). Upstream tokens are money: nothing runs for nobody.
import type { Cluster, Redis } from 'ioredis';
import type { Queue } from 'bullmq';
import type { RedisKeys } from './keys.ts';

/**
 * Ingress side. `queue.remove` deletes the job unless a worker holds its lock (then it answers 0); in that case the
 * broadcast reaches the worker, whose processor signal aborts the upstream call. `remove` also answers 1 for a job
 * that does not exist, so existence is checked too: a job not (or no longer) in Redis may still be running on a
 * worker (Redis restarted and lost it) or may land later (an add that timed out but was written), and is broadcast.
 * Both commands are sent at once: on the add's connection they run right behind a late add, before a worker can
 * take that job.
 */
export async function cancelJob(queue: Queue, publisher: Redis | Cluster, keys: RedisKeys, jobId: string): Promise<'removed' | 'signalled'> {
  const [exists, removed] = await Promise.all([publisher.exists(queue.toKey(jobId)), queue.remove(jobId)]);
  if (exists === 1 && removed === 1) return 'removed';
  await publisher.publish(keys.cancelChannel, jobId);
  return 'signalled';
}

/**
 * Worker side: calls `onCancel` for each job id broadcast on the cancel channel. Returns an unsubscribe. Plain
 * SUBSCRIBE in both modes: on Redis Cluster a PUBLISH reaches every node, and cancels are rare.
 */
export async function listenForCancels(subscriber: Redis | Cluster, keys: RedisKeys, onCancel: (jobId: string) => void): Promise<() => Promise<void>> {
  const listener = (channel: string, jobId: string) => {
    if (channel === keys.cancelChannel) onCancel(jobId);
  };
  subscriber.on('message', listener);
  await subscriber.subscribe(keys.cancelChannel);
  return async () => {
    subscriber.off('message', listener);
    await subscriber.unsubscribe(keys.cancelChannel).catch(() => undefined);
  };
}

/**
 * Remembers ids cancelled before this worker held them (the broadcast can overtake the job's move to active),
 * so the processor can drop such a job before calling upstream. Entries expire; the set stays small.
 */
export class RecentCancels {
  private readonly ttlMs: number;
  private readonly entries = new Map<string, number>();

  constructor(ttlMs = 60_000) {
    this.ttlMs = ttlMs;
  }

  add(jobId: string, now = Date.now()): void {
    this.entries.delete(jobId); // re-adding moves the id to the end, keeping the map ordered by expiry
    this.entries.set(jobId, now + this.ttlMs);
    // Map iterates in insertion order: the oldest entries expire first.
    for (const [id, expires] of this.entries) {
      if (expires > now) break;
      this.entries.delete(id);
    }
  }

  has(jobId: string, now = Date.now()): boolean {
    const expires = this.entries.get(jobId);
    return expires !== undefined && expires > now;
  }
}
