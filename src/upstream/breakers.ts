// Pool-wide circuit breakers: one opossum breaker per deployment (provider + model) per worker, their openings and
// closings shared through Redis (a key with a TTL plus a pub/sub nudge), one half-open probe for the whole pool (a
// lease). A closed breaker is checked in memory only: never a Redis round trip on a healthy request's path.
import CircuitBreaker from 'opossum';
import type { Cluster, Redis } from 'ioredis';
import type { Logger } from 'pino';
import { z } from 'zod';
import type { BreakerKeys } from '../queue/keys.ts';
import type { UpstreamFailure } from './providers/openai/errors.ts';
import { acquireProbeLease, type ProbeLease } from './lease-scripts.ts';
import { NudgeChannel } from './nudges.ts';

export interface BreakerSettings {
  enabled: boolean;
  failureThreshold: number;
  windowMs: number;
  resetTimeoutMs: number;
}

/** `closed`: call. `probe`: call, as the pool's one half-open probe. `open`: skip this target; it may be tried after retryAfterMs. */
export type BreakerGate = { kind: 'closed' } | { kind: 'probe' } | { kind: 'open'; retryAfterMs: number };

/** What run() answers when the breaker opened between the gate and the call: skip the target like an open one. */
export const BREAKER_OPEN = Symbol('breaker open');

export interface BreakerRegistryOptions {
  /** Commands: the open keys, the probe lease, the nudges. Owned by the caller. */
  redis: Redis | Cluster;
  /** A subscriber connection (may also carry other channels: messages are told apart by channel). Owned by the caller. */
  subscriber: Redis | Cluster;
  keys: BreakerKeys;
  /** This worker's id: it ignores its own nudges, and names itself as the probe lease's holder. */
  instanceId: string;
  logger: Logger;
  /** A provider's breaker settings; undefined for a provider this worker does not know. */
  settings(provider: string): BreakerSettings | undefined;
  /** Deployments whose pool state is read at start and after a reconnect (the route targets of the config). */
  deployments: Iterable<{ provider: string; model: string }>;
}

const CLOSED: BreakerGate = { kind: 'closed' };
const PROBE: BreakerGate = { kind: 'probe' };
/** A probe cancelled by its client proved nothing: the breaker re-opens only this long before the next probe. */
const REPROBE_MS = 1_000;
/** Longest wait for the probe-lease script: a Redis that does not answer keeps the breaker open, not the job waiting. */
const LEASE_TIMEOUT_MS = 2_000;

const NudgeSchema = z.object({ op: z.enum(['open', 'close']), d: z.string().min(1), ms: z.number().int().nonnegative().optional(), from: z.string() });

/** `provider|model`: `|` cannot occur in a provider id, so the id splits back unambiguously. */
export function deploymentId(provider: string, model: string): string {
  return `${provider}|${model}`;
}

/**
 * Whether a failed attempt speaks against the deployment. A client's bad request (and any non-retryable 4xx: our
 * own key refused, an unknown model) never opens a breaker; neither does a 429 (flow control: the deployment is
 * alive, Retry-After handles it), the job's own deadline, or an answer over a size cap.
 */
export function countsAgainstDeployment(failure: UpstreamFailure): boolean {
  if (failure.kind === 'status') return failure.status >= 500 || failure.status === 408;
  if (failure.kind === 'deadline' || failure.kind === 'too_large' || failure.kind === 'refused') return false;
  return failure.retryable;
}

class AttemptFailed extends Error {
  readonly attempt: unknown;
  readonly failure: UpstreamFailure;
  constructor(attempt: unknown, failure: UpstreamFailure) {
    super(failure.detail);
    this.attempt = attempt;
    this.failure = failure;
  }
}

type Breaker = CircuitBreaker<[() => Promise<unknown>], unknown>;

interface Entry {
  readonly id: string;
  readonly settings: BreakerSettings;
  readonly breaker: Breaker;
  /** The options object opossum reads its resetTimeout from when it opens (it keeps the object it was given). */
  readonly options: CircuitBreaker.Options;
  /** Failure times within windowMs, while closed. */
  failures: number[];
  /** Until when the pool holds the breaker open (epoch ms); may outlast opossum's own timer after an extension. */
  openUntil: number;
  /** Another worker holds the probe lease until then. */
  probeWaitUntil: number;
  /** This worker holds the probe lease. */
  probing: boolean;
  /** The state change comes from the pool: apply it, do not announce it back. */
  syncing: boolean;
  /** How long the next opening lasts, when not resetTimeoutMs. */
  nextOpenMs: number | undefined;
}

