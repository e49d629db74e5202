// Load-shedding arithmetic: the estimated wait is the line ahead ÷ the drain rate, and a request is shed only when
// that exceeds its queue-wait limit and a drain has been measured at all. Pure.
import { describe, expect, it } from 'vitest';
import { estimatedWaitMs, shedRetryAfterMs, shouldShed } from '../../src/admission/shed.ts';

describe('load shedding', () => {
  it('the estimated wait is the jobs ahead divided by the drain rate', () => {
    expect(estimatedWaitMs(1, 10)).toBe(0);
    expect(estimatedWaitMs(101, 10)).toBe(10_000);
  });

  it('sheds when the estimated wait is beyond the limit, not at it', () => {
    expect(shouldShed(101, 10, 10_000)).toBe(false);
    expect(shouldShed(102, 10, 10_000)).toBe(true);
  });

  it('never sheds without a measured drain (workers starting from zero must see the queue grow)', () => {
    expect(shouldShed(1_000_000, 0, 1_000)).toBe(false);
    expect(shouldShed(1_000_000, Number.NaN, 1_000)).toBe(false);
  });

  it('Retry-After for a shed request is when the line will have drained enough, at least a second', () => {
    expect(shedRetryAfterMs(1_001, 10, 60_000)).toBe(40_000);
    expect(shedRetryAfterMs(102, 10, 10_000)).toBe(1_000);
  });
});
