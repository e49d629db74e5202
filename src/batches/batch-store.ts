// Batches in Redis, per tenant: creation (pinning the input file), status moves that exactly one party wins, the lines
// in flight, finished lines' results and the flushed segments. Every key in the tenant's slot, every key with a TTL.
import { readFileSync } from 'node:fs';
import type { Cluster, Redis } from 'ioredis';
import type { RedisKeys } from '../queue/keys.ts';
import { toBatchRecord, type BatchRecord, type BatchStatus, type FinalStatus } from './batch-record.ts';

/** An index entry older than this belongs to a batch that has expired for sure. */
const INDEX_HORIZON_MS = 62 * 86_400_000;

export type MoveOutcome = { changed: true; previous: BatchStatus; hasWebhook: boolean } | { changed: false; current: BatchStatus | undefined; hasWebhook: boolean };

/** One flushed piece of the output or error file. */
export interface Segment {
  kind: 'output' | 'error';
  key: string;
  bytes: number;
  lines: number;
}

interface BatchCommands {
  spillwayBatchCreate(batch: string, index: string, file: string, ...argv: string[]): Promise<number>;
  spillwayBatchUpdate(batch: string, file: string, ...argv: string[]): Promise<[number, string, number]>;
  spillwayBatchLine(batch: string, done: string, inFlight: string, results: string, ...argv: string[]): Promise<number>;
  spillwayBatchSegment(batch: string, results: string, segments: string, ...argv: string[]): Promise<number>;
  spillwayBatchRun(lease: string, ...argv: string[]): Promise<number>;
}

const SCRIPTS: ReadonlyArray<[keyof BatchCommands, string, number]> = [
  ['spillwayBatchCreate', 'batch-create.lua', 3],
  ['spillwayBatchUpdate', 'batch-update.lua', 2],
  ['spillwayBatchLine', 'batch-line.lua', 4],
  ['spillwayBatchSegment', 'batch-segment.lua', 3],
  ['spillwayBatchRun', 'batch-run.lua', 1],
];
let sources: Map<string, string> | undefined;
const defined = new WeakSet<Redis | Cluster>();

function commands(redis: Redis | Cluster): BatchCommands {
  if (!defined.has(redis)) {
    // Read on first use, not at import: `npm run build` copies the .lua files next to the compiled module.
    sources ??= new Map(SCRIPTS.map(([, file]) => [file, readFileSync(new URL(`./${file}`, import.meta.url), 'utf8')]));
    for (const [name, file, numberOfKeys] of SCRIPTS) redis.defineCommand(name, { numberOfKeys, lua: sources.get(file)! });
    defined.add(redis);
  }
  return redis as unknown as BatchCommands;
}

/** Token counts a finished line adds to its batch's usage. */
export interface LineUsage {
  input: number;
  cached: number;
  output: number;
  reasoning: number;
  total: number;
}

export class BatchStore {
  readonly redis: Redis | Cluster;
  readonly keys: RedisKeys;
  readonly retentionMs: number;

  constructor(redis: Redis | Cluster, keys: RedisKeys, options: { retentionSeconds: number }) {
    this.redis = redis;
    this.keys = keys;
    this.retentionMs = options.retentionSeconds * 1000;
  }

  /**
   * Creates the batch (status `validating`) and pins its input file until `pinUntil`, in one script. The batch lives
   * until it may have expired and been wound down (a day of slack), then for the retention.
   */
  async create(record: { id: string; tenant: string; createdAt: number; expiresAt: number; inputFileId: string }, fields: string[], pinUntil: number): Promise<'created' | 'no_file' | 'wrong_purpose'> {
    const tenant = this.keys.tenantKeys(record.tenant);
    const ttlMs = record.expiresAt - record.createdAt + 86_400_000 + this.retentionMs;
    const code = await commands(this.redis).spillwayBatchCreate(
      tenant.batch(record.id),
      tenant.batches,
      tenant.file(record.inputFileId),
      record.id,
      String(record.createdAt),
      String(ttlMs),
      String(INDEX_HORIZON_MS),
      String(pinUntil),
      ...fields,
    );
    return code === 1 ? 'created' : code === -1 ? 'no_file' : 'wrong_purpose';
  }

  async get(tenantId: string, batchId: string): Promise<BatchRecord | undefined> {
    return toBatchRecord(await this.redis.hgetall(this.keys.tenantKeys(tenantId).batch(batchId)));
  }

  /** The tenant's batches, newest first, after the cursor `after` (a batch id of an earlier page). */
  async list(tenantId: string, options: { limit: number; after?: string }): Promise<{ records: BatchRecord[]; hasMore: boolean }> {
    const tenant = this.keys.tenantKeys(tenantId);
    let start = 0;
    if (options.after !== undefined) {
      const rank = await this.redis.zrevrank(tenant.batches, options.after);
      if (rank === null) return { records: [], hasMore: false };
      start = rank + 1;
    }
    const records: BatchRecord[] = [];
    for (;;) {
      const page = options.limit + 1;
      const ids = await this.redis.zrevrange(tenant.batches, start, start + page - 1);
      const pipeline = this.redis.pipeline();
      for (const id of ids) pipeline.hgetall(tenant.batch(id));
      const replies = ids.length === 0 ? [] : ((await pipeline.exec()) ?? []);
      const gone: string[] = [];
      for (const [i, id] of ids.entries()) {
        const record = toBatchRecord(replies[i]?.[1]);
        if (record === undefined) {
          gone.push(id);
          continue;
        }
        if (records.length === options.limit) return { records, hasMore: true };
        records.push(record);
      }
      if (gone.length > 0) await this.redis.zrem(tenant.batches, ...gone);
      if (ids.length < page) return { records, hasMore: false };
      start += ids.length - gone.length;
    }
  }

