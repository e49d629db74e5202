// Ingress side of the reply path: one SUBSCRIBE per instance, a map jobId → waiting request, and reconciliation
// after a reconnect (pub/sub drops messages meanwhile). Never subscribes per request, never blocks on a job.
import type { Redis } from 'ioredis';
import type { Job, Queue } from 'bullmq';
import type { Logger } from 'pino';
import { decodeReply, type ReplyMessage } from './replies.ts';
import { CompletionResultSchema, type CompletionJob, type CompletionResult } from './jobs.ts';

/** A request waiting for its job's replies. Receives each message for its job, in order of arrival. */
export interface ReplySink {
  onMessage(message: ReplyMessage): void;
  /**
   * Reconciliation found the job finished while messages may have been lost.
   * `result` is the job's return value (undefined when the job failed or vanished: `failedReason` says why).
   */
  onFinishedUnseen(result: CompletionResult | undefined, attempt: number, failedReason: string | undefined): void;
  /**
   * The broker cannot finish this request: its job is confirmed gone from Redis (`job_missing`), or the ingress is
   * shutting down past its grace period (`draining`). The sink answers its client and cancels the job.
   */
  onLost(reason: 'job_missing' | 'draining'): void;
}

export interface ReplyBusOptions {
  subscriber: Redis;
  channel: string;
  queue: Queue<CompletionJob, CompletionResult>;
  logger: Logger;
}

export class ReplyBus {
  private readonly pending = new Map<string, ReplySink>();
  private readonly subscriber: Redis;
  private readonly channel: string;
  private readonly queue: Queue<CompletionJob, CompletionResult>;
  private readonly logger: Logger;
  private wasReady = false;
  private closed = false;

  constructor(options: ReplyBusOptions) {
    this.subscriber = options.subscriber;
    this.channel = options.channel;
    this.queue = options.queue;
    this.logger = options.logger;
    this.subscriber.on('message', this.onRawMessage);
    this.subscriber.on('ready', this.onReady);
  }

  /** Subscribes; resolves once replies can be received. */
  async start(): Promise<void> {
    await this.subscriber.subscribe(this.channel);
    this.wasReady = true;
  }

  get size(): number {
    return this.pending.size;
  }

  /** Registers the sink before the job is enqueued, so that no reply can arrive unclaimed. */
  register(jobId: string, sink: ReplySink): void {
    this.pending.set(jobId, sink);
  }

  unregister(jobId: string): void {
    this.pending.delete(jobId);
  }

  /** Checks every pending job in Redis and finishes those that completed while messages could be lost. */
  async reconcile(): Promise<void> {
    const ids = [...this.pending.keys()];
    if (ids.length === 0) return;
    this.logger.warn({ pending: ids.length }, 'reconciling pending jobs after reply channel reconnect');
    const jobs = await Promise.all(ids.map((id) => this.queue.getJob(id).catch(() => undefined)));
    await Promise.all(ids.map((id, i) => this.reconcileOne(id, jobs[i])));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.subscriber.off('message', this.onRawMessage);
    this.subscriber.off('ready', this.onReady);
    await this.subscriber.unsubscribe(this.channel).catch(() => undefined);
  }

  private async reconcileOne(id: string, job: Job<CompletionJob, CompletionResult> | undefined): Promise<void> {
    const sink = this.pending.get(id);
    if (sink === undefined) return;
    if (job === undefined) {
      // Removed already: it finished and aged out, or was cancelled; nothing more will come for it.
      sink.onFinishedUnseen(undefined, 0, 'the job disappeared from the queue');
      return;
    }
    if (job.finishedOn === undefined) return; // still waiting or running: its replies will come
    if (job.failedReason) {
      sink.onFinishedUnseen(undefined, job.attemptsStarted, job.failedReason);
      return;
    }
    const result = CompletionResultSchema.safeParse(job.returnvalue);
    sink.onFinishedUnseen(result.success ? result.data : undefined, job.attemptsStarted, result.success ? undefined : 'malformed job result');
  }

  private readonly onRawMessage = (channel: string, raw: string): void => {
    if (channel !== this.channel) return;
    const message = decodeReply(raw);
    if (message === undefined) {
      this.logger.error({ channel }, 'dropped a malformed reply message');
      return;
    }
    this.pending.get(message.j)?.onMessage(message);
  };

  private readonly onReady = (): void => {
    // ioredis re-subscribes by itself; the first 'ready' is the initial connect, the later ones are reconnects.
    if (!this.wasReady || this.closed) return;
    this.reconcile().catch((err: unknown) => this.logger.error({ err }, 'reconciliation after reconnect failed'));
  };
}
