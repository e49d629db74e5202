// Idempotency-Key for synchronous requests: the first request claims the key for its job while it is in flight and
// its ingress keeps the answer a while (even when its client has left); a retry with the same key and body waits for
// that answer instead of calling upstream again. Async jobs claim their keys in the job store's create script.
// Never stores the key itself, only its SHA-256; every key written has a TTL.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Job } from 'bullmq';
import type { Cluster, Redis } from 'ioredis';
import { z } from 'zod';
import type { RedisKeys } from './keys.ts';
import type { CompletionJob, CompletionResult, JobResult } from './jobs.ts';
import type { LostReason, ReplySink } from './reply-bus.ts';
import type { ReplyMessage } from './replies.ts';

/** The longest Idempotency-Key accepted (Stripe's limit). */
export const MAX_IDEMPOTENCY_KEY_LENGTH = 255;

export function idempotencyKeyHash(key: string): string {
  return createHash('sha256').update(key).digest('hex');
}

/**
 * What "the same request" means: the same mode (sync or async), endpoint and body (and, for async jobs, webhook), as
 * sent. A client that re-serialises its body in another key order sends another request.
 */
export function requestHash(parts: { mode: 'sync' | 'async'; endpoint: string; body: unknown; webhook?: unknown }): string {
  return createHash('sha256').update(JSON.stringify([parts.mode, parts.endpoint, parts.body, parts.webhook ?? null])).digest('hex');
}

/**
 * A synchronous answer as kept for retries: the upstream's JSON body. A failed request keeps nothing: its retry runs
 * again, which is what a client retrying an error wants.
 */
const KeptAnswerSchema = z.strictObject({ status: z.number().int(), body: z.string() });
export type KeptAnswer = z.infer<typeof KeptAnswerSchema>;

/** `taken`: the claim that holds the key (`raw`, as stored: "<jobId> <request hash> <claimed at, epoch ms>"). */
export type SyncClaim = { kind: 'claimed'; raw: string } | { kind: 'taken'; jobId: string; bodyHash: string; claimedAt: number | undefined; raw: string };

/**
 * How long after its claim a request whose job is not in the queue yet counts as in flight: it is between its claim and
 * its enqueue (admission, the add's round trip). Past it, a missing job has ended (or never made it) and a retry runs.
 */
const ENQUEUE_GRACE_MS = 2_000;

function parseClaim(raw: string): SyncClaim {
  const [jobId = '', bodyHash = '', at] = raw.split(' ');
  // "ended": the request that claimed it has ended (a finished stream), whenever that was.
  const claimedAt = at === undefined || at === 'ended' ? undefined : Number(at);
  return { kind: 'taken', jobId, bodyHash, claimedAt: Number.isFinite(claimedAt) ? claimedAt : undefined, raw };
}

/** What a retry gets from the request it joined. */
export type JoinOutcome = { kind: 'answer'; answer: KeptAnswer } | { kind: 'gone' } | { kind: 'timeout' };

/** Finds a job in whichever queue shard holds it (the CompletionQueue). */
export interface JobLookup {
  getJob(jobId: string): Promise<Job<CompletionJob, JobResult> | undefined>;
}

interface ReclaimCommand {
  spillwayIdempotencyReclaim(claim: string, result: string, ...argv: string[]): Promise<string | null>;
}
let reclaimSource: string | undefined;
const reclaimDefined = new WeakSet<Redis | Cluster>();

function reclaimCommand(redis: Redis | Cluster): ReclaimCommand {
  if (!reclaimDefined.has(redis)) {
    // Read on first use, not at import: `npm run build` copies the .lua files next to the compiled module.
    reclaimSource ??= readFileSync(new URL('./idempotency-reclaim.lua', import.meta.url), 'utf8');
    redis.defineCommand('spillwayIdempotencyReclaim', { numberOfKeys: 2, lua: reclaimSource });
    reclaimDefined.add(redis);
  }
  return redis as unknown as ReclaimCommand;
}

/** How long a retry keeps looking for the answer after the job left Redis (the first ingress is writing it). */
const ANSWER_GRACE_MS = 1_000;

export class SyncIdempotency {
  private readonly redis: Redis | Cluster;
  private readonly keys: RedisKeys;
  private readonly jobs: JobLookup;

  constructor(redis: Redis | Cluster, keys: RedisKeys, jobs: JobLookup) {
    this.redis = redis;
    this.keys = keys;
    this.jobs = jobs;
  }

  /** Claims the key for `jobId` (one SET NX GET); taken: the earlier claim's job and request hash. */
  async claim(tenantId: string, keyHash: string, jobId: string, bodyHash: string, ttlMs: number): Promise<SyncClaim> {
    const key = this.keys.tenantKeys(tenantId).idempotency(keyHash);
    const raw = `${jobId} ${bodyHash} ${Date.now()}`;
    const previous = await this.redis.set(key, raw, 'PX', Math.max(1, Math.ceil(ttlMs)), 'NX', 'GET');
    return previous === null ? { kind: 'claimed', raw } : parseClaim(previous);
  }

