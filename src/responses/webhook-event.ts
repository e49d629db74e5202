// The webhook event of a finished background response, shaped as OpenAI's own (response.completed, .incomplete,
// .failed, .cancelled: `{ id, object: "event", type, created_at, data: { id } }`) so `client.webhooks.unwrap()` takes
// it. The event id is derived from the job and the type: a redelivery is recognisably the same event.
import { createHash } from 'node:crypto';
import type { JobRecord, TerminalStatus } from '../queue/job-store.ts';

export type ResponseEventType = 'response.completed' | 'response.incomplete' | 'response.failed' | 'response.cancelled';

export interface ResponseWebhookEvent {
  id: string;
  object: 'event';
  type: ResponseEventType;
  /** Epoch seconds: when the response finished. */
  created_at: number;
  data: { id: string };
}

export function responseEventFor(record: JobRecord & { status: TerminalStatus }): ResponseWebhookEvent {
  const type = eventType(record);
  return {
    id: `evt_${createHash('sha256').update(`${record.id}\n${type}`).digest('hex').slice(0, 32)}`,
    object: 'event',
    type,
    created_at: Math.floor((record.finishedAt ?? record.createdAt) / 1000),
    // The job `job_<hex>` runs the response `resp_<hex>`.
    data: { id: `resp_${record.id.replace(/^job_/, '')}` },
  };
}

function eventType(record: JobRecord & { status: TerminalStatus }): ResponseEventType {
  if (record.status === 'cancelled') return 'response.cancelled';
  if (record.status !== 'succeeded') return 'response.failed';
  // A length stop still succeeds as a job; the Response says it is incomplete.
  return statusOf(record.result) === 'incomplete' ? 'response.incomplete' : 'response.completed';
}

function statusOf(result: string | undefined): unknown {
  try {
    return result === undefined ? undefined : (JSON.parse(result) as { status?: unknown }).status;
  } catch {
    return undefined;
  }
}
