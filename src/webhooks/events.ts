// Webhook events for async jobs, shaped as OpenAI's own (`{ id, object: "event", type, created_at, data }`) so the
// official clients' `webhooks.unwrap()` parses them. The id is derived from the job and the type: a redelivery is
// recognisably the same event (receivers deduplicate on `webhook-id`).
import { createHash } from 'node:crypto';
import { toPublicJob, type PublicJob } from '../queue/job-object.ts';
import type { JobRecord, TerminalStatus } from '../queue/job-store.ts';

export type JobEventType = `job.${TerminalStatus}`;

export interface JobEvent {
  id: string;
  object: 'event';
  type: JobEventType;
  /** Epoch seconds: when the job reached its final status. */
  created_at: number;
  data: {
    id: string;
    status: TerminalStatus;
    /** The webhook metadata given at submission. */
    metadata: Record<string, unknown> | null;
    /** The whole job, result included (`webhooks.includeJob`). */
    job?: PublicJob;
  };
}

export function eventTypeFor(status: TerminalStatus): JobEventType {
  return `job.${status}`;
}

/** `evt_` and 32 hex digits, the same for every delivery of one job's event. */
export function eventIdFor(jobId: string, type: JobEventType): string {
  return `evt_${createHash('sha256').update(`${jobId}\n${type}`).digest('hex').slice(0, 32)}`;
}

export function buildJobEvent(record: JobRecord & { status: TerminalStatus }, options: { includeJob: boolean }): JobEvent {
  const type = eventTypeFor(record.status);
  return {
    id: eventIdFor(record.id, type),
    object: 'event',
    type,
    created_at: Math.floor((record.finishedAt ?? record.createdAt) / 1000),
    data: {
      id: record.id,
      status: record.status,
      metadata: record.webhook?.metadata ?? null,
      ...(options.includeJob ? { job: toPublicJob(record) } : {}),
    },
  };
}
