// The two refusals admission emits, shaped as OpenAI's: 429 when the tenant's own budget has no slot within its
// queue wait, 503 when the queue would not reach the request in time (load shedding). Never names another tenant.
import { SpillwayError } from '../errors.ts';
import type { AdmissionResult } from './admit.ts';
import { formatDuration, rateLimitHeaders, retryHeaders } from './headers.ts';

const BUDGET_NAME = { requests: 'requests per min (RPM)', tokens: 'tokens per min (TPM)' } as const;

/** 429 rate_limit_exceeded for a refused admission, with x-ratelimit-*, retry-after, retry-after-ms (and x-should-retry). */
export function tenantRateLimited(tenantId: string, result: Extract<AdmissionResult, { decision: 'reject' }>): SpillwayError {
  const budget = result.rateLimit[result.binding];
  const limit = budget === undefined ? '' : ` Limit ${budget.limit}.`;
  return new SpillwayError(
    `Rate limit reached for tenant ${tenantId} on ${BUDGET_NAME[result.binding]}:${limit} Please try again in ${formatDuration(result.retryAfterMs)}.`,
    { statusCode: 429, type: 'rate_limit_error', code: 'rate_limit_exceeded', headers: rateLimitHeaders(result), retryable: true },
  );
}

/** 503 for a request shed at the door: the queue ahead of it would outlast its queue wait. */
export function queueOverloaded(estimatedWaitMs: number, retryAfterMs: number): SpillwayError {
  return new SpillwayError(
    `The server is overloaded: the estimated wait (${formatDuration(estimatedWaitMs)}) is longer than this request may wait. Please try again later.`,
    { statusCode: 503, type: 'server_error', code: 'server_overloaded', headers: retryHeaders(retryAfterMs), retryable: true },
  );
}
