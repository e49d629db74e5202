// A tenant's effective admission limits: its own fields over `tenantDefaults` over the built-in defaults, resolved
// once per tenant at start. Pure: never touches Redis, never reads the environment.
import type { Config, PriorityClass, TenantConfig } from '../config/schema.ts';

export interface TenantLimits {
  readonly tenantId: string;
  /** Requests per minute; undefined: no request budget. */
  readonly rpm: number | undefined;
  /** Requests admitted at once on top of the pace (with rpm only). */
  readonly burst: number;
  /** Tokens per minute; undefined: no token budget. */
  readonly tpm: number | undefined;
  /** Tokens admitted at once on top of the pace (with tpm only). */
  readonly tokenBurst: number;
  /** Jobs of the tenant running at once across every worker; undefined: no cap. */
  readonly maxConcurrent: number | undefined;
  /** Longest wait in the queue, delay included, before a request is refused (429) or shed (503). */
  readonly maxQueueWaitMs: number;
  readonly priority: PriorityClass;
  readonly weight: number;
  /** Answer tokens assumed when the request states no max_tokens / max_completion_tokens. */
  readonly estimatedCompletionTokens: number;
}

export const DEFAULT_WEIGHT = 1;
export const DEFAULT_PRIORITY: PriorityClass = 'normal';
export const DEFAULT_ESTIMATED_COMPLETION_TOKENS = 1024;

/** One second's worth of a per-minute rate, at least 1: the default burst of both budgets. */
export function oneSecondsWorth(perMinute: number): number {
  return Math.max(1, Math.floor(perMinute / 60));
}

export function resolveTenantLimits(config: Pick<Config, 'tenantDefaults' | 'server'>, tenant: TenantConfig): TenantLimits {
  const defaults = config.tenantDefaults;
  const rpm = tenant.rpm ?? defaults.rpm;
  const tpm = tenant.tpm ?? defaults.tpm;
  return {
    tenantId: tenant.id,
    rpm,
    burst: tenant.burst ?? defaults.burst ?? (rpm === undefined ? 1 : oneSecondsWorth(rpm)),
    tpm,
    tokenBurst: tenant.tokenBurst ?? defaults.tokenBurst ?? (tpm === undefined ? 1 : oneSecondsWorth(tpm)),
    maxConcurrent: tenant.maxConcurrent ?? defaults.maxConcurrent,
    maxQueueWaitMs: tenant.maxQueueWaitMs ?? config.server.maxQueueWaitMs,
    priority: tenant.priority ?? defaults.priority ?? DEFAULT_PRIORITY,
    weight: tenant.weight ?? defaults.weight ?? DEFAULT_WEIGHT,
    estimatedCompletionTokens: tenant.estimatedCompletionTokens ?? defaults.estimatedCompletionTokens ?? DEFAULT_ESTIMATED_COMPLETION_TOKENS,
  };
}

/** Whether admission has a budget to check: without one, admission needs no Redis round trip (fair share aside). */
export function hasRateLimits(limits: Pick<TenantLimits, 'rpm' | 'tpm'>): boolean {
  return limits.rpm !== undefined || limits.tpm !== undefined;
}
