// Drives one batch from start to end, resumable at every step after a crash: validate the input file, feed its lines
// to the queue as earlier ones finish, flush results into segments, then wind down (all done, cancelled, or the
// window passed) and assemble the output and error files. Everything it needs to resume lives in Redis.
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import type { TenantConfig } from '../config/schema.ts';
import type { WebhookQueue } from '../webhooks/webhook-queue.ts';
import { FileMissingError } from '../files/storage.ts';
import type { FileRecords } from '../files/file-records.ts';
import { storageKeyOf } from '../files/file-object.ts';
import { isFinal, lineJobId, type BatchRecord, type FinalStatus } from './batch-record.ts';
import { LineFeeder, type FeederDeps } from './feeder.ts';
import { OutputFiles } from './output-files.ts';
import { validateInput } from './validation.ts';

export interface DriverDeps extends FeederDeps {
  webhooks: WebhookQueue;
  files: FileRecords;
}

/** How often a driver checks its lines in flight for jobs that vanished (a crash between two steps, a lost job). */
const RECONCILE_MS = 10_000;
/** Longest wait, when winding down, for lines that are running to stop or finish. */
const WIND_DOWN_MS = 60_000;

/** Why a drive stopped without finishing the batch: the process is shutting down (the job is handed back). */
export class DriveInterrupted extends Error {}

export class BatchDriver {
  private readonly deps: DriverDeps;
  private readonly signal: AbortSignal;
  private readonly log: Logger;
  private readonly output: OutputFiles;

  constructor(deps: DriverDeps, signal: AbortSignal, log: Logger) {
    this.deps = deps;
    this.signal = signal;
    this.log = log;
    this.output = new OutputFiles({ store: deps.store, storage: deps.storage, files: deps.files, outputTtlMs: deps.config.batches.outputTtlSeconds * 1000 });
  }

  /** Runs the batch to its final status (or until the signal aborts: DriveInterrupted). */
  async drive(tenantId: string, batchId: string): Promise<FinalStatus | 'gone'> {
    let batch = await this.deps.store.get(tenantId, batchId);
    if (batch === undefined) return 'gone';
    const tenant = this.deps.config.tenants.find((t) => t.id === tenantId);
    if (tenant === undefined) {
      // The tenant was removed from the config: nothing of its may run any more.
      return this.end(batch, 'failed', { errors: JSON.stringify([{ code: 'tenant_removed', message: 'The batch\'s tenant is no longer configured.', param: null, line: null }]) });
    }
    if (isFinal(batch.status)) {
      await this.afterEnd(batch);
      return batch.status;
    }
    try {
      if (batch.status === 'validating') {
        const started = await this.validate(batch, tenant);
        if (started !== undefined) return started;
        batch = (await this.deps.store.get(tenantId, batchId)) ?? batch;
      }
      return await this.run(batch, tenant);
    } catch (err) {
      // The input file is pinned while the batch runs: only storage lost underneath (a wiped volume) gets here.
      if (!(err instanceof FileMissingError)) throw err;
      this.log.error({ err: err.message }, 'batch input file missing from the storage');
      const missing = [{ code: 'input_file_missing', message: 'The input file could not be read from the file storage.', param: 'input_file_id', line: null }];
      return this.end(batch, 'failed', { errors: JSON.stringify(missing) });
    }
  }

  /** validating → in_progress, or → failed with the problems and their line numbers. */
  private async validate(batch: BatchRecord, tenant: TenantConfig): Promise<FinalStatus | undefined> {
    const { storage, router, config } = this.deps;
    const input = await storage.read(storageKeyOf(batch.inputFileId));
    const outcome = await validateInput(input, { endpoint: batch.endpoint, tenant, router }, config.batches.maxLines);
    if (!outcome.valid) {
      this.log.info({ errors: outcome.errors.length }, 'batch failed validation');
      return this.end(batch, 'failed', { errors: JSON.stringify(outcome.errors) });
    }
    const fields: Record<string, string> = { total: String(outcome.total), in_progress_at: String(Date.now()) };
    if (outcome.model !== undefined) fields.model = outcome.model;
    // Refused when a cancel came first: the loop then winds the batch down.
    await this.deps.store.move(batch, 'in_progress', ['validating'], fields);
    return undefined;
  }