  /**
   * Takes the key over from `ended`, a claim whose job is over and forgotten (the caller runs the request anew under
   * it), unless another retry took it first: then that retry's claim ('taken').
   */
  async reclaim(tenantId: string, keyHash: string, ended: { raw: string }, jobId: string, bodyHash: string, ttlMs: number): Promise<SyncClaim> {
    const tenant = this.keys.tenantKeys(tenantId);
    const raw = `${jobId} ${bodyHash} ${Date.now()}`;
    const current = await reclaimCommand(this.redis).spillwayIdempotencyReclaim(tenant.idempotency(keyHash), tenant.idempotencyResult(keyHash), ended.raw, raw, String(Math.max(1, Math.ceil(ttlMs))));
    return current === null ? { kind: 'claimed', raw } : parseClaim(current);
  }

  /**
   * Marks this request's claim ended (a stream that has finished: nothing to join, a retry runs anew at once), unless
   * the key has moved on meanwhile.
   */
  async ended(tenantId: string, keyHash: string, claim: { raw: string }, ttlMs: number): Promise<void> {
    const tenant = this.keys.tenantKeys(tenantId);
    const ended = claim.raw.replace(/ \d+$/, ' ended');
    await reclaimCommand(this.redis).spillwayIdempotencyReclaim(tenant.idempotency(keyHash), tenant.idempotencyResult(keyHash), claim.raw, ended, String(Math.max(1, Math.ceil(ttlMs))));
  }

  /** Keeps the first request's answer for its retries. */
  async keep(tenantId: string, keyHash: string, answer: KeptAnswer, ttlMs: number): Promise<void> {
    await this.redis.set(this.keys.tenantKeys(tenantId).idempotencyResult(keyHash), JSON.stringify(answer), 'PX', Math.max(1, Math.ceil(ttlMs)));
  }

  /** Whether the claim's job is still waiting or running, or about to be enqueued (claimed moments ago). */
  async inFlight(claim: { jobId: string; claimedAt: number | undefined }): Promise<boolean> {
    const job = await this.jobs.getJob(claim.jobId);
    if (job !== undefined) return job.finishedOn === undefined;
    return claim.claimedAt !== undefined && Date.now() - claim.claimedAt < ENQUEUE_GRACE_MS;
  }

  /**
   * Waits (polling, with backoff: a retry is rare, so no subscription) for the answer the first request's ingress
   * keeps, until `deadline`. `gone`: the job is not in Redis and no answer came (it was never enqueued, or its
   * answer expired): the caller runs the request anew.
   */
  async join(tenantId: string, keyHash: string, jobId: string, deadline: number, signal?: AbortSignal): Promise<JoinOutcome> {
    const resultKey = this.keys.tenantKeys(tenantId).idempotencyResult(keyHash);
    let delayMs = 50;
    let goneSince: number | undefined;
    for (;;) {
      const kept = await this.redis.get(resultKey);
      if (kept !== null) {
        const parsed = KeptAnswerSchema.safeParse(JSON.parse(kept));
        if (parsed.success) return { kind: 'answer', answer: parsed.data };
      }
      if ((await this.jobs.getJob(jobId)) === undefined) {
        goneSince ??= Date.now();
        if (Date.now() - goneSince >= ANSWER_GRACE_MS) return { kind: 'gone' };
      } else {
        goneSince = undefined;
      }
      const left = deadline - Date.now();
      if (left <= 0) return { kind: 'timeout' };
      try {
        await sleep(Math.min(delayMs, left), undefined, { ref: false, signal });
      } catch {
        return { kind: 'timeout' }; // the retrying client left
      }
      delayMs = Math.min(delayMs * 2, 500);
    }
  }
}

/**
 * Stands in for a request whose client left while its job runs on for a retry: catches the job's final message on
 * the reply bus and keeps it. Calls `release` once (answer kept, job lost, or deadline reached).
 */
export class AnswerKeeper implements ReplySink {
  private readonly keepAnswer: (answer: KeptAnswer) => void;
  private readonly release: () => void;
  private readonly timer: NodeJS.Timeout;
  private done = false;

  constructor(options: { deadline: number; keep: (answer: KeptAnswer) => void; release: () => void }) {
    this.keepAnswer = options.keep;
    this.release = options.release;
    this.timer = setTimeout(() => this.finish(), Math.max(0, options.deadline - Date.now()));
    this.timer.unref();
  }

  onMessage(message: ReplyMessage): void {
    if (message.k === 'done' && message.result.kind === 'body') this.keep({ status: message.result.status, body: message.result.body });
    else if (message.k === 'done' || message.k === 'error') this.finish();
  }

  onFinishedUnseen(result: CompletionResult | undefined): void {
    if (result?.kind === 'body') this.keep({ status: result.status, body: result.body });
    else this.finish();
  }

  onLost(_reason: LostReason): void {
    this.finish();
  }

  private keep(answer: KeptAnswer): void {
    if (this.done) return;
    this.keepAnswer(answer);
    this.finish();
  }

  private finish(): void {
    if (this.done) return;
    this.done = true;
    clearTimeout(this.timer);
    this.release();
  }
}