  /** A status move (or, with status "", a field update) allowed only from `from`; see batch-update.lua. */
  async move(
    batch: Pick<BatchRecord, 'id' | 'tenant' | 'inputFileId'>,
    status: BatchStatus | '',
    from: readonly BatchStatus[] | '*',
    fields: Record<string, string>,
    options: { final?: boolean } = {},
  ): Promise<MoveOutcome> {
    const tenant = this.keys.tenantKeys(batch.tenant);
    const [code, value, webhook] = await commands(this.redis).spillwayBatchUpdate(
      tenant.batch(batch.id),
      tenant.file(batch.inputFileId),
      status,
      from === '*' ? '*' : from.join(' '),
      options.final === true ? String(this.retentionMs) : '0',
      options.final === true ? '1' : '0',
      ...Object.entries(fields).flat(),
    );
    const hasWebhook = webhook === 1;
    if (code === 1) return { changed: true, previous: value as BatchStatus, hasWebhook };
    return { changed: false, current: code === 0 ? (value as BatchStatus) : undefined, hasWebhook };
  }

  /** Ends the batch in its final status (once: the move that wins returns changed, and its caller sends the event). */
  finish(batch: BatchRecord, status: FinalStatus, fields: Record<string, string>, now = Date.now()): Promise<MoveOutcome> {
    const at: Record<FinalStatus, string> = { failed: 'failed_at', completed: 'completed_at', expired: 'expired_at', cancelled: 'cancelled_at' };
    return this.move(batch, status, ['validating', 'in_progress', 'finalizing', 'cancelling'], { ...fields, [at[status]]: String(now) }, { final: true });
  }

  /**
   * Lines about to be handed to the queue: each joins the lines in flight (with its byte offset, to read it again after
   * a crash) and the cursor moves past the last, in one transaction, before the queue sees them.
   */
  async markInFlight(batch: BatchRecord, lines: ReadonlyArray<{ line: number; offset: number }>, cursorOffset: number): Promise<void> {
    if (lines.length === 0) return;
    const tenant = this.keys.tenantKeys(batch.tenant);
    const keys = tenant.batchLines(batch.id);
    const ttl = await this.redis.pttl(tenant.batch(batch.id));
    const last = lines.at(-1)!.line;
    const multi = this.redis.multi();
    multi.hset(keys.inFlight, ...lines.flatMap(({ line, offset }) => [String(line), String(offset)]));
    if (ttl > 0) multi.pexpire(keys.inFlight, ttl);
    multi.hset(tenant.batch(batch.id), 'cursor_line', String(last), 'cursor_offset', String(cursorOffset));
    await multi.exec();
  }

  /** Moves the cursor past lines that need no job (already done), without putting anything in flight. */
  async advanceCursor(batch: BatchRecord, line: number, offset: number): Promise<void> {
    await this.move(batch, '', '*', { cursor_line: String(line), cursor_offset: String(offset) });
  }

  /** Lines in flight: line number → byte offset in the input file. */
  async inFlight(batch: Pick<BatchRecord, 'id' | 'tenant'>): Promise<Map<number, number>> {
    const raw = await this.redis.hgetall(this.keys.tenantKeys(batch.tenant).batchLines(batch.id).inFlight);
    return new Map(Object.entries(raw).map(([line, offset]) => [Number(line), Number(offset)]));
  }

  inFlightCount(batch: Pick<BatchRecord, 'id' | 'tenant'>): Promise<number> {
    return this.redis.hlen(this.keys.tenantKeys(batch.tenant).batchLines(batch.id).inFlight);
  }

  /** A line leaves the lines in flight without a result (its job expired or was dropped): the driver accounts for it. */
  async releaseLine(tenantId: string, batchId: string, line: number): Promise<void> {
    await this.redis.hdel(this.keys.tenantKeys(tenantId).batchLines(batchId).inFlight, String(line));
  }

  /** Records a finished line; see batch-line.lua. */
  async recordLine(tenantId: string, batchId: string, line: number, kind: 'o' | 'e', outputLine: string, usage: LineUsage): Promise<'recorded' | 'duplicate' | 'no_batch'> {
    const tenant = this.keys.tenantKeys(tenantId);
    const keys = tenant.batchLines(batchId);
    const code = await commands(this.redis).spillwayBatchLine(
      tenant.batch(batchId),
      keys.done,
      keys.inFlight,
      keys.results,
      String(line),
      kind,
      outputLine,
      String(usage.input),
      String(usage.cached),
      String(usage.output),
      String(usage.reasoning),
      String(usage.total),
    );
    return code === 1 ? 'recorded' : code === 0 ? 'duplicate' : 'no_batch';
  }