  private async run(initial: BatchRecord, tenant: TenantConfig): Promise<FinalStatus | 'gone'> {
    const { store, config } = this.deps;
    const feeder = new LineFeeder(this.deps, tenant);
    let reconcileAt = 0;
    try {
      for (let batch: BatchRecord | undefined = initial; ; batch = await store.get(initial.tenant, initial.id)) {
        if (batch === undefined) return 'gone';
        if (batch.final !== undefined || batch.status === 'cancelling' || batch.status === 'finalizing' || Date.now() >= batch.expiresAt) {
          return await this.windDown(batch, batch.final ?? (batch.status === 'cancelling' ? 'cancelled' : Date.now() >= batch.expiresAt ? 'expired' : 'completed'));
        }
        if (isFinal(batch.status)) return batch.status;
        if (Date.now() >= reconcileAt) {
          await feeder.reconcile(batch);
          reconcileAt = Date.now() + RECONCILE_MS;
        }
        const inFlight = await store.inFlightCount(batch);
        try {
          await feeder.feed(batch, config.batches.maxInFlight - inFlight);
        } catch (err) {
          if (err instanceof FileMissingError) throw err;
          this.log.warn({ err }, 'feeding batch lines failed; trying again');
        }
        await this.output.flush(batch);
        if (batch.completed + batch.failed >= batch.total && feeder.done && inFlight === 0) {
          const moved = await store.move(batch, 'finalizing', ['in_progress'], { finalizing_at: String(Date.now()), final: 'completed' });
          if (moved.changed) continue;
        }
        await this.pause(config.batches.pollMs);
      }
    } finally {
      feeder.close();
    }
  }

  /**
   * Stops feeding; lines still queued are removed and running ones aborted (cancel, expiry), or all have finished
   * (completed); waits until none is left running, then writes the files and ends the batch.
   */
  private async windDown(batch: BatchRecord, final: FinalStatus): Promise<FinalStatus> {
    const { store, queue } = this.deps;
    if (batch.final !== final) await store.move(batch, '', '*', { final });
    if (final !== 'completed') {
      const deadline = Date.now() + WIND_DOWN_MS;
      const cancelled = new Set<string>();
      for (;;) {
        const inFlight = await store.inFlight(batch);
        let live = 0;
        for (const line of inFlight.keys()) {
          const jobId = lineJobId(batch.id, line);
          const state = await queue.queueOf(jobId).getJobState(jobId);
          if (state === 'completed' || state === 'failed' || state === 'unknown') {
            // Removed, or dropped as cancelled by its worker: no result will come.
            await store.releaseLine(batch.tenant, batch.id, line);
          } else {
            live++;
            // Once: a queued job is removed, a running one is told on the cancel channel and aborts its call.
            if (!cancelled.has(jobId)) await queue.cancel(jobId);
            cancelled.add(jobId);
          }
        }
        if (live === 0 || Date.now() >= deadline) break;
        await this.pause(Math.max(200, this.deps.config.batches.pollMs));
      }
    }
    const current = (await store.get(batch.tenant, batch.id)) ?? batch;
    while (await this.output.flush(current, true));
    return this.finalize(current, final);
  }

  private async finalize(batch: BatchRecord, final: FinalStatus): Promise<FinalStatus> {
    const segments = await this.deps.store.segments(batch);
    let failed = batch.failed;
    if (final === 'expired') {
      const expired = await this.output.expiredLines(batch);
      if (expired.segment !== undefined) segments.push(expired.segment);
      failed += expired.lines;
    }
    const files = await this.output.assemble(batch, segments);
    const fields: Record<string, string> = { failed: String(failed) };
    if (files.outputFileId !== undefined) fields.output_file_id = files.outputFileId;
    if (files.errorFileId !== undefined) fields.error_file_id = files.errorFileId;
    return this.end(batch, final, fields);
  }

  /** The final move: the one that wins sends the event; then the line state and segments go. */
  private async end(batch: BatchRecord, status: FinalStatus, fields: Record<string, string>): Promise<FinalStatus> {
    const moved = await this.deps.store.finish(batch, status, fields);
    if (moved.changed && moved.hasWebhook) await this.deps.webhooks.enqueueBatch(batch.tenant, batch.id, status);
    this.log.info({ status, changed: moved.changed }, 'batch ended');
    const ended = await this.deps.store.get(batch.tenant, batch.id);
    if (ended !== undefined) await this.afterEnd(ended);
    return status;
  }

  /** Idempotent cleanup of an ended batch (also run when a driver resumes one that ended before its cleanup). */
  private async afterEnd(batch: BatchRecord): Promise<void> {
    if (!isFinal(batch.status)) return;
    // The event was due but the process died before enqueuing it: its id makes a second enqueue a no-op.
    if (batch.webhook !== undefined && batch.webhookState === 'pending') await this.deps.webhooks.enqueueBatch(batch.tenant, batch.id, batch.status);
    await this.output.discardSegments(await this.deps.store.segments(batch));
    await this.deps.storage.delete(`batches/${batch.id}/expired.jsonl`);
    await this.deps.store.dropLineState(batch);
  }

  private async pause(ms: number): Promise<void> {
    try {
      await sleep(ms, undefined, { signal: this.signal });
    } catch {
      throw new DriveInterrupted('the worker is shutting down');
    }
    if (this.signal.aborted) throw new DriveInterrupted('the worker is shutting down');
  }
}

