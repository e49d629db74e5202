// RecentCancels: the worker's memory of job ids cancelled before it held them. Entries expire after the ttl;
// time is injected, so nothing here waits.
import { describe, expect, it } from 'vitest';
import { RecentCancels } from '../../src/queue/cancel.ts';

describe('RecentCancels', () => {
  it('remembers a cancelled id until its ttl has passed', () => {
    const cancels = new RecentCancels(1_000);
    cancels.add('job-1', 10_000);
    expect(cancels.has('job-1', 10_000)).toBe(true);
    expect(cancels.has('job-1', 10_999)).toBe(true);
    expect(cancels.has('job-1', 11_000)).toBe(false);
    expect(cancels.has('job-1', 50_000)).toBe(false);
  });

  it('knows nothing of ids never added', () => {
    const cancels = new RecentCancels(1_000);
    cancels.add('job-1', 0);
    expect(cancels.has('job-2', 0)).toBe(false);
  });

  it('keeps a default ttl of one minute', () => {
    const cancels = new RecentCancels();
    cancels.add('job-1', 0);
    expect(cancels.has('job-1', 59_999)).toBe(true);
    expect(cancels.has('job-1', 60_000)).toBe(false);
  });

  it('each id expires on its own schedule', () => {
    const cancels = new RecentCancels(1_000);
    cancels.add('early', 0);
    cancels.add('late', 600);
    expect([cancels.has('early', 999), cancels.has('late', 999)]).toEqual([true, true]);
    expect([cancels.has('early', 1_000), cancels.has('late', 1_000)]).toEqual([false, true]);
    expect(cancels.has('late', 1_600)).toBe(false);
  });

  it('adding an id again extends its life', () => {
    const cancels = new RecentCancels(1_000);
    cancels.add('job-1', 0);
    cancels.add('other', 500);
    cancels.add('job-1', 900);
    expect(cancels.has('job-1', 1_500)).toBe(true);
    expect(cancels.has('job-1', 1_900)).toBe(false);
  });

  it('pruning expired entries on add does not forget live ones', () => {
    const cancels = new RecentCancels(1_000);
    for (let i = 0; i < 100; i++) cancels.add(`old-${i}`, i);
    cancels.add('fresh', 5_000);
    expect(cancels.has('fresh', 5_500)).toBe(true);
    expect(cancels.has('old-99', 5_500)).toBe(false);
  });
});
