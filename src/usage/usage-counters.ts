// Daily usage counters in Redis: per tenant, UTC day and public model, the requests answered, their tokens and their
// cost. One hash per tenant and day under the tenant's hash tag, with a TTL: nothing grows without bound. A worker
// adds its jobs up in memory and writes them once a second (UsageRecorder): never a Redis call on a job's path.
import type { Cluster, Redis } from 'ioredis';
import type { RedisKeys } from '../queue/keys.ts';
import type { TokenCounts } from './token-usage.ts';

/** Totals of one tenant, day and model (or summed over several). Cost in nano-dollars: integers add up exactly. */
export interface UsageTotals {
  requests: number;
  promptTokens: number;
  completionTokens: number;
  cachedTokens: number;
  costNanoUsd: number;
}

export const FIELDS = ['requests', 'prompt', 'completion', 'cached', 'cost_nusd'] as const;
type Field = (typeof FIELDS)[number];

export function emptyTotals(): UsageTotals {
  return { requests: 0, promptTokens: 0, completionTokens: 0, cachedTokens: 0, costNanoUsd: 0 };
}

export function addTotals(into: UsageTotals, more: UsageTotals): UsageTotals {
  into.requests += more.requests;
  into.promptTokens += more.promptTokens;
  into.completionTokens += more.completionTokens;
  into.cachedTokens += more.cachedTokens;
  into.costNanoUsd += more.costNanoUsd;
  return into;
}

/** The UTC day of an epoch-ms time, as YYYY-MM-DD. */
export function utcDay(epochMs: number): string {
  return new Date(epochMs).toISOString().slice(0, 10);
}

const SECONDS_PER_DAY = 86_400;

export class UsageCounters {
  private readonly redis: Redis | Cluster;
  private readonly keys: RedisKeys;
  private readonly ttlSeconds: number;

  /** `retentionDays`: how long after its day a day's counters stay readable. */
  constructor(redis: Redis | Cluster, keys: RedisKeys, options: { retentionDays: number }) {
    this.redis = redis;
    this.keys = keys;
    // Counted from the write, which may come late in the day: one more day keeps the whole retention readable.
    this.ttlSeconds = (options.retentionDays + 1) * SECONDS_PER_DAY;
  }

  /**
   * Adds counts to tenants' days: `batch` maps a tenant's day key (usageKey) to its fields' increments. One MULTI per
   * key (one slot: safe on Redis Cluster), all sent at once. Returns the keys whose write failed (nothing of them was
   * written: a MULTI is all or nothing).
   */
  async add(batch: ReadonlyMap<string, ReadonlyMap<string, number>>): Promise<{ failed: string[]; error: unknown }> {
    const keys = [...batch.keys()];
    const results = await Promise.allSettled(
      keys.map(async (key) => {
        const multi = this.redis.multi();
        for (const [field, by] of batch.get(key)!) multi.hincrby(key, field, by);
        const replies = await multi.expire(key, this.ttlSeconds).exec();
        const failed = replies === null ? new Error('transaction aborted') : replies.find(([err]) => err !== null)?.[0];
        if (failed) throw failed;
      }),
    );
    const failed = keys.filter((_, i) => results[i]!.status === 'rejected');
    const firstError = results.find((r): r is PromiseRejectedResult => r.status === 'rejected')?.reason;
    return { failed, error: firstError };
  }

  /** The key of a tenant's UTC day. */
  usageKey(tenant: string, atMs: number): string {
    return this.keys.tenantKeys(tenant).usage(utcDay(atMs));
  }

