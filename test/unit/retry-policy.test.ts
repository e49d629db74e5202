// Retry timing: exponential backoff with full jitter (the random source is injected), capped; never shorter than
// the provider's Retry-After, which delays only calls to that provider; no retry when it would cross the deadline.
import { describe, expect, it } from 'vitest';
import { BASE_BACKOFF_MS, MAX_BACKOFF_MS, ProviderCooldowns, parseRetryAfter, retryDelayMs } from '../../src/upstream/retry-policy.ts';

const FAR = 3_600_000; // a deadline an hour away
const top = () => 1; // the upper edge of the jitter range
const bottom = () => 0;

describe('retryDelayMs', () => {
  it('doubles the backoff ceiling with each attempt', () => {
    const delays = [0, 1, 2, 3].map((attempt) => retryDelayMs(attempt, undefined, FAR, top));
    expect(delays).toEqual([BASE_BACKOFF_MS, BASE_BACKOFF_MS * 2, BASE_BACKOFF_MS * 4, BASE_BACKOFF_MS * 8]);
  });

  it('never exceeds the cap, however many attempts', () => {
    for (const attempt of [6, 10, 30, 100, 2000]) {
      expect(retryDelayMs(attempt, undefined, FAR, top)).toBe(MAX_BACKOFF_MS);
    }
  });

  it('jitters over the whole range from zero to the ceiling', () => {
    expect(retryDelayMs(3, undefined, FAR, bottom)).toBe(0);
    expect(retryDelayMs(3, undefined, FAR, () => 0.5)).toBe(BASE_BACKOFF_MS * 4);
    for (let i = 0; i < 200; i++) {
      const delay = retryDelayMs(4, undefined, FAR);
      expect(delay).toBeGreaterThanOrEqual(0);
      expect(delay).toBeLessThanOrEqual(BASE_BACKOFF_MS * 16);
    }
  });

  it('waits at least the provider Retry-After, even above the backoff cap', () => {
    expect(retryDelayMs(0, 3_000, FAR, bottom)).toBe(3_000);
    expect(retryDelayMs(0, 30_000, FAR, top)).toBe(30_000);
    // A backoff longer than Retry-After wins.
    expect(retryDelayMs(5, 10, FAR, top)).toBe(BASE_BACKOFF_MS * 32);
  });

  it('gives up (undefined) when waiting would reach the deadline', () => {
    expect(retryDelayMs(0, 3_000, 3_000, bottom)).toBeUndefined();
    expect(retryDelayMs(0, 3_000, 2_000, bottom)).toBeUndefined();
    expect(retryDelayMs(0, undefined, 0, bottom)).toBeUndefined();
    expect(retryDelayMs(0, undefined, -5_000, bottom)).toBeUndefined();
  });

  it('leaves the next attempt some time to run before the deadline', () => {
    // Waiting exactly until just before the deadline is useless: the next call would start with no time left.
    expect(retryDelayMs(0, 1_000, 1_001, bottom)).toBeUndefined();
    expect(retryDelayMs(0, 1_000, 2_000, bottom)).toBe(1_000);
  });
});

describe('ProviderCooldowns', () => {
  const now = 1_000_000;

  it('sends a call to a provider that has not failed at once, whatever another provider asked for', () => {
    const cooldowns = new ProviderCooldowns();
    cooldowns.failed('a', 3_000, now);
    expect(cooldowns.delayBefore('b', 0, FAR, now, top)).toBe(0);
  });

  it("honours a provider's own Retry-After when the next call goes back to it", () => {
    const cooldowns = new ProviderCooldowns();
    cooldowns.failed('a', 3_000, now);
    expect(cooldowns.delayBefore('a', 0, FAR, now, bottom)).toBe(3_000);
    // Time spent meanwhile (on another target) counts towards the wait.
    expect(cooldowns.delayBefore('a', 1, FAR, now + 2_000, bottom)).toBe(1_000);
    expect(cooldowns.delayBefore('a', 1, FAR, now + 5_000, bottom)).toBe(0);
  });

  it('backs off before going back to a provider that failed without a Retry-After', () => {
    const cooldowns = new ProviderCooldowns();
    cooldowns.failed('a', undefined, now);
    expect(cooldowns.delayBefore('a', 2, FAR, now, top)).toBe(BASE_BACKOFF_MS * 4);
  });

  it('keeps the later of two cooldowns of one provider', () => {
    const cooldowns = new ProviderCooldowns();
    cooldowns.failed('a', 10_000, now);
    cooldowns.failed('a', 1_000, now + 1_000);
    expect(cooldowns.delayBefore('a', 0, FAR, now + 1_000, bottom)).toBe(9_000);
  });

  it('gives up (undefined) when the provider cannot be called before the deadline', () => {
    const cooldowns = new ProviderCooldowns();
    cooldowns.failed('a', 30_000, now);
    expect(cooldowns.delayBefore('a', 0, 10_000, now, bottom)).toBeUndefined();
    expect(cooldowns.delayBefore('b', 0, 10_000, now, bottom)).toBe(0);
    expect(cooldowns.delayBefore('b', 0, 10, now, bottom)).toBeUndefined();
  });
});

describe('parseRetryAfter', () => {
  const now = Date.UTC(2025, 0, 1, 12, 0, 0);

  it('reads Retry-After in seconds, including fractions', () => {
    expect(parseRetryAfter({ 'retry-after': '2' }, now)).toBe(2_000);
    expect(parseRetryAfter({ 'retry-after': '0' }, now)).toBe(0);
    expect(parseRetryAfter({ 'retry-after': '1.5' }, now)).toBe(1_500);
  });

  it('reads Retry-After as an HTTP date, relative to now', () => {
    expect(parseRetryAfter({ 'retry-after': new Date(now + 7_000).toUTCString() }, now)).toBe(7_000);
  });

  it('a date in the past means no wait, never a negative one', () => {
    expect(parseRetryAfter({ 'retry-after': new Date(now - 60_000).toUTCString() }, now)).toBe(0);
  });

  it('prefers OpenAI retry-after-ms over Retry-After', () => {
    expect(parseRetryAfter({ 'retry-after-ms': '250', 'retry-after': '9' }, now)).toBe(250);
    expect(parseRetryAfter({ 'retry-after-ms': '12.2' }, now)).toBe(13);
  });

  it('falls back to Retry-After when retry-after-ms is unusable', () => {
    expect(parseRetryAfter({ 'retry-after-ms': 'soon', 'retry-after': '3' }, now)).toBe(3_000);
  });

  it('takes the first of repeated headers', () => {
    expect(parseRetryAfter({ 'retry-after': ['4', '8'] }, now)).toBe(4_000);
  });

  it('is undefined when absent or not a number or date', () => {
    expect(parseRetryAfter({}, now)).toBeUndefined();
    expect(parseRetryAfter({ 'retry-after': 'later' }, now)).toBeUndefined();
    expect(parseRetryAfter({ 'retry-after': '' }, now)).toBeUndefined();
    expect(parseRetryAfter({ 'retry-after-ms': undefined }, now)).toBeUndefined();
  });
});
