// A provider's limits across the whole worker pool (`providers[].limits`: rpm, tpm, calls at once), taken in one Lua call
// before each call to it (upstream-acquire.lua) and given back after: a concurrency lease renewed while the call runs,
// the token estimate settled from the usage. A provider without limits is never asked about: no Redis call.
import { randomUUID } from 'node:crypto';
import type { Cluster, Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { Endpoint } from '../config/schema.ts';
import type { RedisKeys } from '../queue/keys.ts';
import type { ProviderRuntime } from './dispatcher.ts';
import { acquireUpstream, defineUpstreamScripts } from './lease-scripts.ts';
import { admissionCommands } from '../admission/scripts.ts';
import { estimateTokens } from '../admission/tokens.ts';
import { DEFAULT_ESTIMATED_COMPLETION_TOKENS, oneSecondsWorth } from '../admission/limits.ts';

/** A job waiting for a free slot asks again at least this often (a slot is given back when a call ends, not at its lease's expiry). */
export const MAX_SLOT_WAIT_MS = 250;

export interface PoolLimitsOptions {
  redis: Redis | Cluster;
  keys: Pick<RedisKeys, 'upstreamKeys'>;
  providers: ReadonlyMap<string, ProviderRuntime>;
  /** Lease TTL: a killed worker's slots come back within it (renewed every third of it while a call runs). */
  leaseTtlMs: number;
  logger: Logger;
}

/** What a call to one deployment needs to be counted. */
export interface LimitedCall {
  jobId: string;
  endpoint: Endpoint;
  body: Record<string, unknown>;
  /** The admission's token estimate, when it made one (saves counting the prompt twice). */
  tokens: number | undefined;
}

export type LimitAnswer =
  | { granted: true; permit: LimitPermit | undefined }
  /** `paused`: a 429 paused the deployment; `busy`: every pool-wide slot is taken; `budget`: rpm / tpm allow it only later. */
  | { granted: false; reason: 'paused' | 'busy' | 'budget'; retryInMs: number };

export interface LimitPermit {
  /** Gives the slot back and settles the token estimate against what the upstream reported (undefined: it stands). */
  release(actualTokens: number | undefined): void;
}

export class PoolLimits {
  private readonly o: PoolLimitsOptions;

  constructor(options: PoolLimitsOptions) {
    this.o = options;
    // Before traffic (see defineUpstreamScripts): the acquire script here, the lease renewal and settlement of admission's.
    defineUpstreamScripts(options.redis);
    admissionCommands(options.redis);
  }

  /** Whether calls to this provider are counted pool-wide (memory only). */
  has(provider: string): boolean {
    return this.o.providers.get(provider)?.limits !== undefined;
  }

  /** Takes what one call to `provider`/`model` needs, or says how long to wait. Granted at once for a provider without limits. */
  async acquire(provider: string, model: string, call: LimitedCall): Promise<LimitAnswer> {
    const limits = this.o.providers.get(provider)?.limits;
    if (limits === undefined) return { granted: true, permit: undefined };
    const upstream = this.o.keys.upstreamKeys(provider);
    const budget = upstream.budget(limits.scope === 'deployment' ? model : undefined);
    const tokens = limits.tpm === undefined ? 0 : (call.tokens ?? estimateTokens(call.endpoint, call.body, { completionTokens: DEFAULT_ESTIMATED_COMPLETION_TOKENS }));
    const leaseId = `${call.jobId}:${randomUUID()}`;
    const answer = await acquireUpstream(
      this.o.redis,
      { pause: upstream.pause(model), requests: budget.requests, tokens: budget.tokens, leases: budget.leases },
      {
        requestIntervalMs: limits.rpm === undefined ? 0 : 60_000 / limits.rpm,
        requestBurst: limits.rpm === undefined ? 1 : oneSecondsWorth(limits.rpm),
        tokenIntervalMs: limits.tpm === undefined ? 0 : 60_000 / limits.tpm,
        tokenBurst: limits.tpm === undefined ? 1 : oneSecondsWorth(limits.tpm),
        tokens,
        slots: limits.maxConcurrency ?? 0,
        leaseId,
        leaseTtlMs: this.o.leaseTtlMs,
        maxWaitHintMs: MAX_SLOT_WAIT_MS,
      },
    );
    if (answer.kind !== 'granted') return { granted: false, reason: answer.kind, retryInMs: answer.ms };
    const lease = limits.maxConcurrency === undefined ? undefined : this.holdLease(budget.leases, leaseId);
    const tpm = limits.tpm;
    let released = false;
    return {
      granted: true,
      permit: {
        release: (actual) => {
          if (released) return;
          released = true;
          lease?.();
          if (tpm !== undefined && actual !== undefined && actual !== tokens) this.settle(budget.tokens, tpm, actual - tokens);
        },
      },
    };
  }

  /** Renews the lease every third of its TTL while the call runs; the returned function gives it back. */
  private holdLease(key: string, leaseId: string): () => void {
    const { redis, leaseTtlMs, logger } = this.o;
    const timer = setInterval(() => {
      admissionCommands(redis)
        .spillwayLeaseRenew(key, leaseId, String(leaseTtlMs))
        .catch((err: unknown) => logger.warn({ err: String(err) }, 'renewing an upstream concurrency lease failed'));
    }, Math.max(10, Math.floor(leaseTtlMs / 3)));
    timer.unref();
    return () => {
      clearInterval(timer);
      redis.zrem(key, leaseId).catch((err: unknown) => logger.warn({ err: String(err) }, 'releasing an upstream concurrency lease failed'));
    };
  }

  /** Corrects the token budget by what the call really used (settle.lua, shared with the tenants' budgets). */
  private settle(key: string, tpm: number, delta: number): void {
    admissionCommands(this.o.redis)
      .spillwaySettleTokens(key, String(60_000 / tpm), String(Math.ceil(delta)))
      .catch((err: unknown) => this.o.logger.warn({ err: String(err) }, 'settling an upstream token budget failed'));
  }
}
