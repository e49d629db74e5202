// The ingress's admission step for one request: tenant budgets (admit.lua, one call per tenant for the requests that
// arrive together; none for an unlimited tenant without fair share), fair-share priority, and early load shedding from
// the pool's measured capacity. Never enqueues.
import type { Logger } from 'pino';
import type { Config, Endpoint, PriorityClass, TenantConfig } from '../config/schema.ts';
import { QUEUE_NAMES, type RedisKeys } from '../queue/keys.ts';
import { serviceUnavailable } from '../errors.ts';
import { admitRequest, type AdmissionResult } from './admit.ts';
import { resolveTenantLimits, type TenantLimits } from './limits.ts';
import { estimateTokens } from './tokens.ts';
import { rateLimitHeaders } from './headers.ts';
import { tenantRateLimited, queueOverloaded } from './rate-limit-error.ts';
import { fairShareUnitMs } from './fair-share.ts';
import { estimatedWaitMs, queuePosition, readDrainRates, shedRetryAfterMs, shouldShed } from './shed.ts';
import type { AdmissionRedis } from './scripts.ts';
import { placeComment, placeInQueue } from './position.ts';

export type AdmissionOutcome = 'now' | 'delayed' | 'rejected' | 'shed';

export interface Admitted {
  outcome: 'now' | 'delayed';
  /** BullMQ delay: the request waits in the queue for its budget slot. */
  delayMs: number;
  /** BullMQ priority; undefined when nothing orders jobs (one tenant, one class): the plain FIFO, cheapest in Redis. */
  priority: number | undefined;
  /** Tokens charged to the tenant's tpm (0 without tpm): the worker settles them from the upstream's usage. */
  tokens: number;
  /** x-ratelimit-* for a limited tenant. */
  headers: Record<string, string>;
}

/** How one request is admitted when it is not a plain synchronous one (async jobs). */
export interface AdmitOptions {
  /** The request's priority class instead of its tenant's (async jobs: `jobs.asyncPriority`); always gets a priority. */
  priorityClass?: PriorityClass;
  /** Its longest queue wait instead of its tenant's (async jobs: hours). */
  maxQueueWaitMs?: number;
  /**
   * Budgets (rpm/tpm) charged by the worker when the job runs, not reserved now; fair share on the tenant's async
   * clock. Async jobs: a batch never reserves budget ahead of, nor pushes back, the tenant's synchronous requests.
   */
  chargeAtRun?: boolean;
}

export interface AdmissionGateOptions {
  redis: AdmissionRedis;
  keys: RedisKeys;
  config: Config;
  logger: Logger;
  /** Called once per decision, for metrics. */
  onOutcome?: (tenant: string, outcome: AdmissionOutcome) => void;
  /** How often the drain rates and queue depth are read (two MULTIs, not per request). */
  refreshMs?: number;
}

export class AdmissionGate {
  private readonly options: AdmissionGateOptions;
  private readonly limits = new Map<string, TenantLimits>();
  /** Fair share needs the tenants' virtual times (the one round trip); pointless with one tenant and one class. */
  readonly fairShare: boolean;
  /** Jobs the pool finished a second (the fair-share unit). */
  private drainRate = 0;
  /** Jobs the pool could finish a second (load shedding, queue-position ETAs): see DrainRates. */
  private capacity = 0;
  private depth = 0;
  /** Jobs without a priority (the plain wait list), which BullMQ serves before every prioritized one. */
  private waitDepth = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(options: AdmissionGateOptions) {
    this.options = options;
    const { config } = options;
    for (const tenant of config.tenants) this.limits.set(tenant.id, resolveTenantLimits(config, tenant));
    const classes = new Set([...this.limits.values()].map((l) => l.priority));
    const setting = config.server.fairShare;
    this.fairShare = setting === 'on' || (setting === 'auto' && (config.tenants.length > 1 || classes.size > 1));
  }

  /** Starts reading the drain rates and queue depth once per refresh interval. */
  start(): void {
    const refresh = () => void this.refresh();
    this.timer = setInterval(refresh, this.options.refreshMs ?? 1_000);
    this.timer.unref();
    refresh();
  }

  close(): void {
    clearInterval(this.timer);
  }

  limitsOf(tenantId: string): TenantLimits | undefined {
    return this.limits.get(tenantId);
  }

