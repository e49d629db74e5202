// The worker's side of async jobs (replyTo null): the tenant's budgets charged when the job runs, the job record moved
// through running → succeeded | failed | cancelled | expired, and the webhook enqueued by whoever made that move.
// Never reserves budget ahead of the tenant's synchronous requests; never enqueues an event twice for one job.
import type { Logger } from 'pino';
import type { Config } from '../config/schema.ts';
import type { RedisKeys } from '../queue/keys.ts';
import type { CompletionJob, CompletionResult, JobResult } from '../queue/jobs.ts';
import type { JobStore, TerminalStatus, UpdateOutcome } from '../queue/job-store.ts';
import type { WebhookQueue } from '../webhooks/webhook-queue.ts';
import { admitRequest } from '../admission/admit.ts';
import { acquireLease, holdLease, type LeaseHolder } from '../admission/leases.ts';
import { resolveTenantLimits, type TenantLimits } from '../admission/limits.ts';
import { estimateTokens } from '../admission/tokens.ts';
import type { AdmissionRedis } from '../admission/scripts.ts';
import { isBatchLine, type BatchLines } from '../batches/batch-lines.ts';

export type AsyncSlot = { granted: true; lease: LeaseHolder | undefined; tokens: number | undefined } | { granted: false; retryInMs: number };

export interface AsyncJobsOptions {
  store: JobStore;
  webhooks: WebhookQueue;
  redis: AdmissionRedis;
  keys: RedisKeys;
  config: Config;
  logger: Logger;
  /** Lease TTL for the tenant's concurrency slots (the worker's lock duration). */
  leaseTtlMs: number;
  /** Batch lines (jobs carrying `batch`): recorded into their batch instead of a job record (src/batches/batch-lines.ts). */
  batchLines?: BatchLines;
}

export class AsyncJobs {
  private readonly options: AsyncJobsOptions;
  private readonly limits = new Map<string, TenantLimits>();

  constructor(options: AsyncJobsOptions) {
    this.options = options;
    for (const tenant of options.config.tenants) this.limits.set(tenant.id, resolveTenantLimits(options.config, tenant));
  }

  /**
   * The tenant's budgets for one run of the job: a concurrency slot out of its async share of maxConcurrent, then its
   * rpm/tpm budgets, taken only if free now (maxQueueWait 0: nothing is reserved ahead, so the tenant's synchronous
   * requests, which may reserve future slots, keep their place). Refused: the job waits `retryInMs`, delayed.
   * A batch line also takes its line's run lease first (src/batches/batch-lines.ts): one run of a line at a time.
   */
  async acquire(job: CompletionJob, jobId: string): Promise<AsyncSlot> {
    if (isBatchLine(job) && this.options.batchLines !== undefined) return this.options.batchLines.withRunLease(job, () => this.acquireBudgets(job, jobId));
    return this.acquireBudgets(job, jobId);
  }

  private async acquireBudgets(job: CompletionJob, jobId: string): Promise<AsyncSlot> {
    const { redis, keys, config, leaseTtlMs } = this.options;
    const limits = this.limits.get(job.tenant);
    if (limits === undefined) return { granted: true, lease: undefined, tokens: undefined };
    let lease: LeaseHolder | undefined;
    if (limits.maxConcurrent !== undefined) {
      const share = Math.max(1, Math.floor(limits.maxConcurrent * config.jobs.asyncConcurrencyShare));
      const slot = await acquireLease(redis, keys, job.tenant, jobId, share, leaseTtlMs);
      if (!slot.granted) return slot;
      lease = holdLease(redis, keys, job.tenant, jobId, leaseTtlMs);
    }
    if (job.chargeAtRun !== true || (limits.rpm === undefined && limits.tpm === undefined)) return { granted: true, lease, tokens: job.tokens };
    const tokens = limits.tpm === undefined ? 0 : estimateTokens(job.endpoint, job.body, { completionTokens: limits.estimatedCompletionTokens });
    try {
      const answer = await admitRequest(redis, keys, limits, { tokens, maxQueueWaitMs: 0, fairShare: false });
      if (answer.decision === 'reject') {
        await lease?.release();
        return { granted: false, retryInMs: answer.retryAfterMs };
      }
    } catch (err) {
      await lease?.release();
      throw err;
    }
    return { granted: true, lease, tokens: tokens > 0 ? tokens : undefined };
  }