export class BreakerRegistry {
  private readonly o: BreakerRegistryOptions;
  private readonly entries = new Map<string, Entry>();
  private readonly known: string[];
  private readonly nudges: NudgeChannel<z.infer<typeof NudgeSchema>>;
  private closed = false;

  constructor(options: BreakerRegistryOptions) {
    this.o = options;
    this.known = [...new Set([...options.deployments].map((d) => deploymentId(d.provider, d.model)))];
    this.nudges = new NudgeChannel({
      subscriber: options.subscriber,
      channel: options.keys.channel,
      schema: NudgeSchema,
      instanceId: options.instanceId,
      logger: options.logger,
      what: 'circuit breaker',
      onNudge: (nudge) => (nudge.op === 'open' ? this.applyOpen(nudge.d, nudge.ms ?? 0, 'pool') : this.applyClose(nudge.d)),
      resync: () => this.resync(),
    });
  }

  /** Subscribes to the nudges and reads the pool's open breakers (again after every reconnect). */
  start(): Promise<void> {
    return this.nudges.start();
  }

  /** Idempotent. Leaves the connections to their owner. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.nudges.close();
    for (const entry of this.entries.values()) entry.breaker.shutdown();
    this.entries.clear();
  }

  /** The in-memory state, no I/O: `closed` for a deployment never seen failing. */
  state(provider: string, model: string): 'closed' | 'open' | 'half-open' {
    const entry = this.entries.get(deploymentId(provider, model));
    if (entry === undefined || entry.breaker.closed) return 'closed';
    return entry.breaker.halfOpen && this.openGate(entry) === undefined ? 'half-open' : 'open';
  }

  /** True when the deployment's breaker is closed here: the call needs no further check (memory only, no I/O). */
  isClosed(provider: string, model: string): boolean {
    const entry = this.entries.get(deploymentId(provider, model));
    return entry === undefined || entry.breaker.closed;
  }

  /**
   * May this deployment be called now? Closed: answered from memory at once. Half-open: one Redis script decides
   * whether this worker sends the pool's one probe.
   */
  async admit(provider: string, model: string): Promise<BreakerGate> {
    const id = deploymentId(provider, model);
    const entry = this.entries.get(id);
    if (entry === undefined || entry.breaker.closed) return CLOSED;
    const open = this.openGate(entry);
    if (open !== undefined) return open;
    entry.probing = true; // before the await: a second local request must not ask for the lease too
    let lease: ProbeLease;
    try {
      // The lease lasts resetTimeoutMs: a probe that never reports (its worker died) frees it by itself.
      const asked = acquireProbeLease(this.o.redis, this.o.keys.open(id), this.o.keys.probe(id), entry.settings.resetTimeoutMs, this.o.instanceId);
      lease = await withTimeout(asked, LEASE_TIMEOUT_MS);
    } catch (err) {
      entry.probing = false;
      entry.probeWaitUntil = Date.now() + REPROBE_MS;
      this.o.logger.warn({ err: String(err), deployment: id }, 'circuit breaker probe lease unavailable');
      return { kind: 'open', retryAfterMs: REPROBE_MS };
    }
    if (lease.kind === 'probe') {
      if (entry.breaker.closed) {
        // Closed by the pool while we asked: no probe needed, and the lease goes back at once.
        entry.probing = false;
        void this.o.redis.del(this.o.keys.probe(id)).catch(() => undefined);
        return CLOSED;
      }
      return PROBE;
    }
    entry.probing = false;
    if (lease.kind === 'open') this.applyOpen(id, lease.ms, 'pool');
    else entry.probeWaitUntil = Date.now() + lease.ms;
    return { kind: 'open', retryAfterMs: lease.ms };
  }

