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

/**
 * When a 429 carries no Retry-After: the time until the exhausted budget resets, from OpenAI's (and Azure's)
 * `x-ratelimit-reset-requests` / `-tokens` (durations such as `20ms`, `1s`, `6m0s`) or Anthropic's
 * `anthropic-ratelimit-*-reset` (RFC 3339 times). A budget whose `remaining` says 0 is the one that binds; without that
 * hint the longest reset is taken. Undefined when none is present or readable.
 */
export function parseRateLimitReset(headers: Record<string, string | string[] | undefined>, now = Date.now()): number | undefined {
  const found: Array<{ ms: number; exhausted: boolean }> = [];
  for (const kind of ['requests', 'tokens']) {
    const ms = resetValueMs(first(headers[`x-ratelimit-reset-${kind}`]), now);
    if (ms !== undefined) found.push({ ms, exhausted: first(headers[`x-ratelimit-remaining-${kind}`])?.trim() === '0' });
  }
  for (const kind of ['requests', 'tokens', 'input-tokens', 'output-tokens']) {
    const ms = resetValueMs(first(headers[`anthropic-ratelimit-${kind}-reset`]), now);
    if (ms !== undefined) found.push({ ms, exhausted: first(headers[`anthropic-ratelimit-${kind}-remaining`])?.trim() === '0' });
  }
  if (found.length === 0) return undefined;
  const binding = found.some((f) => f.exhausted) ? found.filter((f) => f.exhausted) : found;
  return Math.max(...binding.map((f) => f.ms));
}

/** `1m30.5s`, `20ms`, `2h`, plain seconds (`1.5`), or a date: ms from now; undefined when unreadable. */
function resetValueMs(value: string | undefined, now: number): number | undefined {
  if (value === undefined) return undefined;
  const text = value.trim();
  if (/^\d+(\.\d+)?$/.test(text)) return Math.ceil(Number(text) * 1000);
  if (/^(\d+(\.\d+)?(ms|h|m|s))+$/.test(text)) {
    let ms = 0;
    for (const [, amount, unit] of text.matchAll(/(\d+(?:\.\d+)?)(ms|h|m|s)/g)) ms += Number(amount) * UNIT_MS[unit!]!;
    return Math.ceil(ms);
  }
  const date = Date.parse(text);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

const UNIT_MS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 };

function first(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}
