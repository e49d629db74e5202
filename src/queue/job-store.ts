// Async job records in Redis: status, timestamps, attempts, result or error, usage, webhook state and delivery log,
// listed per tenant with cursor pagination. Every key sits in the tenant's own hash tag and carries a TTL.
import { readFileSync } from 'node:fs';
import type { Cluster, Redis } from 'ioredis';
import { QUEUE_NAMES, type RedisKeys } from './keys.ts';
import { toRecord, type DeliveryAttempt, type JobOutcome, type JobRecord, type JobStatus, type NewJob, type TerminalStatus, type WebhookState } from './job-record.ts';

// The record's contract, for callers of the store (src/responses reads it too).
export {
  isTerminal,
  JobStatusSchema,
  JobWebhookSchema,
  TERMINAL_STATUSES,
  WebhookStateSchema,
  type DeliveryAttempt,
  type JobError,
  type JobOutcome,
  type JobRecord,
  type JobStatus,
  type JobWebhook,
  type NewJob,
  type TerminalStatus,
  type WebhookState,
} from './job-record.ts';

export interface JobStoreOptions {
  /** How long a record stays once finished (and, at most, after the job could still run). */
  retentionSeconds: number;
  /** Delivery attempts kept per job (the oldest go first). */
  maxDeliveryLog?: number;
}

type CreateOutcome = { created: true } | { created: false; jobId: string; bodyHash: string };
/** `hasWebhook`: the record names a webhook (a final status then makes its event due: webhook state `pending`). */
export type UpdateOutcome = { changed: true; previous: JobStatus; hasWebhook: boolean } | { changed: false; current: JobStatus | undefined; hasWebhook: boolean };

interface StoreCommands {
  spillwayJobCreate(record: string, index: string, claim: string, ...argv: string[]): Promise<[number, string]>;
  spillwayJobUpdate(record: string, ...argv: string[]): Promise<[number, string, number]>;
  spillwayJobDelivery(record: string, log: string, ...argv: string[]): Promise<number>;
}

const SCRIPTS: ReadonlyArray<[keyof StoreCommands, string, number]> = [
  ['spillwayJobCreate', 'job-create.lua', 3],
  ['spillwayJobUpdate', 'job-update.lua', 1],
  ['spillwayJobDelivery', 'job-delivery.lua', 2],
];
let sources: Map<string, string> | undefined;
const defined = new WeakSet<Redis | Cluster>();

function commands(redis: Redis | Cluster): StoreCommands {
  if (!defined.has(redis)) {
    // Read on first use, not at import: `npm run build` copies the .lua files next to the compiled module.
    sources ??= new Map(SCRIPTS.map(([, file]) => [file, readFileSync(new URL(`./${file}`, import.meta.url), 'utf8')]));
    for (const [name, file, numberOfKeys] of SCRIPTS) redis.defineCommand(name, { numberOfKeys, lua: sources.get(file)! });
    defined.add(redis);
  }
  return redis as unknown as StoreCommands;
}

export class JobStore {
  private readonly redis: Redis | Cluster;
  private readonly keys: RedisKeys;
  readonly retentionMs: number;
  private readonly maxDeliveryLog: number;

  constructor(redis: Redis | Cluster, keys: RedisKeys, options: JobStoreOptions) {
    this.redis = redis;
    this.keys = keys;
    this.retentionMs = options.retentionSeconds * 1000;
    this.maxDeliveryLog = options.maxDeliveryLog ?? 100;
  }

