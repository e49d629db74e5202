// The BullMQ processor for completion jobs: parse the envelope, drop expired or cancelled jobs before any upstream
// call, call upstream, publish the final reply. Never throws for an upstream failure (that is a reply), and never
// keeps streaming to a reply channel nobody hears.
import { UnrecoverableError, type Job } from 'bullmq';
import type { Logger } from 'pino';
import { CompletionJobSchema, type CompletionResult, type JobResult } from '../queue/jobs.ts';
import type { JobReplies, ReplyPublisher } from '../queue/reply-publisher.ts';
import type { RecentCancels } from '../queue/cancel.ts';
import type { Router } from './routing.ts';
import { callUpstream, CallCancelledError, type UpstreamDeps } from './call.ts';

export interface CompletionProcessorDeps extends UpstreamDeps {
  router: Router;
  publisher: ReplyPublisher;
  recentCancels: RecentCancels;
  logger: Logger;
}

export type CompletionProcessor = (job: Job, token?: string, signal?: AbortSignal) => Promise<JobResult>;

export function createCompletionProcessor(deps: CompletionProcessorDeps): CompletionProcessor {
  return async (job, _token, signal) => {
    const parsed = CompletionJobSchema.safeParse(job.data);
    if (!parsed.success) {
      deps.logger.error({ jobId: job.id, issues: parsed.error.issues.slice(0, 5) }, 'malformed completion job');
      throw new UnrecoverableError('malformed completion job');
    }
    const data = parsed.data;
    const jobId = job.id ?? data.requestId;
    const jobSignal = signal ?? new AbortController().signal;
    // Built only when something is logged: a child logger per job is measurable on the hot path.
    const log = () => deps.logger.child({ jobId, reqId: data.requestId, tenant: data.tenant, model: data.model });
    const now = Date.now();
    deps.metrics.queueWait.observe({ model: data.model }, Math.max(0, (job.processedOn ?? now) - data.enqueuedAt) / 1000);

    if (now >= data.deadline) {
      // Nobody waits for this answer any more: never spend upstream tokens on it.
      deps.metrics.jobsProcessed.inc({ outcome: 'expired' });
      const result: CompletionResult = {
        kind: 'error',
        status: 504,
        headers: {},
        error: { message: 'The request did not complete before its deadline.', type: 'timeout_error', param: null, code: 'deadline_exceeded' },
      };
      await deps.publisher
        .forJob(jobId, job.attemptsStarted, data.replyTo)
        .error(result)
        .catch((err: unknown) => log().error({ err }, 'publishing a reply failed'));
      return result;
    }
    if (deps.recentCancels.has(jobId) || jobSignal.aborted) {
      deps.metrics.jobsProcessed.inc({ outcome: 'cancelled' });
      return cancelledResult();
    }

    const model = deps.router.model(data.model);
    const targets = model === undefined ? [] : model.route;
    const { replies, callSignal, release } = repliesFor(deps.publisher, jobId, job.attemptsStarted, data.replyTo, data.stream, jobSignal);
    try {
      const result = await callUpstream(deps, data, targets, replies, callSignal);
      // A lost PUBLISH is not a failed job: the result is stored as the return value, which the ingress
      // reads when it reconciles after a reconnect.
      let returnValue: JobResult = result;
      if (result.kind === 'error') {
        await replies.error(result).catch((err: unknown) => log().error({ err }, 'publishing the final reply failed'));
      } else {
        const outcome = await replies.done(result);
        if (outcome.failure !== undefined) log().error({ err: outcome.failure }, 'publishing the final reply failed');
        returnValue = outcome.returnValue;
      }
      deps.metrics.jobsProcessed.inc({ outcome: result.kind === 'error' ? 'error' : 'ok' });
      return returnValue;
    } catch (err) {
      if (!(err instanceof CallCancelledError)) throw err;
      deps.metrics.jobsProcessed.inc({ outcome: 'cancelled' });
      if (replies.unheard && !jobSignal.aborted) {
        // The ingress cannot receive this stream intact (gone, or its subscriber lost messages): stop paying for
        // it. The error is published in case it hears again, and kept as the result for its reconciliation.
        log().warn('upstream call aborted: the reply channel reached no subscriber');
        const lost = replyLostResult();
        await replies.error(lost).catch(() => undefined);
        return lost;
      }
      log().info({ reason: String(jobSignal.reason) }, 'upstream call aborted: client gone');
      return cancelledResult();
    } finally {
      release();
    }
  };
}

/**
 * The job's reply writer, and the signal its upstream call obeys: BullMQ's (client gone, lock lost, worker closing)
 * and, for a stream, a reply that reaches nobody. A JSON answer's single PUBLISH reaching nobody is fine: the
 * ingress reads the return value when it reconciles.
 */
function repliesFor(
  publisher: ReplyPublisher,
  jobId: string,
  attempt: number,
  replyTo: string | null,
  stream: boolean,
  jobSignal: AbortSignal,
): { replies: JobReplies; callSignal: AbortSignal; release: () => void } {
  if (!stream || replyTo === null) return { replies: publisher.forJob(jobId, attempt, replyTo), callSignal: jobSignal, release: () => undefined };
  // One controller and one listener per stream job (AbortSignal.any costs more and is released only by GC).
  const controller = new AbortController();
  const forward = () => controller.abort(jobSignal.reason);
  jobSignal.addEventListener('abort', forward, { once: true });
  const replies = publisher.forJob(jobId, attempt, replyTo, { onUnheard: () => controller.abort(new Error('the reply channel reached no subscriber')) });
  return { replies, callSignal: controller.signal, release: () => jobSignal.removeEventListener('abort', forward) };
}

function replyLostResult(): Extract<CompletionResult, { kind: 'error' }> {
  return {
    kind: 'error',
    status: 503,
    headers: { 'retry-after': '1' },
    error: {
      message: 'The answer could not be delivered: the broker lost its reply channel to this request. Try again.',
      type: 'server_error',
      param: null,
      code: 'job_lost',
    },
  };
}

function cancelledResult(): CompletionResult {
  return {
    kind: 'error',
    status: 499,
    headers: {},
    error: { message: 'The client closed the request.', type: 'invalid_request_error', param: null, code: 'client_closed_request' },
  };
}
