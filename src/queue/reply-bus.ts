// Ingress side of the reply path: one SUBSCRIBE (SSUBSCRIBE on Redis Cluster) per instance, a map jobId → waiting
// request, pointers to stored bodies resolved, and reconciliation after a reconnect (pub/sub drops messages meanwhile).
// Never subscribes per request, never blocks on a job, and never declares a job gone unless Redis confirms it is not there.
import { setTimeout as sleep } from 'node:timers/promises';
import { Cluster, type Redis } from 'ioredis';
import type { Job } from 'bullmq';
import type { Logger } from 'pino';
import { decodeReply, isStoredDone, type ReplyMessage, type StoredDoneMessage } from './replies.ts';
import { createPlainSubscription, createShardedSubscription, type ReplySubscription } from './reply-subscription.ts';
import { JobResultSchema, type CompletionJob, type CompletionResult, type JobResult } from './jobs.ts';

/** Why the broker gives up on a request: its job is confirmed gone from Redis, or the ingress is draining. */
export type LostReason = 'job_missing' | 'draining';

/** A request waiting for its job's replies. Receives each message for its job, in order of arrival. */
export interface ReplySink {
  /** Never a pointer to a stored body: the bus reads the body and delivers an ordinary `done`. */
  onMessage(message: ReplyMessage): void;
  /**
   * Reconciliation found the job finished while messages may have been lost.
   * `result` is the job's return value (undefined when the job failed: `failedReason` says why).
   */
  onFinishedUnseen(result: CompletionResult | undefined, attempt: number, failedReason: string | undefined): void;
  /**
   * The broker cannot finish this request: its job is confirmed gone from Redis (`job_missing`), or the ingress is
   * shutting down past its grace period (`draining`). The sink answers its client and cancels the job.
   */
  onLost(reason: LostReason): void;
}

/** Where reconciliation reads a job: a BullMQ Queue, or the sharded CompletionQueue (which finds the job's shard). */
export interface JobLookup {
  getJob(jobId: string): Promise<Job<CompletionJob, JobResult> | undefined>;
}

export interface ReplyBusOptions {
  /**
   * The reply channel's connection (patient: it reconnects and re-subscribes by itself). A Cluster (Redis Cluster
   * mode): the bus then subscribes with SSUBSCRIBE on a connection of its own to the channel slot's master.
   */
  subscriber: Redis | Cluster;
  /** A command connection, for job state and stored bodies (the ingress's fail-fast one, with a command timeout). */
  commands: Redis | Cluster;
  channel: string;
  /**
   * Sharded pub/sub (SSUBSCRIBE), for Redis Cluster: the channel lives on the master owning its slot, and a failover
   * anywhere in the cluster triggers a reconciliation. Implied by a Cluster `subscriber`; default: plain SUBSCRIBE.
   */
  sharded?: boolean;
  /**
   * The key under which a worker parks a final message nobody heard (keys.parkedReply): read for a job that is gone
   * when reconciling (completed jobs are removed at once). Absent: a job that is gone is lost.
   */
  parkedReply?: (jobId: string) => string;
  queue: JobLookup;
  logger: Logger;
  /**
   * How long after `register` a job whose enqueue has not been confirmed (`markEnqueued`) may still be absent from
   * Redis without being lost: its add may be in flight. At least the enqueue's own timeout.
   */
  enqueueWindowMs?: number;
  /** Called at each reconciliation pass that has pending requests to check (metrics). */
  onReconcile?: (pending: number) => void;
}

interface Entry {
  readonly sink: ReplySink;
  readonly registeredAt: number;
  enqueued: boolean;
}

/** Attempts at reading a stored body before its request is answered `job_missing`. */
const STORED_READ_ATTEMPTS = 4;

export class ReplyBus {
  private readonly pending = new Map<string, Entry>();
  private readonly subscription: ReplySubscription;
  private readonly commands: Redis | Cluster;
  private readonly parkedReply: ((jobId: string) => string) | undefined;
  private readonly queue: JobLookup;
  private readonly logger: Logger;
  private readonly enqueueWindowMs: number;
  private closed = false;
  /** Re-subscriptions refused in a row (logged once, retried with a growing pause). */
  private confirmFailures = 0;
  private reconcileWanted = false;
  private reconciling: Promise<void> | undefined;
  private lostLogged = false;
  private readonly onReconcile: ((pending: number) => void) | undefined;

