// Fair-share priorities: classes partition BullMQ's priority range (a class always orders before fair share), the
// tenant's lead orders jobs inside a class, and no lead, however large, leaves the class or BullMQ's range. Pure.
import { describe, expect, it } from 'vitest';
import {
  BULLMQ_PRIORITY_LIMIT,
  CLASS_SPAN,
  DEFAULT_FAIR_SHARE_UNIT_MS,
  FAIR_SHARE_CAP_MS,
  fairShareUnitMs,
  fairShareIncrementMs,
  fairSharePriority,
} from '../../src/admission/fair-share.ts';

const unit = DEFAULT_FAIR_SHARE_UNIT_MS;

describe('fairSharePriority', () => {
  it('every high job orders before every normal one, and every normal before every batch, whatever the leads', () => {
    const extremes = [0, unit, 1e6 * unit, Number.MAX_SAFE_INTEGER];
    const high = extremes.map((lead) => fairSharePriority('high', lead));
    const normal = extremes.map((lead) => fairSharePriority('normal', lead));
    const batch = extremes.map((lead) => fairSharePriority('batch', lead));
    expect(Math.max(...high)).toBeLessThan(Math.min(...normal));
    expect(Math.max(...normal)).toBeLessThan(Math.min(...batch));
  });

  it("stays within BullMQ's range 1..2,097,151", () => {
    expect(fairSharePriority('high', 0)).toBe(1);
    expect(fairSharePriority('high', undefined)).toBe(1);
    expect(fairSharePriority('batch', Number.MAX_SAFE_INTEGER)).toBeLessThanOrEqual(BULLMQ_PRIORITY_LIMIT);
    expect(fairSharePriority('batch', Number.MAX_SAFE_INTEGER)).toBe(3 * CLASS_SPAN);
  });

  it('a larger lead never runs earlier, and each further job of a weight-1 tenant moves it back', () => {
    let previous = 0;
    for (let job = 1; job <= 2_000; job++) {
      const priority = fairSharePriority('normal', job * fairShareIncrementMs(1));
      expect(priority).toBeGreaterThan(previous);
      previous = priority;
    }
  });

  it("another tenant's k-th job ranks with a flooding tenant's k-th, not behind all 2,000", () => {
    const floodLast = fairSharePriority('normal', 2_000 * fairShareIncrementMs(1));
    const otherTwentieth = fairSharePriority('normal', 20 * fairShareIncrementMs(1));
    expect(otherTwentieth).toBeLessThan(floodLast);
    expect(otherTwentieth).toBeLessThan(fairSharePriority('normal', 21 * fairShareIncrementMs(1)));
  });

  it('weight 2 advances half as fast: its 2k-th job ranks with a weight-1 tenant’s k-th', () => {
    expect(fairSharePriority('normal', 20 * fairShareIncrementMs(2))).toBe(fairSharePriority('normal', 10 * fairShareIncrementMs(1)));
  });

  it('the cap kept by the script maps exactly to the last priority of the class', () => {
    expect(fairSharePriority('normal', FAIR_SHARE_CAP_MS)).toBe(2 * CLASS_SPAN);
    expect(fairSharePriority('normal', FAIR_SHARE_CAP_MS - fairShareIncrementMs(1))).toBeLessThan(2 * CLASS_SPAN);
  });

  it('the unit follows the measured drain rate (1000 / jobs per second), bounded, with a default when none is measured', () => {
    expect(fairShareUnitMs(50)).toBe(20);
    expect(fairShareUnitMs(1e6)).toBe(1);
    expect(fairShareUnitMs(0.001)).toBe(10_000);
    expect(fairShareUnitMs(0)).toBe(DEFAULT_FAIR_SHARE_UNIT_MS);
  });
});
