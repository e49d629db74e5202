// Where a waiting job stands in the completions queue, for the clients that ask (x-spillway-queue-position): its place
// in line and an estimated wait from the pool's measured capacity. One MULTI in the queue's slot per probe; read-only.
import type { QueueName, RedisKeys } from '../queue/keys.ts';
import type { AdmissionRedis } from './scripts.ts';
import { estimatedWaitMs } from './shed.ts';

/** BullMQ scores a delayed job `timestamp × 0x1000 + n` (its getDelayedScore). */
const DELAYED_SCORE_FACTOR = 0x1000;

export type QueuePlace =
  /** Waiting for its budget slot (a BullMQ delay): it joins the line at `etaMs` from now. */
  | { state: 'delayed'; etaMs: number }
  /** In line: `position` 1 is next. */
  | { state: 'queued'; position: number; etaMs: number }
  /** Taken by a worker, finished, or gone: nothing to report. */
  | { state: 'elsewhere' };

export async function placeInQueue(redis: AdmissionRedis, keys: RedisKeys, queue: QueueName, jobId: string, drainRate: number, nowMs = Date.now()): Promise<QueuePlace> {
  const depth = keys.queueDepthKeys(queue);
  const replies = await redis.multi().zscore(depth.delayed, jobId).zrank(depth.prioritized, jobId).llen(depth.wait).lpos(depth.wait, jobId).exec();
  const [delayedScore, prioritizedRank, waiting, waitIndex] = (replies ?? []).map(([err, value]) => {
    if (err) throw err;
    return value === null ? undefined : Number(value);
  });
  if (delayedScore !== undefined) return { state: 'delayed', etaMs: Math.max(0, Math.floor(delayedScore / DELAYED_SCORE_FACTOR) - nowMs) };
  // Workers take from the right of the wait list, and serve the whole wait list before any prioritized job.
  let position: number | undefined;
  if (waitIndex !== undefined && waiting !== undefined) position = waiting - waitIndex;
  else if (prioritizedRank !== undefined) position = (waiting ?? 0) + prioritizedRank + 1;
  if (position === undefined) return { state: 'elsewhere' };
  const eta = estimatedWaitMs(position, drainRate);
  return { state: 'queued', position, etaMs: Number.isFinite(eta) ? Math.round(eta) : -1 };
}

/** The SSE comment for a place (`: queued position=N eta_ms=M`; eta -1 while no capacity is measured). */
export function placeComment(place: QueuePlace): string | undefined {
  if (place.state === 'queued') return `: queued position=${place.position} eta_ms=${place.etaMs}\n\n`;
  if (place.state === 'delayed') return `: delayed eta_ms=${place.etaMs}\n\n`;
  return undefined;
}
