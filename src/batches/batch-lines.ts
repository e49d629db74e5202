// The worker's side of batch lines (async jobs carrying `batch`): a line runs only while its batch is in progress and
// its result is not recorded yet; its answer or error is recorded into the batch (never into a job record), once.
// Called by src/worker/async-jobs.ts in place of the job record's steps; budgets are taken there as for any async job.
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { CompletionJob, CompletionResult, JobResult } from '../queue/jobs.ts';
import type { LeaseHolder } from '../admission/leases.ts';
import type { BatchStore } from './batch-store.ts';
import { lineForResult } from './line-output.ts';

type BatchLineJob = CompletionJob & { batch: NonNullable<CompletionJob['batch']> };

/** What AsyncJobs.acquire answers: budgets granted with their lease, or a wait. */
export type RunSlot = { granted: true; lease: LeaseHolder | undefined; tokens: number | undefined } | { granted: false; retryInMs: number };

export class BatchLines {
  private readonly store: BatchStore;
  private readonly logger: Logger;
  private readonly runLeaseMs: number;

  /**
   * `runLeaseMs`: how long a line's run lease lives without renewal. Longer than BullMQ's lock on purpose: when Redis
   * restarts, the lock can expire and the job be handed to a second worker while the first still runs the line; the
   * lease, still held, makes the second wait. A line whose worker died runs again once its lease expires.
   */
  constructor(store: BatchStore, logger: Logger, runLeaseMs: number) {
    this.store = store;
    this.logger = logger;
    this.runLeaseMs = runLeaseMs;
  }

  /**
   * Takes the line's run lease, then the tenant's budgets (`budgets`); the returned lease holds both and gives both
   * back once (the processor releases it on every path). Another run holding the line: wait until its lease may end.
   */
  async withRunLease(job: BatchLineJob, budgets: () => Promise<RunSlot>): Promise<RunSlot> {
    const { tenant } = job;
    const { id, line } = job.batch;
    const token = randomUUID();
    const claimed = await this.store.claimRun(tenant, id, line, token, this.runLeaseMs);
    if (!claimed.granted) return { granted: false, retryInMs: Math.min(claimed.retryInMs, this.runLeaseMs) };
    const release = () => this.store.updateRun(tenant, id, line, token, 'release').then(() => undefined, () => undefined);
    let slot: RunSlot;
    try {
      slot = await budgets();
    } catch (err) {
      await release();
      throw err;
    }
    if (!slot.granted) {
      await release();
      return slot;
    }
    let held = true;
    const timer = setInterval(() => {
      this.store.updateRun(tenant, id, line, token, this.runLeaseMs).then(
        (ok) => {
          if (!ok) held = false;
        },
        () => undefined,
      );
    }, Math.max(10, Math.floor(this.runLeaseMs / 3)));
    timer.unref();
    const budgetLease = slot.lease;
    let released: Promise<void> | undefined;
    const lease: LeaseHolder = {
      get held() {
        return held && (budgetLease?.held ?? true);
      },
      release() {
        clearInterval(timer);
        released ??= Promise.all([release(), budgetLease?.release()]).then(() => undefined);
        return released;
      },
    };
    return { granted: true, lease, tokens: slot.tokens };
  }

  /** Run only a line of a batch in progress whose result is not recorded yet (a re-run after a crash is not run). */
  async begin(job: BatchLineJob, jobId: string): Promise<{ run: true } | { run: false; returnValue: JobResult }> {
    const state = await this.store.lineState(job.tenant, job.batch.id, job.batch.line);
    if (!state.done && state.status === 'in_progress') return { run: true };
    this.logger.info({ jobId, batchId: job.batch.id, line: job.batch.line, status: state.status, done: state.done }, 'batch line not run');
    return { run: false, returnValue: notRun(state.done ? 'its result is recorded already' : `the batch is ${state.status ?? 'gone'}`) };
  }

  /** Records the answer (output file) or the error (error file); returns the job's small return value. */
  async finish(job: BatchLineJob, jobId: string, result: CompletionResult): Promise<JobResult> {
    // At the window's end the call is cut by the deadline's abort or by the head timeout the deadline capped,
    // whichever timer fires first: both mean the window ran out, not that the upstream failed.
    const cutByWindow = result.kind === 'error' && (result.error.code === 'deadline_exceeded' || result.error.code === 'upstream_timeout');
    if (cutByWindow && Date.now() >= job.deadline) {
      // Cut by the end of the completion window, not failed by the upstream: listed as `batch_expired` like the
      // lines that never started (the driver writes those lines when it expires the batch).
      await this.expire(job);
      return result;
    }
    const output = lineForResult(job.batch.id, job.batch.line, job.batch.customId, job.requestId, result);
    const recorded = await this.store.recordLine(job.tenant, job.batch.id, job.batch.line, output.kind, output.text, output.usage);
    if (recorded !== 'recorded') this.logger.warn({ jobId, batchId: job.batch.id, line: job.batch.line, recorded }, 'batch line result not recorded');
    if (result.kind !== 'body') return result;
    // The answer lives in the batch's results: the BullMQ job keeps a pointer, not a second copy.
    return { kind: 'stored', status: result.status, key: this.store.keys.tenantKeys(job.tenant).batchLines(job.batch.id).results, bytes: Buffer.byteLength(result.body) };
  }

  /** The line's job passed its deadline (the batch's window) before it ran: the driver writes its expiry line. */
  async expire(job: BatchLineJob): Promise<void> {
    await this.store.releaseLine(job.tenant, job.batch.id, job.batch.line);
  }

  /** BullMQ failed the line's job outside the processor (stalled too often): recorded as a failed line. */
  async failed(job: BatchLineJob, jobId: string): Promise<void> {
    await this.finish(job, jobId, {
      kind: 'error',
      status: 502,
      headers: {},
      error: { message: 'The request failed in the broker before an answer was produced.', type: 'api_error', param: null, code: 'job_failed' },
    });
  }

  /**
   * Whether an aborted run was meant (the batch is being cancelled, or its window has passed: the driver aborts its
   * lines). Otherwise the run lost its lock and must run again.
   */
  async wasCancelled(job: BatchLineJob): Promise<boolean> {
    if (Date.now() >= job.deadline) return true;
    const state = await this.store.lineState(job.tenant, job.batch.id, job.batch.line);
    return state.status !== 'in_progress';
  }
}

export function isBatchLine(job: CompletionJob): job is BatchLineJob {
  return job.batch !== undefined;
}

function notRun(reason: string): JobResult {
  return { kind: 'error', status: 409, headers: {}, error: { message: `The batch line was not run: ${reason}.`, type: 'invalid_request_error', param: null, code: 'batch_line_not_run' } };
}
