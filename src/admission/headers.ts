// OpenAI's rate-limit headers from an admission answer: x-ratelimit-* on every response of a limited tenant, and
// retry-after / retry-after-ms / x-should-retry on a 429. Pure; never invents a budget the tenant does not have.
import type { AdmissionResult, BudgetState, RateLimitState } from './admit.ts';

/**
 * The longest Retry-After the official SDKs honour: past it (openai-node and openai-python: 60 s) they ignore the
 * header and retry after their own short backoff (0.5 s … 8 s), which cannot succeed before our retry time.
 */
export const SDK_MAX_HONOURED_RETRY_MS = 60_000;

/**
 * A duration as OpenAI writes it (Go's time.Duration format at millisecond precision): `120ms`, `1s`, `1.5s`,
 * `6m0s`, `1h2m3.5s`; zero is `0s`. Fractions of a millisecond round up: a reset is never announced early.
 */
export function formatDuration(ms: number): string {
  const total = Math.max(0, Math.ceil(ms));
  if (total === 0) return '0s';
  if (total < 1000) return `${total}ms`;
  const hours = Math.floor(total / 3_600_000);
  const minutes = Math.floor((total % 3_600_000) / 60_000);
  const millis = total % 60_000;
  const seconds = `${Math.floor(millis / 1000)}${millis % 1000 === 0 ? '' : `.${String(millis % 1000).padStart(3, '0').replace(/0+$/, '')}`}s`;
  if (hours > 0) return `${hours}h${minutes}m${seconds}`;
  if (minutes > 0) return `${minutes}m${seconds}`;
  return seconds;
}

function budgetHeaders(headers: Record<string, string>, kind: 'requests' | 'tokens', state: BudgetState | undefined): void {
  if (state === undefined) return;
  headers[`x-ratelimit-limit-${kind}`] = String(state.limit);
  headers[`x-ratelimit-remaining-${kind}`] = String(state.remaining);
  headers[`x-ratelimit-reset-${kind}`] = formatDuration(state.resetMs);
}

/** The x-ratelimit-* headers of a budget state (none for a tenant without budgets). */
export function rateLimitStateHeaders(state: RateLimitState): Record<string, string> {
  const headers: Record<string, string> = {};
  budgetHeaders(headers, 'requests', state.requests);
  budgetHeaders(headers, 'tokens', state.tokens);
  return headers;
}

/** Retry-After (whole seconds, rounded up), retry-after-ms, and x-should-retry: false when SDKs would retry too early. */
export function retryHeaders(retryAfterMs: number): Record<string, string> {
  const ms = Math.max(1, Math.ceil(retryAfterMs));
  const headers: Record<string, string> = { 'retry-after': String(Math.ceil(ms / 1000)), 'retry-after-ms': String(ms) };
  // Below the limit the SDK sleeps exactly retry-after-ms and its retry is admitted (unless other traffic took the
  // slot); beyond it the SDK would retry within seconds and be refused again: tell it not to.
  if (ms > SDK_MAX_HONOURED_RETRY_MS) headers['x-should-retry'] = 'false';
  return headers;
}

/**
 * Every header an admission answer calls for: x-ratelimit-* for a limited tenant, and on a refusal also the retry
 * headers. A delayed request's x-spillway-queue-wait-ms is the caller's (it knows the whole wait).
 */
export function rateLimitHeaders(result: AdmissionResult): Record<string, string> {
  const headers = rateLimitStateHeaders(result.rateLimit);
  if (result.decision === 'reject') Object.assign(headers, retryHeaders(result.retryAfterMs));
  return headers;
}
