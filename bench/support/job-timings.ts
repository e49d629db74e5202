// Where a Spillway job's time goes: waiting in Redis (added → taken by a worker) and running in the worker (taken →
// finished, upstream call and reply included). Completed jobs are removed at once (jobs.keepCompletedSeconds 0), so the
// times come from BullMQ's event stream, read while it is written (it keeps only ~100 entries): during a warm-up, never
// during a measured phase, whose Redis cost these reads would add to.
import type { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { summarize, type Summary } from './stats.ts';

export interface JobTimings {
  jobs: number;
  /** taken − added */
  wait: Summary;
  /** finished − taken */
  run: Summary;
}

export interface JobTimingsRecorder {
  /** Stops reading; the timings of every job whose added, active and completed events were all seen. */
  stop(): Promise<JobTimings>;
}

/** Each event's stream id is the Redis time (ms) at which BullMQ's script wrote it. */
export async function recordJobTimings(queue: Queue): Promise<JobTimingsRecorder> {
  // BullMQ types its client narrowly; it is the ioredis connection the queue was given.
  const reader = ((await queue.client) as unknown as Redis).duplicate();
  const key = queue.keys.events!;
  const seen = new Map<string, { added?: number; active?: number; completed?: number }>();
  let stopped = false;
  const loop = (async () => {
    let last = '$';
    while (!stopped) {
      const reply = (await reader.call('XREAD', 'COUNT', '10000', 'BLOCK', '100', 'STREAMS', key, last)) as [string, [string, string[]][]][] | null;
      for (const [id, fields] of reply?.[0]?.[1] ?? []) {
        last = id;
        const field = (name: string) => fields[fields.indexOf(name) + 1];
        const event = field('event');
        const jobId = field('jobId');
        if (jobId === undefined || (event !== 'added' && event !== 'active' && event !== 'completed')) continue;
        const times = seen.get(jobId) ?? {};
        times[event] = Number(id.split('-')[0]);
        seen.set(jobId, times);
      }
    }
  })();
  return {
    stop: async () => {
      stopped = true;
      await loop.catch(() => undefined);
      reader.disconnect();
      const wait: number[] = [];
      const run: number[] = [];
      for (const { added, active, completed } of seen.values()) {
        if (added === undefined || active === undefined || completed === undefined) continue;
        wait.push(active - added);
        run.push(completed - active);
      }
      return { jobs: wait.length, wait: summarize(wait), run: summarize(run) };
    },
  };
}
