// maxConcurrent across every worker replica: a job holds one of its tenant's slots as a lease with a TTL in Redis
// (lease-acquire.lua / lease-renew.lua), renewed while it runs. Never a per-process counter; never a lease without expiry.
import type { RedisKeys } from '../queue/keys.ts';
import { admissionCommands, integers, type AdmissionRedis } from './scripts.ts';

/** Longest retry hint an acquire returns: a job waiting for a slot looks again at least this often. */
export const DEFAULT_MAX_RETRY_MS = 1_000;

export type LeaseAnswer = { granted: true } | { granted: false; retryInMs: number };

/**
 * Takes a slot for `jobId` (idempotent: a job that holds one keeps it and its lease is extended). Expired leases are
 * purged first, so slots of a killed worker return within `ttlMs`. Refused: retry in `retryInMs` (when the earliest
 * lease expires, at most `maxRetryMs`; a holder that releases early frees its slot sooner).
 */
export async function acquireLease(
  redis: AdmissionRedis,
  keys: RedisKeys,
  tenantId: string,
  jobId: string,
  max: number,
  ttlMs: number,
  maxRetryMs = DEFAULT_MAX_RETRY_MS,
): Promise<LeaseAnswer> {
  const reply = await admissionCommands(redis).spillwayLeaseAcquire(
    keys.tenantKeys(tenantId).leases,
    jobId,
    String(max),
    String(Math.max(1, Math.ceil(ttlMs))),
    String(Math.max(1, Math.ceil(maxRetryMs))),
  );
  const [granted, retryInMs] = integers(reply, 2, 'lease-acquire.lua') as [number, number];
  return granted === 1 ? { granted: true } : { granted: false, retryInMs };
}

/** Extends the lease by `ttlMs` from now. False: it had expired or was released (its slot may be another job's now). */
export async function renewLease(redis: AdmissionRedis, keys: RedisKeys, tenantId: string, jobId: string, ttlMs: number): Promise<boolean> {
  const reply = await admissionCommands(redis).spillwayLeaseRenew(keys.tenantKeys(tenantId).leases, jobId, String(Math.max(1, Math.ceil(ttlMs))));
  return reply === 1;
}

/** Gives the slot back (one ZREM: a single-key, single-command change needs no script). True if it was held. */
export async function releaseLease(redis: AdmissionRedis, keys: RedisKeys, tenantId: string, jobId: string): Promise<boolean> {
  return (await redis.zrem(keys.tenantKeys(tenantId).leases, jobId)) === 1;
}

export interface LeaseHolder {
  /** False once a renewal found the lease gone (expired while the process stalled): the job runs on, uncounted. */
  readonly held: boolean;
  release(): Promise<void>;
}

/**
 * Holds a granted lease for the length of a job: renews it every ttlMs / 3 and releases it once. A renewal that
 * fails (Redis briefly down) is tried again at the next tick; the lease's TTL is the safety net either way.
 */
export function holdLease(redis: AdmissionRedis, keys: RedisKeys, tenantId: string, jobId: string, ttlMs: number): LeaseHolder {
  let held = true;
  let released: Promise<void> | undefined;
  const timer = setInterval(() => {
    renewLease(redis, keys, tenantId, jobId, ttlMs).then(
      (ok) => {
        if (!ok) held = false;
      },
      () => undefined,
    );
  }, Math.max(10, Math.floor(ttlMs / 3)));
  timer.unref();
  return {
    get held() {
      return held;
    },
    release() {
      clearInterval(timer);
      released ??= releaseLease(redis, keys, tenantId, jobId).then(
        () => undefined,
        () => undefined,
      );
      return released;
    },
  };
}