  /**
   * Takes line `line`'s run lease for a run (its `token`), unless another run holds it: then how long that lease has
   * left. One run of a line at a time, even when BullMQ hands a job to a second worker while the first still runs it.
   */
  async claimRun(tenantId: string, batchId: string, line: number, token: string, ttlMs: number): Promise<{ granted: true } | { granted: false; retryInMs: number }> {
    const key = this.keys.tenantKeys(tenantId).batchLines(batchId).running(line);
    if ((await this.redis.set(key, token, 'PX', ttlMs, 'NX')) === 'OK') return { granted: true };
    const left = await this.redis.pttl(key);
    return { granted: false, retryInMs: left > 0 ? left : 100 };
  }

  /** Renews (`ttlMs`) or releases a run lease this run holds; false when it is not this run's any more. */
  async updateRun(tenantId: string, batchId: string, line: number, token: string, ttlMs: number | 'release'): Promise<boolean> {
    const key = this.keys.tenantKeys(tenantId).batchLines(batchId).running(line);
    const args = ttlMs === 'release' ? ['release'] : ['renew', String(ttlMs)];
    return (await commands(this.redis).spillwayBatchRun(key, token, ...args)) === 1;
  }

  /** Whether line `line` has its result recorded, and the batch's status (undefined: no such batch). */
  async lineState(tenantId: string, batchId: string, line: number): Promise<{ done: boolean; status: BatchStatus | undefined }> {
    const tenant = this.keys.tenantKeys(tenantId);
    const replies = (await this.redis.multi().getbit(tenant.batchLines(batchId).done, line).hget(tenant.batch(batchId), 'status').exec()) ?? [];
    return { done: replies[0]?.[1] === 1, status: (replies[1]?.[1] ?? undefined) as BatchStatus | undefined };
  }

  /** The done bitmap, whole (one bit a line: 6 KiB for 50,000 lines). */
  async doneBitmap(batch: Pick<BatchRecord, 'id' | 'tenant'>): Promise<Buffer> {
    return (await this.redis.getBuffer(this.keys.tenantKeys(batch.tenant).batchLines(batch.id).done)) ?? Buffer.alloc(0);
  }

  /** Up to `count` waiting results from `start` (0: the oldest). */
  pendingResults(batch: Pick<BatchRecord, 'id' | 'tenant'>, start: number, count: number): Promise<string[]> {
    return this.redis.lrange(this.keys.tenantKeys(batch.tenant).batchLines(batch.id).results, start, start + count - 1);
  }

  pendingCount(batch: Pick<BatchRecord, 'id' | 'tenant'>): Promise<number> {
    return this.redis.llen(this.keys.tenantKeys(batch.tenant).batchLines(batch.id).results);
  }

  /** Commits a flush; see batch-segment.lua. False: another driver committed this segment number first. */
  async commitSegment(batch: Pick<BatchRecord, 'id' | 'tenant'>, number: number, count: number, bytes: number, segments: readonly Segment[]): Promise<boolean> {
    const tenant = this.keys.tenantKeys(batch.tenant);
    const keys = tenant.batchLines(batch.id);
    const code = await commands(this.redis).spillwayBatchSegment(
      tenant.batch(batch.id),
      keys.results,
      keys.segments,
      String(number),
      String(count),
      String(bytes),
      ...segments.map((s) => JSON.stringify(s)),
    );
    return code === 1;
  }

  async segments(batch: Pick<BatchRecord, 'id' | 'tenant'>): Promise<Segment[]> {
    const raw = await this.redis.lrange(this.keys.tenantKeys(batch.tenant).batchLines(batch.id).segments, 0, -1);
    return raw.map((entry) => JSON.parse(entry) as Segment);
  }

  /** Drops a finished batch's line state (its results are in its files by now). */
  async dropLineState(batch: Pick<BatchRecord, 'id' | 'tenant'>): Promise<void> {
    const keys = this.keys.tenantKeys(batch.tenant).batchLines(batch.id);
    await this.redis.unlink(keys.done, keys.inFlight, keys.results, keys.segments);
  }

  /** Appends a webhook delivery attempt to the batch's log (capped, with the batch's TTL) and sets its webhook state. */
  async recordDelivery(tenantId: string, batchId: string, entry: string, state: string, attempt: number, maxLog: number): Promise<boolean> {
    const tenant = this.keys.tenantKeys(tenantId);
    const ttl = await this.redis.pttl(tenant.batch(batchId));
    if (ttl < 0) return false;
    await this.redis
      .multi()
      .hset(tenant.batch(batchId), 'webhook_state', state, 'webhook_attempts', String(attempt))
      .rpush(tenant.batchLines(batchId).deliveries, entry)
      .ltrim(tenant.batchLines(batchId).deliveries, -maxLog, -1)
      .pexpire(tenant.batchLines(batchId).deliveries, ttl)
      .exec();
    return true;
  }
}