  constructor(options: ReplyBusOptions) {
    this.commands = options.commands;
    this.parkedReply = options.parkedReply;
    this.queue = options.queue;
    this.logger = options.logger;
    this.enqueueWindowMs = options.enqueueWindowMs ?? 10_000;
    this.onReconcile = options.onReconcile;
    const handlers = { channel: options.channel, onMessage: this.onRawMessage, onLost: this.onLost, onBack: this.onBack };
    const { subscriber } = options;
    if (options.sharded && !(subscriber instanceof Cluster)) throw new Error('sharded reply channels need a Redis Cluster connection');
    this.subscription = subscriber instanceof Cluster ? createShardedSubscription({ ...handlers, subscriber }) : createPlainSubscription({ ...handlers, subscriber });
  }

  /** Subscribes; resolves once replies can be received. */
  async start(): Promise<void> {
    await this.subscription.confirm();
  }

  get size(): number {
    return this.pending.size;
  }

  /** Registers the sink before the job is enqueued, so that no reply can arrive unclaimed. */
  register(jobId: string, sink: ReplySink): void {
    this.pending.set(jobId, { sink, registeredAt: Date.now(), enqueued: false });
  }

  /** The job is in Redis: from now on its absence there means it is lost. */
  markEnqueued(jobId: string): void {
    const entry = this.pending.get(jobId);
    if (entry !== undefined) entry.enqueued = true;
  }

  unregister(jobId: string): void {
    this.pending.delete(jobId);
  }

  /** Gives up on every waiting request (the ingress's drain is over): each sink answers its client. */
  abandonAll(reason: LostReason): number {
    const entries = [...this.pending.values()];
    for (const { sink } of entries) {
      try {
        sink.onLost(reason);
      } catch (err) {
        this.logger.error({ err }, 'a waiting request failed to end');
      }
    }
    return entries.length;
  }

  /**
   * Checks every pending job in Redis and finishes those that completed while messages could be lost. Runs once
   * both connections are ready and the subscription is confirmed; a job that cannot be read is tried again with
   * backoff (the request's own deadline bounds the wait); only a job Redis says is absent is reported lost.
   * Calls made while a reconciliation runs are folded into one more pass after it.
   */
  reconcile(): Promise<void> {
    this.reconcileWanted = true;
    this.reconciling ??= this.runReconciliations();
    return this.reconciling;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.subscription.close();
  }

  private async runReconciliations(): Promise<void> {
    try {
      while (this.reconcileWanted && !this.closed) {
        this.reconcileWanted = false;
        await this.reconcilePass();
      }
    } finally {
      this.reconciling = undefined;
    }
  }

  private async reconcilePass(): Promise<void> {
    if (!(await this.connected())) return;
    try {
      // ioredis re-subscribes on 'ready' without waiting for the answer. Our own SUBSCRIBE is answered after it:
      // once it is, every reply published from now on reaches us, and the state read below covers the rest.
      await this.subscription.confirm();
    } catch (err) {
      // A sharded subscription waits for the cluster to elect a master for its slot: seconds. Logged once per outage.
      if (this.confirmFailures++ === 0) this.logger.warn({ err: errorMessage(err) }, 'reply channel subscription not confirmed; reconciling again');
      this.reconcileWanted = true;
      await sleep(Math.min(200 * this.confirmFailures, 2_000), undefined, { ref: false });
      return;
    }
    this.confirmFailures = 0;
    this.lostLogged = false;
    let ids = [...this.pending.keys()];
    if (ids.length === 0) return;
    this.logger.warn({ pending: ids.length }, 'reconciling pending jobs after reply channel reconnect');
    this.onReconcile?.(ids.length);
    let delayMs = 100;
    while (ids.length > 0 && !this.closed) {
      const again: string[] = [];
      let lastError: unknown;
      await Promise.all(
        ids.map(async (id) => {
          try {
            if (!(await this.reconcileOne(id))) again.push(id);
          } catch (err) {
            lastError = err;
            again.push(id);
          }
        }),
      );
      ids = again.filter((id) => this.pending.has(id));
      if (ids.length === 0) return;
      if (lastError !== undefined) {
        this.logger.warn({ err: errorMessage(lastError), left: ids.length, retryInMs: delayMs }, 'reconciliation could not read some jobs; retrying');
      }
      await sleep(delayMs, undefined, { ref: false });
      delayMs = Math.min(delayMs * 2, 2_000);
      if (!(await this.connected())) return;
    }
  }