  /**
   * Runs one attempt through the deployment's breaker. `failureOf` says whether the attempt failed (a failed
   * attempt is returned, not thrown); a failure that speaks against the deployment counts toward opening it.
   */
  async run<T>(provider: string, model: string, attempt: () => Promise<T>, failureOf: (outcome: T) => UpstreamFailure | undefined): Promise<T | typeof BREAKER_OPEN> {
    const entry = this.entry(deploymentId(provider, model));
    if (entry === undefined) return attempt();
    try {
      return (await entry.breaker.fire(async () => {
        const outcome = await attempt();
        const failure = failureOf(outcome);
        if (failure !== undefined) throw new AttemptFailed(outcome, failure);
        return outcome;
      })) as T;
    } catch (err) {
      if (err instanceof AttemptFailed) return err.attempt as T;
      if ((err as { code?: unknown }).code === 'EOPENBREAKER') {
        if (entry.probing) {
          entry.probing = false;
          void this.o.redis.del(this.o.keys.probe(entry.id)).catch(() => undefined);
        }
        return BREAKER_OPEN;
      }
      throw err;
    }
  }

  /** Opens (or keeps open) a deployment's breaker in every worker for `ms`: the health check's verdict. */
  openPoolWide(provider: string, model: string, ms: number, reason: string): void {
    const entry = this.entry(deploymentId(provider, model));
    if (entry === undefined) return;
    this.o.logger.warn({ deployment: entry.id, reason, forMs: ms }, 'circuit breaker held open by the health check');
    if (entry.breaker.opened) {
      entry.openUntil = Math.max(entry.openUntil, Date.now() + ms);
      this.announce(entry, 'open', ms);
      return;
    }
    entry.nextOpenMs = ms;
    entry.breaker.open();
  }

  /** Undefined when a call may be attempted (half-open, no probe running here or elsewhere); else how long to wait. */
  private openGate(entry: Entry): BreakerGate | undefined {
    const now = Date.now();
    const until = Math.max(entry.openUntil, entry.probeWaitUntil);
    if (until > now) return { kind: 'open', retryAfterMs: until - now };
    // Still open: opossum's half-open timer fires a moment after openUntil. Half-open with a probe of ours in flight.
    if (entry.breaker.opened || entry.probing || !entry.breaker.pendingClose) return { kind: 'open', retryAfterMs: REPROBE_MS };
    return undefined;
  }

  private entry(id: string): Entry | undefined {
    const existing = this.entries.get(id);
    if (existing !== undefined) return existing;
    const settings = this.o.settings(id.slice(0, id.indexOf('|')));
    if (settings === undefined || !settings.enabled || this.closed) return undefined;
    const entry = this.createEntry(id, settings);
    this.entries.set(id, entry);
    return entry;
  }

  private createEntry(id: string, settings: BreakerSettings): Entry {
    const options: CircuitBreaker.Options = {
      name: id,
      // Timeouts belong to the call loop (head, idle, deadline); they reach opossum as failed attempts.
      timeout: false,
      resetTimeout: settings.resetTimeoutMs,
      // opossum trips on an error percentage; ours is a count in a window (failureThreshold in windowMs), counted
      // below, so its own percentage rule is switched off (a rate can never exceed 100).
      errorThresholdPercentage: 100,
      rollingCountTimeout: settings.windowMs,
      rollingCountBuckets: 10,
      rollingPercentilesEnabled: false,
      enableSnapshots: false,
      errorFilter: (err: unknown) => !this.counts(entry, err),
    };
    const breaker: Breaker = new CircuitBreaker((attempt: () => Promise<unknown>) => attempt(), options);
    const entry: Entry = { id, settings, breaker, options, failures: [], openUntil: 0, probeWaitUntil: 0, probing: false, syncing: false, nextOpenMs: undefined };
    breaker.on('failure', () => {
      // Half-open: opossum re-opens by itself. Open: a call that started before the opening.
      if (!breaker.closed) return;
      const now = Date.now();
      entry.failures.push(now);
      while (entry.failures.length > 0 && entry.failures[0]! <= now - settings.windowMs) entry.failures.shift();
      if (entry.failures.length >= settings.failureThreshold) breaker.open();
    });
    // Prepended: runs before opossum's own 'open' listener, which starts the half-open timer from options.resetTimeout.
    breaker.prependListener('open', () => {
      const ms = entry.nextOpenMs ?? settings.resetTimeoutMs;
      entry.nextOpenMs = undefined;
      options.resetTimeout = ms;
      entry.openUntil = Date.now() + ms;
      entry.failures = [];
      entry.probing = false;
      entry.probeWaitUntil = 0;
      if (!entry.syncing) {
        this.o.logger.warn({ deployment: id, forMs: ms, source: 'local' }, 'circuit breaker opened');
        this.announce(entry, 'open', ms);
      }
    });
    breaker.on('close', () => {
      entry.failures = [];
      entry.openUntil = 0;
      entry.probeWaitUntil = 0;
      entry.probing = false;
      if (!entry.syncing) {
        this.o.logger.info({ deployment: id, source: 'local' }, 'circuit breaker closed');
        this.announce(entry, 'close');
      }
    });
    return entry;
  }

