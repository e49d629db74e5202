// When and how long to wait before the next upstream attempt: exponential backoff with full jitter, a provider's
// Retry-After honoured for that provider only, never past the job's deadline. Pure apart from the clock it is given.

export const BASE_BACKOFF_MS = 100;
export const MAX_BACKOFF_MS = 5_000;
/** The next attempt needs some time to run: a retry that starts at the deadline only burns tokens. */
const MIN_ATTEMPT_MS = 50;

/** Delay before retrying a provider that failed (attempt `attempt + 1`), or undefined when waiting would cross the deadline. */
export function retryDelayMs(attempt: number, retryAfterMs: number | undefined, msUntilDeadline: number, random = Math.random): number | undefined {
  const backoff = Math.floor(random() * Math.min(MAX_BACKOFF_MS, BASE_BACKOFF_MS * 2 ** attempt));
  const delay = Math.max(backoff, retryAfterMs ?? 0);
  return delay + MIN_ATTEMPT_MS < msUntilDeadline ? delay : undefined;
}

/**
 * One call's memory of the providers that failed and of the Retry-After each asked for. A cooldown belongs to the
 * provider that asked for it: a fallback to a provider not tried yet goes out at once, while going back to a
 * failed one (a one-target route, or the route wrapped around) waits its backoff and its own Retry-After.
 */
export class ProviderCooldowns {
  private readonly until = new Map<string, number>();

  /** Records a failed attempt on `provider`, with the Retry-After it answered (if any). */
  failed(provider: string, retryAfterMs: number | undefined, now = Date.now()): void {
    const until = now + (retryAfterMs ?? 0);
    this.until.set(provider, Math.max(until, this.until.get(provider) ?? 0));
  }

  /** Delay before attempt `attempt + 1` on `provider`, or undefined when it could not start before the deadline. */
  delayBefore(provider: string, attempt: number, msUntilDeadline: number, now = Date.now(), random = Math.random): number | undefined {
    const until = this.until.get(provider);
    if (until === undefined) return MIN_ATTEMPT_MS < msUntilDeadline ? 0 : undefined;
    return retryDelayMs(attempt, Math.max(0, until - now), msUntilDeadline, random);
  }
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
