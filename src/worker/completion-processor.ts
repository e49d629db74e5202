// The BullMQ processor for completion jobs: parse the envelope, drop expired or cancelled jobs before any upstream
// call, call upstream, publish the final reply. Never throws for an upstream failure (that is a reply), and never
// keeps streaming to a reply channel nobody hears.
import { DelayedError, UnrecoverableError, type Job } from 'bullmq';
import type { Logger } from 'pino';
import { CompletionJobSchema, type CompletionResult, type JobResult } from '../queue/jobs.ts';
import type { JobReplies, ReplyPublisher } from '../queue/reply-publisher.ts';
import type { RecentCancels } from '../queue/cancel.ts';
import type { Router } from '../catalogue/catalogue.ts';
import { withUsageRequested } from '../upstream/usage-request.ts';
import { callUpstream, CallCancelledError, pausedForMs, UpstreamBusyError, type UpstreamDeps } from '../upstream/call.ts';
import { totalTokens, type WorkerBudgets } from '../admission/worker-budgets.ts';
import type { LeaseHolder } from '../admission/leases.ts';
import type { AsyncJobs } from './async-jobs.ts';
import type { JobReporter } from '../usage/job-report.ts';

export interface CompletionProcessorDeps extends UpstreamDeps {
  router: Router;
  publisher: ReplyPublisher;
  recentCancels: RecentCancels;
  logger: Logger;
  /** Tenant concurrency leases and token settlement; absent: no tenant limits are enforced in the worker. */
  budgets?: WorkerBudgets;
  /** Async jobs (replyTo null): their record, run-time budgets and webhook. Absent: they run like any job, unrecorded. */
  asyncJobs?: AsyncJobs;
  /** Each job's log line, queue wait, tokens, cost and usage counters (src/usage/job-report.ts); absent: queue wait only. */
  report?: JobReporter;
}

export type CompletionProcessor = (job: Job, token?: string, signal?: AbortSignal) => Promise<JobResult>;

