// Hands a batch's lines to the completions queue as async jobs of its tenant at `batch` priority, never more than
// `batches.maxInFlight` at once, reading the input file from the cursor; and finds lines in flight whose job is gone
// (a crash between two steps) to hand them again. A line's job id is deterministic: handing it twice adds it once.
import type { Logger } from 'pino';
import type { Config, TenantConfig } from '../config/schema.ts';
import type { AdmissionGate } from '../admission/gate.ts';
import type { CompletionQueue } from '../queue/completion-queue.ts';
import { JOB_SCHEMA_VERSION, type CompletionJob } from '../queue/jobs.ts';
import type { Router } from '../catalogue/catalogue.ts';
import type { FileStorage } from '../files/storage.ts';
import { storageKeyOf } from '../files/file-object.ts';
import { lineJobId, type BatchRecord } from './batch-record.ts';
import type { BatchStore } from './batch-store.ts';
import { readLines, type InputLine } from './input-lines.ts';
import { checkLine } from './validation.ts';
import { lineForError, lineForResult, lineRequestId, type LineOutput } from './line-output.ts';

export interface FeederDeps {
  config: Config;
  store: BatchStore;
  storage: FileStorage;
  queue: CompletionQueue;
  admission: AdmissionGate;
  router: Router;
  logger: Logger;
}

/** States in which a line's job will still run (or is running): it is left alone. */
const LIVE_STATES = new Set(['waiting', 'prioritized', 'delayed', 'active', 'waiting-children']);

export class LineFeeder {
  private readonly deps: FeederDeps;
  private readonly tenant: TenantConfig;
  private lines: AsyncGenerator<InputLine> | undefined;
  /** Lines read from the file but not handed over yet (the admission or the queue failed): they go first next time. */
  private carry: InputLine[] = [];
  private exhausted = false;

  constructor(deps: FeederDeps, tenant: TenantConfig) {
    this.deps = deps;
    this.tenant = tenant;
  }

  /** Hands up to `room` more lines to the queue (after the cursor). Returns how many went. */
  async feed(batch: BatchRecord, room: number): Promise<number> {
    if (room <= 0 || (this.exhausted && this.carry.length === 0)) return 0;
    const chunk = this.carry.splice(0, room);
    while (chunk.length < room && !this.exhausted) {
      const next = await this.reader(batch).next();
      if (next.done === true) this.exhausted = true;
      else chunk.push(next.value);
    }
    if (chunk.length === 0) return 0;
    try {
      const prepared = await Promise.all(chunk.map((line) => this.prepare(batch, line)));
      await this.deps.store.markInFlight(batch, chunk.map(({ line, offset }) => ({ line, offset })), chunk.at(-1)!.next);
      // In flight first, then queued: a crash in between leaves lines in flight without a job, which reconcile() finds.
      await Promise.all(prepared.map((line) => this.handOver(batch, line)));
    } catch (err) {
      // Redis unavailable (or admission shedding): the same lines go first on the next round.
      this.carry = [...chunk, ...this.carry];
      throw err;
    }
    return chunk.length;
  }

  /** Whether every line of the file has been handed over. */
  get done(): boolean {
    return this.exhausted && this.carry.length === 0;
  }

  /**
   * Lines in flight whose job is not live: handed again (its job vanished: removed, or lost before it was added), or
   * recorded as failed (BullMQ failed it and the record did not happen). Lines already recorded are dropped.
   */
  async reconcile(batch: BatchRecord): Promise<void> {
    const inFlight = await this.deps.store.inFlight(batch);
    if (inFlight.size === 0) return;
    const done = await this.deps.store.doneBitmap(batch);
    for (const [line, offset] of inFlight) {
      if (bitSet(done, line)) {
        await this.deps.store.releaseLine(batch.tenant, batch.id, line);
        continue;
      }
      const jobId = lineJobId(batch.id, line);
      const queue = this.deps.queue.queueOf(jobId);
      const state = await queue.getJobState(jobId);
      if (LIVE_STATES.has(state)) continue;
      const input = await this.readLineAt(batch, offset, line);
      if (input === undefined) continue;
      if (state === 'failed') {
        await this.recordBrokerFailure(batch, line, input);
        continue;
      }
      // Completed without a record (a run dropped as cancelled) or unknown (never added, or removed): hand it again.
      if (state === 'completed') await queue.remove(jobId).catch(() => undefined);
      this.deps.logger.warn({ batchId: batch.id, line, state }, 'batch line in flight without a live job: handed to the queue again');
      await this.handOver(batch, await this.prepare(batch, input));
    }
  }

