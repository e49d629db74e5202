// The worker's side of tenant limits: a concurrency lease around each upstream call (maxConcurrent, held across every
// worker replica), and the token budget corrected from the upstream's usage once the call is over. Never fails a job
// for a tenant at its limit: the job waits (the processor delays it) and runs when a slot frees.
import type { Config, TenantConfig } from '../config/schema.ts';
import type { RedisKeys } from '../queue/keys.ts';
import { resolveTenantLimits, type TenantLimits } from './limits.ts';
import { acquireLease, holdLease, type LeaseHolder } from './leases.ts';
import { settleTokens } from './admit.ts';
import type { AdmissionRedis } from './scripts.ts';

/** How long token corrections are summed before they are written. */
const SETTLE_FLUSH_MS = 100;

export type LeaseOutcome = { granted: true; lease: LeaseHolder | undefined } | { granted: false; retryInMs: number };

export class WorkerBudgets {
  private readonly redis: AdmissionRedis;
  private readonly keys: RedisKeys;
  private readonly leaseTtlMs: number;
  private readonly limits = new Map<string, TenantLimits>();
  /** Token corrections not yet written, by tenant (tokens: positive is a charge, negative a refund). */
  private readonly pending = new Map<string, number>();
  private flushTimer: NodeJS.Timeout | undefined;

  /** `leaseTtlMs`: how soon a SIGKILLed worker's slots come back (renewed every third of it while a call runs). */
  constructor(options: { redis: AdmissionRedis; keys: RedisKeys; config: Config; leaseTtlMs: number }) {
    this.redis = options.redis;
    this.keys = options.keys;
    this.leaseTtlMs = options.leaseTtlMs;
    for (const tenant of options.config.tenants as TenantConfig[]) this.limits.set(tenant.id, resolveTenantLimits(options.config, tenant));
  }

  /** Whether the tenant's token budget wants the upstream's usage (so a stream must ask for it). */
  wantsUsage(tenantId: string): boolean {
    return this.limits.get(tenantId)?.tpm !== undefined;
  }

  /** A slot for one call of this job; no Redis call for a tenant without maxConcurrent. */
  async acquire(tenantId: string, jobId: string): Promise<LeaseOutcome> {
    const max = this.limits.get(tenantId)?.maxConcurrent;
    if (max === undefined) return { granted: true, lease: undefined };
    const answer = await acquireLease(this.redis, this.keys, tenantId, jobId, max, this.leaseTtlMs);
    if (!answer.granted) return answer;
    return { granted: true, lease: holdLease(this.redis, this.keys, tenantId, jobId, this.leaseTtlMs) };
  }

  /**
   * Corrects the tenant's tpm by what the upstream reported against what admission charged. Corrections are summed
   * per tenant and written every SETTLE_FLUSH_MS (one script per tenant per flush, not one per job): the budget is
   * right a fraction of a second later, and settlement costs no Redis round trip per request.
   */
  settle(tenantId: string, estimated: number | undefined, actual: number | undefined): Promise<void> {
    const limits = this.limits.get(tenantId);
    if (limits?.tpm === undefined || estimated === undefined || actual === undefined) return Promise.resolve();
    const delta = Math.ceil(actual) - Math.max(0, Math.ceil(estimated));
    if (delta === 0 || !Number.isFinite(delta)) return Promise.resolve();
    this.pending.set(tenantId, (this.pending.get(tenantId) ?? 0) + delta);
    this.flushTimer ??= setTimeout(() => void this.flush(), SETTLE_FLUSH_MS);
    return Promise.resolve();
  }

  /** Writes the summed corrections now (also on close, so a stopping worker leaves the budgets right). */
  async flush(): Promise<void> {
    clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    const batch = [...this.pending];
    this.pending.clear();
    await Promise.all(
      batch.map(async ([tenantId, delta]) => {
        const limits = this.limits.get(tenantId)!;
        // settleTokens applies actual - estimated: the summed delta is passed as an estimate of 0.
        await settleTokens(this.redis, this.keys, limits, { estimated: 0, actual: delta }).catch(() => {
          // Redis unavailable: keep the correction for the next flush.
          this.pending.set(tenantId, (this.pending.get(tenantId) ?? 0) + delta);
          this.flushTimer ??= setTimeout(() => void this.flush(), SETTLE_FLUSH_MS);
        });
      }),
    );
  }
}

/** total_tokens of an OpenAI usage object, or of a JSON answer's text (read without parsing a large body). */
export function totalTokens(usage: unknown, bodyText?: string): number | undefined {
  if (usage !== null && typeof usage === 'object') {
    const total = (usage as { total_tokens?: unknown }).total_tokens;
    if (typeof total === 'number' && Number.isFinite(total)) return total;
  }
  if (bodyText === undefined) return undefined;
  // The usage object closes an OpenAI answer: look for the last total_tokens only.
  const at = bodyText.lastIndexOf('"total_tokens"');
  if (at === -1) return undefined;
  const match = /^"total_tokens"\s*:\s*(\d+)/.exec(bodyText.slice(at, at + 40));
  return match ? Number(match[1]) : undefined;
}