export function createCompletionProcessor(deps: CompletionProcessorDeps): CompletionProcessor {
  return async (job, token, signal) => {
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
    const takenAt = job.processedOn ?? now;
    if (deps.report !== undefined) deps.report.taken(data, takenAt);
    else deps.metrics.queueWait.observe({ model: data.model, tenant: data.tenant }, Math.max(0, takenAt - data.enqueuedAt) / 1000);

    // An async job is answered through its record and webhook, never over pub/sub (its replies are no-ops).
    const asyncJobs = data.replyTo === null ? deps.asyncJobs : undefined;

    if (now >= data.deadline) {
      // Nobody waits for this answer any more: never spend upstream tokens on it.
      deps.metrics.jobsProcessed.inc({ outcome: 'expired' });
      const result: CompletionResult = {
        kind: 'error',
        status: 504,
        headers: {},
        error: { message: 'The request did not complete before its deadline.', type: 'timeout_error', param: null, code: 'deadline_exceeded' },
      };
      if (asyncJobs !== undefined) await asyncJobs.expire(data, jobId);
      await deps.publisher
        .forJob(jobId, job.attemptsStarted, data.replyTo)
        .error(result)
        .catch((err: unknown) => log().error({ err }, 'publishing a reply failed'));
      deps.report?.finished(data, jobId, 'expired', result, { takenAt });
      return result;
    }
    if (deps.recentCancels.has(jobId) || jobSignal.aborted) {
      // An async job's cancel is recorded (and its event sent) by the ingress that cancelled it.
      deps.metrics.jobsProcessed.inc({ outcome: 'cancelled' });
      deps.report?.finished(data, jobId, 'cancelled', undefined, { takenAt });
      return cancelledResult();
    }

    // Every deployment the job could use is paused by a 429 (known in memory, no Redis call): it waits delayed, before
    // taking any of its tenant's budgets only to give them back.
    const pausedMs = pausedForMs(deps, data, deps.router.targets(data.model));
    if (pausedMs !== undefined && token !== undefined && now + pausedMs < data.deadline) {
      await job.moveToDelayed(Date.now() + pausedMs, token);
      throw new DelayedError();
    }

    let lease: LeaseHolder | undefined;
    let chargedTokens = data.tokens;
    if (deps.budgets !== undefined || asyncJobs !== undefined) {
      // An async job takes its tenant's budgets now, from its own share (src/worker/async-jobs.ts).
      const slot = asyncJobs !== undefined ? await asyncJobs.acquire(data, jobId) : await deps.budgets!.acquire(data.tenant, jobId);
      if (!slot.granted) {
        // The tenant is at maxConcurrent across the pool: the job waits for a slot instead of failing.
        if (token === undefined) throw new Error('a job can only wait for a tenant slot with its lock token');
        await job.moveToDelayed(Date.now() + slot.retryInMs, token);
        throw new DelayedError();
      }
      lease = slot.lease;
      // An async job's tokens are charged now (chargeAtRun), not at admission: settle what was charged.
      if (asyncJobs !== undefined && 'tokens' in slot) chargedTokens = slot.tokens as number | undefined;
    }
    if (asyncJobs !== undefined) {
      const started = await asyncJobs.begin(data, jobId).catch(async (err: unknown) => {
        await lease?.release();
        throw err;
      });
      if (!started.run) {
        await lease?.release();
        return started.returnValue;
      }
    }

    const model = deps.router.model(data.model);
    const targets = model === undefined ? [] : model.route;
    const { replies, callSignal, release } = repliesFor(deps.publisher, jobId, job.attemptsStarted, data.replyTo, data.stream, jobSignal);
    try {
      // A stream's usage settles the tenant's token budget and counts its tokens and cost: ask for it even when the
      // client did not (the extra chunk is kept from the client).
      const wantsUsage = deps.report !== undefined || deps.budgets?.wantsUsage(data.tenant) === true;
      const callJob = data.stream && wantsUsage ? { ...data, body: withUsageRequested(data.endpoint, data.body) } : data;
      const result = await callUpstream(deps, callJob, targets, replies, callSignal);
      // A lost PUBLISH is not a failed job: the result is stored as the return value, which the ingress
      // reads when it reconciles after a reconnect.
      let returnValue: JobResult = result;
      if (asyncJobs !== undefined) {
        returnValue = await asyncJobs.finish(data, jobId, result);
      } else if (result.kind === 'error') {
        await replies.error(result).catch((err: unknown) => log().error({ err }, 'publishing the final reply failed'));
      } else {
        const outcome = await replies.done(result);
        if (outcome.failure !== undefined) log().error({ err: outcome.failure }, 'publishing the final reply failed');
        returnValue = outcome.returnValue;
      }
      deps.metrics.jobsProcessed.inc({ outcome: result.kind === 'error' ? 'error' : 'ok' });
      deps.report?.finished(data, jobId, result.kind === 'error' ? 'error' : 'ok', result, { takenAt, headHeaders: replies.headHeaders });
      if (deps.budgets !== undefined && chargedTokens !== undefined) {
        // A failed call is billed nothing; an answer without usage leaves the estimate standing.
        const actual = result.kind === 'error' ? 0 : totalTokens(result.kind === 'stream' ? result.usage : undefined, result.kind === 'body' ? result.body : undefined);
        deps.budgets.settle(data.tenant, chargedTokens, actual).catch((err: unknown) => log().warn({ err }, 'settling the token budget failed'));
      }
      return returnValue;
    } catch (err) {
      if (err instanceof UpstreamBusyError && token !== undefined) {
        // Every usable deployment is rate limited for a while (a 429's pause, pool-wide limits): the job waits delayed,
        // not in a worker slot, and its tenant lease goes back meanwhile (finally below).
        await job.moveToDelayed(Date.now() + err.retryInMs, token);
        throw new DelayedError();
      }
      if (!(err instanceof CallCancelledError)) throw err;
      deps.metrics.jobsProcessed.inc({ outcome: 'cancelled' });
      deps.report?.finished(data, jobId, 'cancelled', undefined, { takenAt, headHeaders: replies.headHeaders });
      if (replies.unheard && !jobSignal.aborted) {
        // The ingress cannot receive this stream intact (gone, or its subscriber lost messages): stop paying for
        // it. The error is published in case it hears again, and kept as the result for its reconciliation.
        log().warn('upstream call aborted: the reply channel reached no subscriber');
        const lost = replyLostResult();
        await replies.error(lost).catch(() => undefined);
        return lost;
      }
      if (asyncJobs !== undefined && !(await asyncJobs.wasCancelled(data, jobId))) {
        // Not its tenant's cancel: the run lost its lock. Completing now would leave the job unanswered for ever; it
        // goes back to the queue instead (if the lock is really gone this throws, and BullMQ's stall check re-runs it).
        log().warn({ reason: String(jobSignal.reason) }, 'async job aborted without a cancel: running it again');
        if (token === undefined) throw err;
        await job.moveToDelayed(Date.now() + 1_000, token);
        throw new DelayedError();
      }
      log().info({ reason: String(jobSignal.reason) }, 'upstream call aborted: client gone');
      return cancelledResult();
    } finally {
      release();
      if (lease !== undefined) void lease.release();
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