  /** Admits the request or throws its answer: 429 (tenant budget), 503 (shed, or Redis unavailable). */
  async admit(tenant: TenantConfig, endpoint: Endpoint, body: Record<string, unknown>, options: AdmitOptions = {}): Promise<Admitted> {
    let limits = this.limits.get(tenant.id) ?? resolveTenantLimits(this.options.config, tenant);
    if (options.priorityClass !== undefined || options.maxQueueWaitMs !== undefined || options.chargeAtRun === true) {
      limits = {
        ...limits,
        priority: options.priorityClass ?? limits.priority,
        maxQueueWaitMs: options.maxQueueWaitMs ?? limits.maxQueueWaitMs,
        ...(options.chargeAtRun === true ? { rpm: undefined, tpm: undefined } : {}),
      };
    }
    // Tokenizing costs tens of µs: only for a tenant whose token budget needs the estimate.
    const tokens = limits.tpm === undefined ? 0 : estimateTokens(endpoint, body, { completionTokens: limits.estimatedCompletionTokens });
    const fairShare = this.fairShare ? { unitMs: fairShareUnitMs(this.drainRate) } : false;
    // admit.lua keeps one virtual clock per key it is given: async jobs run on the tenant's async clock.
    const keys = options.chargeAtRun === true ? asyncFairShareKeys(this.options.keys) : this.options.keys;
    let result: AdmissionResult;
    try {
      result = await admitRequest(this.options.redis, keys, limits, { tokens, maxQueueWaitMs: limits.maxQueueWaitMs, fairShare });
    } catch (err) {
      this.options.logger.warn({ err, tenant: tenant.id }, 'admission failed: Redis unavailable');
      throw serviceUnavailable('The request queue is unavailable; try again shortly.');
    }
    if (result.decision === 'reject') {
      this.options.onOutcome?.(tenant.id, 'rejected');
      throw tenantRateLimited(tenant.id, result);
    }
    const delayMs = result.decision === 'delay' ? result.delayMs : 0;
    // A request of its own class always carries a priority: without one it would join the plain wait list, ahead of all.
    const priority = this.fairShare || options.priorityClass !== undefined ? result.priority : undefined;
    await this.shedIfTooLate(tenant.id, limits, priority, delayMs);
    this.options.onOutcome?.(tenant.id, delayMs > 0 ? 'delayed' : 'now');
    return { outcome: delayMs > 0 ? 'delayed' : 'now', delayMs, priority, tokens, headers: rateLimitHeaders(result) };
  }

  /**
   * Early load shedding: a request the queue would not reach before its queue-wait limit gets 503 now instead of 504
   * later. The whole depth is a cheap upper bound read once a second; the exact place in line (one MULTI) is read
   * only when that bound already says too late.
   */
  private async shedIfTooLate(tenantId: string, limits: TenantLimits, priority: number | undefined, delayMs: number): Promise<void> {
    const budget = limits.maxQueueWaitMs - delayMs;
    if (!shouldShed(this.depth + 1, this.capacity, budget)) return;
    let position: number;
    try {
      // Without a priority the job joins the plain wait list, served before every prioritized (e.g. async) job.
      position = priority === undefined ? this.waitDepth + 1 : await queuePosition(this.options.redis, this.options.keys, QUEUE_NAMES.completions, priority);
    } catch {
      return; // the estimate is advisory: the request's own deadline still bounds it
    }
    if (!shouldShed(position, this.capacity, budget)) return;
    this.options.onOutcome?.(tenantId, 'shed');
    throw queueOverloaded(estimatedWaitMs(position, this.capacity), shedRetryAfterMs(position, this.capacity, budget));
  }

  /** The SSE comment telling a waiting client where its job stands, or undefined once it is no longer in line. */
  async describePlace(jobId: string): Promise<string | undefined> {
    const place = await placeInQueue(this.options.redis, this.options.keys, QUEUE_NAMES.completions, jobId, this.capacity);
    return placeComment(place);
  }

  private async refresh(): Promise<void> {
    const { redis, keys } = this.options;
    try {
      // Every queue shard (keys.shards): one MULTI per shard, each in its own slot; the depths add up.
      const [rates, ...perShard] = await Promise.all([
        readDrainRates(redis, keys, QUEUE_NAMES.completions),
        ...keys.shards.map((shard) => {
          const depthKeys = keys.queueDepthKeys(QUEUE_NAMES.completions, shard.index);
          return redis.multi().llen(depthKeys.wait).zcard(depthKeys.prioritized).exec();
        }),
      ]);
      this.drainRate = rates.throughput;
      this.capacity = rates.capacity;
      this.depth = perShard.flatMap((counts) => counts ?? []).reduce((sum, [err, value]) => (err ? sum : sum + Number(value)), 0);
      this.waitDepth = perShard.reduce((sum, counts) => {
        const [waitErr, waitLength] = counts?.[0] ?? [null, 0];
        return waitErr ? sum : sum + Number(waitLength);
      }, 0);
    } catch {
      // Keep the last figures: a Redis outage is answered by the request path itself (503).
    }
  }
}

/** The key scheme with each tenant's fair-share clock swapped for its async one (the rest unchanged). */
function asyncFairShareKeys(keys: RedisKeys): RedisKeys {
  return { ...keys, tenantKeys: (tenantId) => ({ ...keys.tenantKeys(tenantId), fairShare: keys.tenantKeys(tenantId).asyncFairShare }) };
}