  /**
   * Creates the record and claims the Idempotency-Key (its hash) in one script. When the key was claimed before,
   * nothing is written and the earlier job's id and request hash come back, unless that claim is `takeOver` (a claim
   * whose job's record has expired): then the key is claimed anew.
   */
  async create(job: NewJob, idempotencyKeyHash?: string, takeOver?: { jobId: string; bodyHash: string }): Promise<CreateOutcome> {
    const tenant = this.keys.tenantKeys(job.tenant);
    // Alive while it may still run, then for the retention: a job that never ran expires with its deadline.
    const ttlMs = Math.max(1, job.deadline - job.createdAt) + this.retentionMs;
    const fields: string[] = [
      'id', job.id, 'tenant', job.tenant, 'status', 'queued', 'endpoint', job.endpoint, 'model', job.model,
      'request_id', job.requestId, 'body_hash', job.bodyHash, 'created_at', String(job.createdAt),
      'deadline', String(job.deadline), 'attempts', '0',
    ];
    if (job.webhook !== undefined) fields.push('webhook', JSON.stringify(job.webhook));
    const claim = idempotencyKeyHash === undefined ? '' : `${job.id} ${job.bodyHash}`;
    const [code, value] = await commands(this.redis).spillwayJobCreate(
      tenant.job(job.id),
      tenant.jobs,
      tenant.idempotency(idempotencyKeyHash ?? 'none'),
      job.id,
      String(job.createdAt),
      String(ttlMs),
      // An entry older than the longest any record lives is surely gone: a week of slack over this job's life.
      String(ttlMs + 7 * 86_400_000),
      claim,
      takeOver === undefined ? '' : `${takeOver.jobId} ${takeOver.bodyHash}`,
      ...fields,
    );
    if (code === 0) return { created: true };
    const [jobId = '', bodyHash = ''] = value.split(' ');
    return { created: false, jobId, bodyHash };
  }

  /** Undoes a creation whose enqueue failed: the record, its index entry and its Idempotency-Key claim. */
  async discard(tenantId: string, jobId: string, idempotencyKeyHash?: string): Promise<void> {
    const tenant = this.keys.tenantKeys(tenantId);
    const multi = this.redis.multi().unlink(tenant.job(jobId)).zrem(tenant.jobs, jobId);
    if (idempotencyKeyHash !== undefined) multi.unlink(tenant.idempotency(idempotencyKeyHash));
    await multi.exec();
  }

  async get(tenantId: string, jobId: string): Promise<JobRecord | undefined> {
    const raw = await this.redis.hgetall(this.keys.tenantKeys(tenantId).job(jobId));
    return toRecord(raw);
  }

  /** A worker takes the job: queued (or running, after a crash) → running, attempts + 1. */
  markRunning(tenantId: string, jobId: string, now = Date.now()): Promise<UpdateOutcome> {
    return this.update(tenantId, jobId, 'running', ['queued', 'running'], 0, { countAttempt: true }, { started_at: String(now) });
  }

  /**
   * Moves an unfinished job to its final status: exactly one caller wins (the worker's result, a cancel, the expiry);
   * the record then lives for the retention.
   */
  finish(tenantId: string, jobId: string, status: TerminalStatus, outcome: JobOutcome = {}, now = Date.now()): Promise<UpdateOutcome> {
    const fields: Record<string, string> = { finished_at: String(now) };
    if (outcome.statusCode !== undefined) fields.status_code = String(outcome.statusCode);
    if (outcome.result !== undefined) fields.result = outcome.result;
    if (outcome.error !== undefined) fields.error = JSON.stringify(outcome.error);
    if (outcome.usage !== undefined) fields.usage = JSON.stringify(outcome.usage);
    return this.update(tenantId, jobId, status, ['queued', 'running'], this.retentionMs, { webhookDue: true }, fields);
  }

  /** Records where the job's webhook stands (never creates a record that has expired). */
  async setWebhookState(tenantId: string, jobId: string, state: WebhookState, attempts?: number): Promise<void> {
    const fields: Record<string, string> = { webhook_state: state };
    if (attempts !== undefined) fields.webhook_attempts = String(attempts);
    await this.update(tenantId, jobId, '', '*', 0, {}, fields);
  }

  /** Appends a delivery attempt to the job's log and sets its webhook state, in one script (false: no record). */
  async recordDelivery(tenantId: string, jobId: string, attempt: DeliveryAttempt, state: WebhookState): Promise<boolean> {
    const tenant = this.keys.tenantKeys(tenantId);
    const recorded = await commands(this.redis).spillwayJobDelivery(
      tenant.job(jobId),
      tenant.jobDeliveries(jobId),
      JSON.stringify(attempt),
      String(this.maxDeliveryLog),
      String(this.retentionMs),
      state,
      String(attempt.attempt),
    );
    return recorded === 1;
  }

