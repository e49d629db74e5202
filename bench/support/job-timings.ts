// Where a Spillway job's time goes, from BullMQ's own timestamps on completed jobs (ms resolution): waiting in Redis
// (added → taken by a worker) and running in the worker (taken → finished, upstream call and reply included). Read-only.
import type { Queue } from 'bullmq';
import { summarize, type Summary } from './stats.ts';

export interface JobTimings {
  jobs: number;
  /** job.processedOn − job.timestamp */
  wait: Summary;
  /** job.finishedOn − job.processedOn */
  run: Summary;
}

/** The newest `limit` completed jobs added since `sinceMs` (epoch ms); they are kept for jobs.keepCompletedSeconds. */
export async function jobTimings(queue: Queue, sinceMs: number, limit = 2_000): Promise<JobTimings> {
  const jobs = await queue.getJobs(['completed'], 0, limit - 1, false);
  const wait: number[] = [];
  const run: number[] = [];
  for (const job of jobs) {
    if (job.timestamp < sinceMs || job.processedOn === undefined || job.finishedOn === undefined) continue;
    wait.push(job.processedOn - job.timestamp);
    run.push(job.finishedOn - job.processedOn);
  }
  return { jobs: wait.length, wait: summarize(wait), run: summarize(run) };
}
