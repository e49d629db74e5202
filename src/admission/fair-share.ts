// Fair share between tenants as BullMQ job priorities: the priority class picks a third of BullMQ's range, the tenant's
// virtual finish time (Virtual Clock, kept by admit.lua) picks the place inside it. Pure: never touches Redis.
import type { PriorityClass } from '../config/schema.ts';

/** BullMQ's largest job priority (2^21 - 1); 1 runs first, 0 means "no priority" and would jump every class. */
export const BULLMQ_PRIORITY_LIMIT = 2 ** 21 - 1;

/** Priorities per class: high takes 1..699,050, normal the next third, batch the last. */
export const CLASS_SPAN = Math.floor(BULLMQ_PRIORITY_LIMIT / 3);

const CLASS_INDEX: Record<PriorityClass, number> = { high: 0, normal: 1, batch: 2 };

/** Lead per priority step, ms: the class's span of 699,050 steps covers 11.6 minutes of lead, beyond any deadline. */
export const PRIORITY_RESOLUTION_MS = 1;

/**
 * Virtual time one job of a weight-1 tenant costs, ms: best 1000 / (jobs per second the workers drain), which
 * fairShareUnitMs() computes from the measured drain rate. Then a tenant that enqueues faster than the queue drains
 * runs ahead (its lead grows) and one that does not stays at the front. Too small a unit forgets a flood that is
 * slower than 1 job per unit; too large remembers uncontended use. This default assumes ~10 jobs a second.
 */
export const DEFAULT_FAIR_SHARE_UNIT_MS = 100;
const MIN_UNIT_MS = 1;
const MAX_UNIT_MS = 10_000;

export interface FairShareOptions {
  /** Virtual time one job of a weight-1 tenant costs, ms; default DEFAULT_FAIR_SHARE_UNIT_MS. See fairShareUnitMs. */
  unitMs?: number;
}

/** The unit for the queue's measured throughput (jobs/s, readDrainRates): 1000 / rate, within 1 ms..10 s. */
export function fairShareUnitMs(drainRate: number): number {
  if (!(drainRate > 0)) return DEFAULT_FAIR_SHARE_UNIT_MS;
  return Math.min(MAX_UNIT_MS, Math.max(MIN_UNIT_MS, 1000 / drainRate));
}

/** Virtual ms a job of a tenant with this weight adds to its finish time (ARGV of admit.lua). */
export function fairShareIncrementMs(weight: number, unitMs = DEFAULT_FAIR_SHARE_UNIT_MS): number {
  return unitMs / weight;
}

/** The furthest a virtual finish time may run ahead (admit.lua caps it there): that lead maps to the class's last priority. */
export const FAIR_SHARE_CAP_MS = CLASS_SPAN * PRIORITY_RESOLUTION_MS;

/** The class's first priority minus one: `base + 1` is the earliest place a job of that class can take. */
export function classBasePriority(priorityClass: PriorityClass): number {
  return CLASS_INDEX[priorityClass] * CLASS_SPAN;
}

/**
 * A job's BullMQ priority from its class and its tenant's lead: lead = F - start, where the tenant's virtual finish
 * time is F = max(start, F_tenant) + unitMs / weight (admit.lua, Virtual Clock). A tenant that floods 2,000 jobs
 * gets leads of 1..2,000 units, so its k-th job sits k units back; another tenant's first job starts one unit back
 * again and its k-th job runs next to the flood's k-th, not after all 2,000. Relative to the job's start (not
 * absolute F) and capped at FAIR_SHARE_CAP_MS, priorities stay inside the class for ever: the re-basing is "minus
 * now". Within the class, 1 ms of lead is one step. `leadMs` undefined (fair share off): the class's first place.
 */
export function fairSharePriority(priorityClass: PriorityClass, leadMs: number | undefined): number {
  const steps = leadMs === undefined ? 1 : Math.ceil(leadMs / PRIORITY_RESOLUTION_MS);
  return classBasePriority(priorityClass) + Math.min(CLASS_SPAN, Math.max(1, steps));
}