  /** opossum's errorFilter, inverted: does this rejection of an attempt count as a failure? */
  private counts(entry: Entry, err: unknown): boolean {
    // A probe cut short (its job's deadline, or anything thrown: the call cancelled because the client left or the
    // worker is closing) gave no verdict on the deployment. It must not close the breaker for the pool: the breaker
    // re-opens briefly and another probe follows. Outside a probe such an end is simply not counted.
    const cutShort = !(err instanceof AttemptFailed) || err.failure.kind === 'deadline';
    if (!cutShort) return countsAgainstDeployment(err.failure);
    if (entry.breaker.halfOpen) {
      entry.nextOpenMs = Math.min(REPROBE_MS, entry.settings.resetTimeoutMs);
      return true;
    }
    return false;
  }

  /** Tells the pool: the key first (read by probes and by workers that reconnect), then the nudge. */
  private announce(entry: Entry, op: 'open' | 'close', ms?: number): void {
    const { redis, keys, instanceId, logger } = this.o;
    const nudge = JSON.stringify({ op, d: entry.id, ms, from: instanceId });
    const writes: Array<Promise<unknown>> =
      op === 'open' ? [redis.set(keys.open(entry.id), instanceId, 'PX', ms ?? entry.settings.resetTimeoutMs), redis.del(keys.probe(entry.id))] : [redis.del(keys.open(entry.id), keys.probe(entry.id))];
    writes.push(redis.publish(keys.channel, nudge));
    Promise.all(writes).catch((err: unknown) => logger.warn({ err: String(err), deployment: entry.id, op }, 'circuit breaker state not shared'));
  }

  private applyOpen(id: string, ms: number, source: string): void {
    const entry = this.entry(id);
    if (entry === undefined || ms <= 0) return;
    if (entry.breaker.opened) {
      entry.openUntil = Math.max(entry.openUntil, Date.now() + ms);
      return;
    }
    entry.syncing = true;
    entry.nextOpenMs = ms;
    try {
      entry.breaker.open();
    } finally {
      entry.syncing = false;
    }
    this.o.logger.warn({ deployment: id, forMs: ms, source }, 'circuit breaker opened');
  }

  private applyClose(id: string): void {
    const entry = this.entries.get(id);
    if (entry === undefined) return;
    entry.failures = [];
    entry.openUntil = 0;
    entry.probeWaitUntil = 0;
    if (entry.breaker.closed) return;
    entry.syncing = true;
    try {
      entry.breaker.close();
    } finally {
      entry.syncing = false;
    }
    this.o.logger.info({ deployment: id, source: 'pool' }, 'circuit breaker closed');
  }

  /** Nudges sent while the subscriber was reconnecting are lost: the keys tell what is open now. */
  private async resync(): Promise<void> {
    const ids = [...new Set([...this.known, ...this.entries.keys()])];
    if (ids.length === 0 || this.closed) return;
    const pipeline = this.o.redis.pipeline();
    for (const id of ids) pipeline.pttl(this.o.keys.open(id));
    const results = (await pipeline.exec()) ?? [];
    results.forEach(([err, ttl], i) => {
      if (err === null && typeof ttl === 'number' && ttl > 0) this.applyOpen(ids[i]!, ttl, 'pool');
    });
  }
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
