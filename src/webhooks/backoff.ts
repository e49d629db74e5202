// The wait between webhook delivery attempts: exponential with jitter, capped; the defaults spread eleven attempts
// over about a day. Pure: the random source is a parameter.
export interface BackoffPolicy {
  initialMs: number;
  multiplier: number;
  maxMs: number;
  /** Fraction of the wait added or taken away at random (0.2: ±20%), so failed receivers are not hit in waves. */
  jitter: number;
}

/** Wait before the next attempt once `attemptsMade` attempts have failed (1 after the first). */
export function webhookBackoffMs(attemptsMade: number, policy: BackoffPolicy, random: () => number = Math.random): number {
  const exponent = Math.max(0, attemptsMade - 1);
  const base = Math.min(policy.maxMs, policy.initialMs * policy.multiplier ** exponent);
  const spread = base * policy.jitter * (2 * random() - 1);
  return Math.max(0, Math.round(base + spread));
}
