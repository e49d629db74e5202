// Daily usage counters in Redis: per tenant, UTC day and public model, the requests answered, their tokens and their
// cost. One hash per tenant and day under the tenant's hash tag, written once per finished job, with a TTL: nothing
// grows without bound. Never holds a job up: a failed write is the caller's to log.
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

  /** Adds one answered request to its tenant's day (one MULTI of a single slot: safe on Redis Cluster). */
  async record(tenant: string, model: string, atMs: number, tokens: TokenCounts | undefined, costUsd: number): Promise<void> {
    const key = this.keys.tenantKeys(tenant).usage(utcDay(atMs));
    const field = (name: Field) => `${model}|${name}`;
    const multi = this.redis.multi().hincrby(key, field('requests'), 1);
    if (tokens !== undefined) {
      if (tokens.prompt > 0) multi.hincrby(key, field('prompt'), tokens.prompt);
      if (tokens.completion > 0) multi.hincrby(key, field('completion'), tokens.completion);
      if (tokens.cached > 0) multi.hincrby(key, field('cached'), tokens.cached);
    }
    const nano = Math.round(costUsd * 1e9);
    if (nano > 0) multi.hincrby(key, field('cost_nusd'), nano);
    multi.expire(key, this.ttlSeconds);
    const replies = await multi.exec();
    const failed = replies?.find(([err]) => err !== null);
    if (failed) throw failed[0];
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
