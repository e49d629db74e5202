// The tail every queued route shares (chat and text completions, embeddings, the Responses API): the request is put
// on the reply bus, its job enqueued, and the request held until its answer, which is sent as JSON (with the worker's
// x-spillway-* headers) or has already gone out as a stream.
import type { FastifyBaseLogger, FastifyReply, FastifyRequest } from 'fastify';
import type { ReplyBus, ReplySink } from '../../queue/reply-bus.ts';
import type { CompletionQueue } from '../../queue/completion-queue.ts';
import type { CompletionJob } from '../../queue/jobs.ts';
import type { Metrics } from '../../observability/metrics.ts';
import { serviceUnavailable } from '../../errors.ts';
import type { PendingRequest } from '../pending-request.ts';
import { recordStream } from '../access-log.ts';

export interface QueuedAnswerDeps {
  bus: ReplyBus;
  queue: CompletionQueue;
  metrics: Metrics;
}

export interface QueuedAnswerOptions {
  jobId: string;
  job: CompletionJob;
  /** Admission's answer: a delay (the tenant's budget slot) and a priority (class and fair share). */
  delayMs: number;
  priority: number | undefined;
  pending: PendingRequest;
  /** What listens on the bus for the job's replies; default `pending` (the Responses API wraps it to store the answer). */
  listener?: ReplySink;
  /** Why the broker gave up on the request, if it did (read once the answer is settled). */
  abandonedFor: () => string | undefined;
  /** Called with a JSON answer before it is sent (e.g. to keep it for an idempotent retry, or store it). */
  onJson?: (status: number, body: string) => unknown;
  log: () => FastifyBaseLogger;
}

export async function sendQueuedAnswer(deps: QueuedAnswerDeps, request: FastifyRequest, reply: FastifyReply, o: QueuedAnswerOptions): Promise<FastifyReply> {
  deps.bus.register(o.jobId, o.listener ?? o.pending);
  deps.metrics.pendingReplies.inc();
  // Not awaited: the deadline (and a client that leaves) must be answered even while Redis does not answer.
  deps.queue.enqueue(o.jobId, o.job, { delayMs: o.delayMs, ...(o.priority === undefined ? {} : { priority: o.priority }) }).catch((err: unknown) => {
    o.log().error({ err }, 'enqueue failed');
    // Finishes the pending request once (timer, listener, bus entry, gauge); `settled` rejects with the 503.
    o.pending.failBeforeEnqueue(serviceUnavailable('The request queue is unavailable; try again shortly.'));
    // A command that timed out may still have added the job: nobody will wait for it.
    void deps.queue.discard(o.jobId, o.job.deadline);
  });

  const settled = await o.pending.settled;
  if (settled.kind === 'streamed') {
    // Hijacked replies skip Fastify's onResponse hook: record the stream here.
    recordStream(deps.metrics, request, settled.status, reply.elapsedTime, o.abandonedFor());
    return reply;
  }
  await o.onJson?.(settled.status, settled.body);
  return reply
    .code(settled.status)
    .headers(settled.headers ?? {})
    .header('content-type', 'application/json; charset=utf-8')
    .send(settled.body);
}