  /** A tenant's totals per day and model over `days` (YYYY-MM-DD); days without usage are absent. */
  async read(tenant: string, days: readonly string[]): Promise<Map<string, Map<string, UsageTotals>>> {
    const tenantKeys = this.keys.tenantKeys(tenant);
    const pipeline = this.redis.pipeline();
    for (const day of days) pipeline.hgetall(tenantKeys.usage(day));
    const replies = (await pipeline.exec()) ?? [];
    const out = new Map<string, Map<string, UsageTotals>>();
    replies.forEach(([err, hash], i) => {
      if (err) throw err;
      const byModel = parseDay(hash as Record<string, string>);
      if (byModel.size > 0) out.set(days[i]!, byModel);
    });
    return out;
  }
}

function parseDay(hash: Record<string, string>): Map<string, UsageTotals> {
  const byModel = new Map<string, UsageTotals>();
  for (const [field, raw] of Object.entries(hash)) {
    const cut = field.lastIndexOf('|');
    if (cut <= 0) continue;
    const model = field.slice(0, cut);
    const value = Number(raw);
    if (!Number.isFinite(value)) continue;
    let totals = byModel.get(model);
    if (totals === undefined) byModel.set(model, (totals = emptyTotals()));
    switch (field.slice(cut + 1) as Field) {
      case 'requests':
        totals.requests += value;
        break;
      case 'prompt':
        totals.promptTokens += value;
        break;
      case 'completion':
        totals.completionTokens += value;
        break;
      case 'cached':
        totals.cachedTokens += value;
        break;
      case 'cost_nusd':
        totals.costNanoUsd += value;
        break;
      default:
        break; // a counter a newer version writes: ignored
    }
  }
  return byModel;
}

/** How often a worker writes what its jobs added up. */
export const USAGE_FLUSH_MS = 1_000;

/**
 * A worker's side: each answered job is added up in memory per tenant day and model, and written once a second (and
 * at close). A write that fails is kept and merged into the next one; a worker killed outright loses at most the last
 * second's counts.
 */
export class UsageRecorder {
  private readonly counters: UsageCounters;
  private readonly onError: (err: unknown) => void;
  private pending = new Map<string, Map<string, number>>();
  private readonly timer: NodeJS.Timeout;
  private flushing: Promise<void> | undefined;

  constructor(counters: UsageCounters, options: { flushMs?: number; onError: (err: unknown) => void }) {
    this.counters = counters;
    this.onError = options.onError;
    this.timer = setInterval(() => void this.flush(), options.flushMs ?? USAGE_FLUSH_MS);
    this.timer.unref();
  }

  /** Counts one answered request (no I/O). */
  record(tenant: string, model: string, atMs: number, tokens: TokenCounts | undefined, costUsd: number): void {
    const key = this.counters.usageKey(tenant, atMs);
    let fields = this.pending.get(key);
    if (fields === undefined) this.pending.set(key, (fields = new Map()));
    const add = (name: Field, by: number) => {
      if (by > 0) fields.set(`${model}|${name}`, (fields.get(`${model}|${name}`) ?? 0) + by);
    };
    add('requests', 1);
    if (tokens !== undefined) {
      add('prompt', tokens.prompt);
      add('completion', tokens.completion);
      add('cached', tokens.cached);
    }
    add('cost_nusd', Math.round(costUsd * 1e9));
  }

  /** Writes what was added up since the last write; one write at a time. */
  flush(): Promise<void> {
    this.flushing ??= this.write().finally(() => {
      this.flushing = undefined;
    });
    return this.flushing;
  }

  /** Stops the timer and writes the rest. */
  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.flushing;
    await this.flush();
  }

  private async write(): Promise<void> {
    const batch = this.pending;
    if (batch.size === 0) return;
    this.pending = new Map();
    const { failed, error } = await this.counters.add(batch);
    if (failed.length === 0) return;
    // Kept for the next write (a failed MULTI wrote nothing): Redis may be back by then.
    for (const key of failed) {
      const into = this.pending.get(key) ?? this.pending.set(key, new Map()).get(key)!;
      for (const [field, by] of batch.get(key)!) into.set(field, (into.get(field) ?? 0) + by);
    }
    this.onError(error);
  }
}