  close(): void {
    void this.lines?.return(undefined);
    this.lines = undefined;
  }

  private reader(batch: BatchRecord): AsyncGenerator<InputLine> {
    if (this.lines === undefined) {
      const { storage } = this.deps;
      const start = batch.cursorOffset;
      const first = batch.cursorLine + 1;
      this.lines = (async function* () {
        yield* readLines(await storage.read(storageKeyOf(batch.inputFileId), { start }), start, first);
      })();
    }
    return this.lines;
  }

  private async readLineAt(batch: BatchRecord, offset: number, line: number): Promise<InputLine | undefined> {
    const stream = await this.deps.storage.read(storageKeyOf(batch.inputFileId), { start: offset });
    try {
      for await (const input of readLines(stream, offset, line)) return input;
    } finally {
      stream.destroy();
    }
    return undefined;
  }

  /**
   * The line's job and its priority (the tenant's async fair-share clock, in the `batch` class); or, for a line no
   * longer valid (validated before the batch started: only a config change since, a model removed, gets here), its
   * error line.
   */
  private async prepare(batch: BatchRecord, input: InputLine): Promise<PreparedLine> {
    const checked = checkLine(input.text, input.line, { endpoint: batch.endpoint, tenant: this.tenant, router: this.deps.router });
    if (!('customId' in checked)) {
      const customId = customIdOf(input.text);
      return { line: input.line, failed: lineForError(batch.id, input.line, customId, checked.code, checked.message) };
    }
    const request = checked;
    const now = Date.now();
    const admitted = await this.deps.admission.admit(this.tenant, batch.endpoint, request.body, {
      priorityClass: 'batch',
      maxQueueWaitMs: Math.max(1, batch.expiresAt - now),
      chargeAtRun: true,
    });
    const job: CompletionJob = {
      v: JOB_SCHEMA_VERSION,
      endpoint: batch.endpoint,
      requestId: lineRequestId(batch.id, input.line),
      tenant: batch.tenant,
      model: request.model,
      body: request.body,
      stream: false,
      replyTo: null,
      headers: batch.headers,
      enqueuedAt: now,
      // Past the completion window nobody waits for the line: a worker drops it without calling upstream.
      deadline: batch.expiresAt,
      chargeAtRun: true,
      batch: { id: batch.id, line: input.line, customId: request.customId },
    };
    return { line: input.line, jobId: lineJobId(batch.id, input.line), job, priority: admitted.priority };
  }

  private async handOver(batch: BatchRecord, prepared: PreparedLine): Promise<void> {
    if ('failed' in prepared) {
      await this.deps.store.recordLine(batch.tenant, batch.id, prepared.line, prepared.failed.kind, prepared.failed.text, prepared.failed.usage);
      return;
    }
    await this.deps.queue.enqueue(prepared.jobId, prepared.job, prepared.priority === undefined ? {} : { priority: prepared.priority });
  }

  private async recordBrokerFailure(batch: BatchRecord, line: number, input: InputLine): Promise<void> {
    const customId = customIdOf(input.text);
    const output = lineForResult(batch.id, line, customId, lineRequestId(batch.id, line), {
      kind: 'error',
      status: 502,
      headers: {},
      error: { message: 'The request failed in the broker before an answer was produced.', type: 'api_error', param: null, code: 'job_failed' },
    });
    await this.deps.store.recordLine(batch.tenant, batch.id, line, output.kind, output.text, output.usage);
  }
}

type PreparedLine = { line: number; jobId: string; job: CompletionJob; priority: number | undefined } | { line: number; failed: LineOutput };

/** The custom_id of a line that parses (validated lines all do). */
function customIdOf(text: string): string {
  try {
    const id = (JSON.parse(text) as { custom_id?: unknown }).custom_id;
    return typeof id === 'string' ? id : '';
  } catch {
    return '';
  }
}

/** Bit `n` of a Redis bitmap (bit 0 is the most significant bit of byte 0, as SETBIT numbers them). */
export function bitSet(bitmap: Buffer, n: number): boolean {
  const byte = bitmap[n >> 3];
  return byte !== undefined && (byte & (0x80 >> (n & 7))) !== 0;
}