  async deliveries(tenantId: string, jobId: string): Promise<DeliveryAttempt[]> {
    const raw = await this.redis.lrange(this.keys.tenantKeys(tenantId).jobDeliveries(jobId), 0, -1);
    return raw.map((line) => JSON.parse(line) as DeliveryAttempt);
  }

  /**
   * A tenant's jobs, newest first, after the cursor `after` (a job id of an earlier page). Records that expired are
   * skipped, not dropped from the index: an expired job can still be the cursor of a page a client holds (the index
   * sheds entries past its horizon as jobs are created). With a status filter, at most `scanLimit` index entries are
   * read per call: past that, `hasMore` is true and the next page starts after the last job returned.
   */
  async list(tenantId: string, options: { limit: number; after?: string; status?: JobStatus; scanLimit?: number }): Promise<{ records: JobRecord[]; hasMore: boolean }> {
    const tenant = this.keys.tenantKeys(tenantId);
    let start = 0;
    if (options.after !== undefined) {
      const rank = await this.redis.zrevrank(tenant.jobs, options.after);
      if (rank === null) return { records: [], hasMore: false };
      start = rank + 1;
    }
    const scanLimit = options.scanLimit ?? 5_000;
    const records: JobRecord[] = [];
    for (let scanned = 0; scanned < scanLimit; ) {
      const batch = Math.min(Math.max(options.limit + 1, 50), scanLimit - scanned);
      const ids = await this.redis.zrevrange(tenant.jobs, start, start + batch - 1);
      const pipeline = this.redis.pipeline();
      for (const id of ids) pipeline.hgetall(tenant.job(id));
      const replies = ids.length === 0 ? [] : ((await pipeline.exec()) ?? []);
      for (let i = 0; i < ids.length; i++) {
        const record = toRecord(replies[i]?.[1]);
        if (record === undefined || (options.status !== undefined && record.status !== options.status)) continue;
        if (records.length === options.limit) return { records, hasMore: true };
        records.push(record);
      }
      if (ids.length < batch) return { records, hasMore: false };
      scanned += ids.length;
      start += ids.length;
    }
    // The scan limit: a next page needs a cursor, the last job returned; with none, say there is no more.
    return { records, hasMore: records.length > 0 };
  }

  /**
   * A waiting job's place in line (1: next), from BullMQ's prioritized set; undefined when it is not waiting there
   * (delayed, running, or already gone). Async jobs always carry a priority, so they never sit in the plain wait list.
   */
  async queuePosition(jobId: string): Promise<number | undefined> {
    const depth = this.keys.queueDepthKeys(QUEUE_NAMES.completions, this.keys.shardOf(jobId).index);
    const replies = (await this.redis.multi().zrank(depth.prioritized, jobId).llen(depth.wait).exec()) ?? [];
    const [rank, waiting] = replies.map(([err, value]) => (err || value === null ? undefined : Number(value)));
    // Workers serve the whole plain wait list before any prioritized job.
    return rank === undefined ? undefined : (waiting ?? 0) + rank + 1;
  }

  private async update(
    tenantId: string,
    jobId: string,
    status: JobStatus | '',
    from: readonly JobStatus[] | '*',
    ttlMs: number,
    flags: { countAttempt?: boolean; webhookDue?: boolean },
    fields: Record<string, string>,
  ): Promise<UpdateOutcome> {
    const [code, value, webhook] = await commands(this.redis).spillwayJobUpdate(
      this.keys.tenantKeys(tenantId).job(jobId),
      status,
      from === '*' ? '*' : from.join(' '),
      String(Math.max(0, Math.ceil(ttlMs))),
      flags.countAttempt === true ? '1' : '0',
      flags.webhookDue === true ? '1' : '0',
      ...Object.entries(fields).flat(),
    );
    const hasWebhook = webhook === 1;
    if (code === 1) return { changed: true, previous: value as JobStatus, hasWebhook };
    return { changed: false, current: code === 0 ? (value as JobStatus) : undefined, hasWebhook };
  }
}
