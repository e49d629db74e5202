// Per-tenant admission, the public surface: budgets (GCRA, one script call per tenant for the requests that arrive
// together), token estimation and settlement, rate-limit headers and errors, concurrency leases, fair-share
// priorities, load shedding. Re-exports only.
export { admitRequest, settleTokens, needsRedis, type AdmissionResult, type AdmitOptions, type BudgetState, type RateLimitState, type SettleOptions } from './admit.ts';
export { resolveTenantLimits, hasRateLimits, oneSecondsWorth, type TenantLimits } from './limits.ts';
export { estimateTokens, EXACT_CHARS, IMAGE_PART_TOKENS, type EstimateDefaults } from './tokens.ts';
export { rateLimitHeaders, rateLimitStateHeaders, retryHeaders, formatDuration, SDK_MAX_HONOURED_RETRY_MS } from './headers.ts';
export { tenantRateLimited, queueOverloaded } from './rate-limit-error.ts';
export { acquireLease, renewLease, releaseLease, holdLease, DEFAULT_MAX_RETRY_MS, type LeaseAnswer, type LeaseHolder } from './leases.ts';
export {
  fairSharePriority,
  classBasePriority,
  fairShareIncrementMs,
  fairShareUnitMs,
  FAIR_SHARE_CAP_MS,
  PRIORITY_RESOLUTION_MS,
  BULLMQ_PRIORITY_LIMIT,
  CLASS_SPAN,
  DEFAULT_FAIR_SHARE_UNIT_MS,
  type FairShareOptions,
} from './fair-share.ts';
export { createDrainMeter, readDrainRates, queuePosition, estimatedWaitMs, shouldShed, shedRetryAfterMs, DRAIN_WINDOW_SECONDS, type DrainMeter, type DrainRates } from './shed.ts';
export type { AdmissionRedis } from './scripts.ts';
export { AdmissionGate, type Admitted, type AdmissionOutcome, type AdmissionGateOptions } from './gate.ts';
