// When and how long to wait before the next upstream attempt: exponential backoff with full jitter,
// never shorter than the provider's Retry-After, never past the job's deadline.

export const BASE_BACKOFF_MS = 100;
export const MAX_BACKOFF_MS = 5_000;

/** Delay before attempt `attempt + 1`, or undefined when waiting would cross the deadline. */
export function retryDelayMs(attempt: number, retryAfterMs: number | undefined, msUntilDeadline: number, random = Math.random): number | undefined {
  const backoff = Math.floor(random() * Math.min(MAX_BACKOFF_MS, BASE_BACKOFF_MS * 2 ** attempt));
  const delay = Math.max(backoff, retryAfterMs ?? 0);
  // Leave the next attempt some time to run: a retry that starts at the deadline only burns tokens.
  return delay + 50 < msUntilDeadline ? delay : undefined;
}

/** Parses Retry-After (seconds or HTTP date) and OpenAI's retry-after-ms; undefined when absent or unusable. */
export function parseRetryAfter(headers: Record<string, string | string[] | undefined>, now = Date.now()): number | undefined {
  const ms = first(headers['retry-after-ms']);
  if (ms !== undefined && /^\d+(\.\d+)?$/.test(ms)) return Math.ceil(Number(ms));
  const value = first(headers['retry-after']);
  if (value === undefined) return undefined;
  if (/^\d+(\.\d+)?$/.test(value)) return Math.ceil(Number(value) * 1000);
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

function first(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}
