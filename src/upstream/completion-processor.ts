// The BullMQ processor for completion jobs: parse the envelope, drop expired or cancelled jobs before any
// upstream call, call upstream, publish the final reply. Never throws for an upstream failure (that is a reply).
import { UnrecoverableError, type Job } from 'bullmq';
import type { Logger } from 'pino';
import { CompletionJobSchema, type CompletionResult } from '../queue/jobs.ts';
import type { ReplyPublisher } from '../queue/reply-publisher.ts';
import type { RecentCancels } from '../queue/cancel.ts';
import type { Router } from './routing.ts';
import { callUpstream, CallCancelledError, type UpstreamDeps } from './call.ts';

export interface CompletionProcessorDeps extends UpstreamDeps {
  router: Router;
  publisher: ReplyPublisher;
  recentCancels: RecentCancels;
  logger: Logger;
}

export type CompletionProcessor = (job: Job, token?: string, signal?: AbortSignal) => Promise<CompletionResult>;

export function createCompletionProcessor(deps: CompletionProcessorDeps): CompletionProcessor {
  return async (job, _token, signal) => {
    const parsed = CompletionJobSchema.safeParse(job.data);
    if (!parsed.success) {
      deps.logger.error({ jobId: job.id, issues: parsed.error.issues.slice(0, 5) }, 'malformed completion job');
      throw new UnrecoverableError('malformed completion job');
    }
    const data = parsed.data;
    const jobId = job.id ?? data.requestId;
    const replies = deps.publisher.forJob(jobId, job.attemptsStarted, data.replyTo);
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
      await replies.error(result).catch((err: unknown) => log().error({ err }, 'publishing a reply failed'));
      return result;
    }
    if (deps.recentCancels.has(jobId) || signal?.aborted) {
      deps.metrics.jobsProcessed.inc({ outcome: 'cancelled' });
      return cancelledResult();
    }

    const model = deps.router.model(data.model);
    const targets = model === undefined ? [] : model.route;
    try {
      const result = await callUpstream(deps, data, targets, replies, signal ?? new AbortController().signal);
      // A lost PUBLISH is not a failed job: the result is stored as the return value, which the ingress
      // reads when it reconciles after a reconnect.
      await (result.kind === 'error' ? replies.error(result) : replies.done(result)).catch((err: unknown) =>
        log().error({ err }, 'publishing the final reply failed'),
      );
      deps.metrics.jobsProcessed.inc({ outcome: result.kind === 'error' ? 'error' : 'ok' });
      return result;
    } catch (err) {
      if (err instanceof CallCancelledError) {
        log().info('upstream call aborted: client gone');
        deps.metrics.jobsProcessed.inc({ outcome: 'cancelled' });
        return cancelledResult();
      }
      throw err;
    }
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