  /** Settles one pending job from its state in Redis. False: look again later. Throws when Redis did not answer. */
  private async reconcileOne(id: string): Promise<boolean> {
    const job = await this.queue.getJob(id);
    const entry = this.pending.get(id);
    if (entry === undefined) return true;
    if (job === undefined) {
      // Registered just now, its add possibly still in flight: absence proves nothing yet.
      if (!entry.enqueued && Date.now() - entry.registeredAt < this.enqueueWindowMs) return false;
      // Completed jobs are removed at once: the worker parked the final message its PUBLISH could not deliver.
      const parked = this.parkedReply === undefined ? null : await this.commands.get(this.parkedReply(id));
      if (parked !== null) {
        this.forget(this.parkedReply!(id));
        this.onRawMessage(parked);
        return true;
      }
      this.pending.get(id)?.sink.onLost('job_missing');
      return true;
    }
    if (job.finishedOn === undefined) return true; // still waiting or running: its replies will come
    if (job.failedReason) {
      entry.sink.onFinishedUnseen(undefined, job.attemptsStarted, job.failedReason);
      return true;
    }
    const parsed = JobResultSchema.safeParse(job.returnvalue);
    if (!parsed.success) {
      entry.sink.onFinishedUnseen(undefined, job.attemptsStarted, 'malformed job result');
      return true;
    }
    const result = parsed.data;
    if (result.kind !== 'stored') {
      entry.sink.onFinishedUnseen(result, job.attemptsStarted, undefined);
      return true;
    }
    const body = await this.commands.get(result.key);
    const current = this.pending.get(id);
    if (current === undefined) return true;
    if (body === null) {
      current.sink.onLost('job_missing');
      return true;
    }
    current.sink.onFinishedUnseen({ kind: 'body', status: result.status, body }, job.attemptsStarted, undefined);
    this.forget(result.key);
    return true;
  }

  /** Reads a stored body and hands the sink an ordinary `done`; a body that cannot be read loses the request. */
  private async deliverStored(message: StoredDoneMessage): Promise<void> {
    const { key, status } = message.result;
    let body: string | null = null;
    for (let attempt = 1; ; attempt++) {
      if (!this.pending.has(message.j) || this.closed) return;
      try {
        body = await this.commands.get(key);
        break;
      } catch (err) {
        if (attempt >= STORED_READ_ATTEMPTS) {
          this.logger.error({ err: errorMessage(err), jobId: message.j, key }, 'could not read a stored reply body');
          break;
        }
        await sleep(100 * 2 ** attempt, undefined, { ref: false });
      }
    }
    const entry = this.pending.get(message.j);
    if (entry === undefined) return;
    if (body === null) {
      entry.sink.onLost('job_missing');
      return;
    }
    entry.sink.onMessage({ k: 'done', j: message.j, a: message.a, result: { kind: 'body', status, body } });
    this.forget(key);
  }

  /** A delivered body is nobody's any more: free its memory now rather than at its TTL. */
  private forget(key: string): void {
    this.commands.unlink(key).catch(() => undefined);
  }

  private async connected(): Promise<boolean> {
    while (!this.closed) {
      if (this.subscription.usable && this.commands.status === 'ready') return true;
      await sleep(50, undefined, { ref: false });
    }
    return false;
  }

  private readonly onRawMessage = (raw: string): void => {
    const message = decodeReply(raw);
    if (message === undefined) {
      this.logger.error('dropped a malformed reply message');
      return;
    }
    if (isStoredDone(message)) {
      this.deliverStored(message).catch((err: unknown) => this.logger.error({ err, jobId: message.j }, 'delivering a stored reply failed'));
      return;
    }
    // Not the stored form (checked above): the wire message is what sinks receive.
    this.pending.get(message.j)?.sink.onMessage(message as ReplyMessage);
  };

  private readonly onLost = (): void => {
    if (this.closed || this.lostLogged) return;
    this.lostLogged = true; // once per outage (until a confirmed re-subscription), not once per reconnect attempt
    this.logger.warn('reply channel connection lost; reconciling once it is back');
  };

  private readonly onBack = (): void => {
    if (this.closed) return;
    const run = () => {
      if (!this.closed) this.reconcile().catch((err: unknown) => this.logger.error({ err }, 'reconciliation after reconnect failed'));
    };
    run();
    // A reply published while the channel moved (a master failing over on Redis Cluster) can be lost after the first
    // pass found its job still running: look again a little later, when such jobs have finished.
    for (const delayMs of FOLLOW_UP_RECONCILE_MS) setTimeout(run, delayMs).unref();
  };
}

/** Passes after a reconnect's first reconciliation, ms after it. */
const FOLLOW_UP_RECONCILE_MS = [1_000, 3_000];

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