  /** Marks the job running. Not run when it already ended (cancelled meanwhile, or finished by a run that then died). */
  async begin(job: CompletionJob, jobId: string): Promise<{ run: true } | { run: false; returnValue: JobResult }> {
    if (isBatchLine(job) && this.options.batchLines !== undefined) return this.options.batchLines.begin(job, jobId);
    const outcome = await this.options.store.markRunning(job.tenant, jobId);
    if (outcome.changed) return { run: true };
    if (outcome.current === undefined) {
      this.options.logger.warn({ jobId, tenant: job.tenant }, 'async job has no record (expired or lost): not run');
    } else {
      // Its final move may have been made by a run that died before enqueuing the event: make sure it is queued.
      await this.ensureWebhook(job.tenant, jobId, outcome.current as TerminalStatus);
    }
    return { run: false, returnValue: endedResult(outcome.current ?? 'missing') };
  }

  /**
   * Whether an aborted run was its tenant's cancel (the ingress recorded it first). Otherwise the run lost its lock
   * (Redis restarted, or the worker stalled) and the job must run again: it must not complete with a cancel.
   */
  async wasCancelled(job: CompletionJob, jobId: string): Promise<boolean> {
    if (isBatchLine(job) && this.options.batchLines !== undefined) return this.options.batchLines.wasCancelled(job);
    const record = await this.options.store.get(job.tenant, jobId);
    return record === undefined || record.status === 'cancelled';
  }

  /** Records the upstream's answer as the job's result (succeeded) or error (failed); returns the job's return value. */
  async finish(job: CompletionJob, jobId: string, result: CompletionResult): Promise<JobResult> {
    if (isBatchLine(job) && this.options.batchLines !== undefined) return this.options.batchLines.finish(job, jobId, result);
    if (result.kind === 'error') {
      await this.end(job.tenant, jobId, 'failed', { statusCode: result.status, error: result.error });
      return result;
    }
    if (result.kind === 'stream') {
      // The ingress refuses stream: true for async jobs; a worker that met one anyway keeps what it has.
      await this.end(job.tenant, jobId, 'succeeded', { statusCode: 200, usage: result.usage });
      return result;
    }
    await this.end(job.tenant, jobId, 'succeeded', { statusCode: result.status, result: result.body, usage: usageOf(result.body) });
    // The body lives in the job record: the BullMQ job keeps a pointer, not a second copy.
    return { kind: 'stored', status: result.status, key: this.options.keys.tenantKeys(job.tenant).job(jobId), bytes: Buffer.byteLength(result.body) };
  }

  expire(job: CompletionJob, jobId: string): Promise<void> {
    if (isBatchLine(job) && this.options.batchLines !== undefined) return this.options.batchLines.expire(job);
    return this.end(job.tenant, jobId, 'expired', {
      error: { message: 'The job did not start before it expired.', type: 'timeout_error', param: null, code: 'job_expired' },
    });
  }

  /** A job BullMQ failed outside the processor (stalled too often, a bug): recorded as failed, its event sent. */
  failed(job: CompletionJob, jobId: string): Promise<void> {
    if (isBatchLine(job) && this.options.batchLines !== undefined) return this.options.batchLines.failed(job, jobId);
    return this.end(job.tenant, jobId, 'failed', {
      statusCode: 502,
      error: { message: 'The job failed in the broker before an answer was produced.', type: 'api_error', param: null, code: 'job_failed' },
    });
  }

  private async end(tenant: string, jobId: string, status: TerminalStatus, outcome: Parameters<JobStore['finish']>[3]): Promise<void> {
    const update = await this.options.store.finish(tenant, jobId, status, outcome);
    // Only the caller whose move won sends the event; a refused move means someone else ended the job.
    if (update.changed && update.hasWebhook) await this.options.webhooks.enqueue(tenant, jobId, status);
    else if (!update.changed) await this.ensureWebhookAfter(tenant, jobId, update);
  }

  private async ensureWebhookAfter(tenant: string, jobId: string, update: UpdateOutcome): Promise<void> {
    if (update.changed || update.current === undefined || update.current === 'queued' || update.current === 'running') return;
    await this.ensureWebhook(tenant, jobId, update.current);
  }

  /** Enqueues the event again if the record says it is due (the delivery job's id is the event's: no duplicate). */
  private async ensureWebhook(tenant: string, jobId: string, status: TerminalStatus): Promise<void> {
    const record = await this.options.store.get(tenant, jobId);
    if (record?.webhook !== undefined && record.webhookState === 'pending') await this.options.webhooks.enqueue(tenant, jobId, status);
  }
}

/** The return value of a run that found its job already ended. */
function endedResult(status: string): JobResult {
  return { kind: 'error', status: 409, headers: {}, error: { message: `The job had already ended (${status}).`, type: 'invalid_request_error', param: null, code: 'job_ended' } };
}

/** The usage object of an OpenAI answer, when it has one. */
function usageOf(body: string): unknown {
  try {
    const parsed = JSON.parse(body) as { usage?: unknown };
    return parsed.usage ?? undefined;
  } catch {
    return undefined;
  }
}
