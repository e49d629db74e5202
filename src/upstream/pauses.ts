// Pool-wide pauses of a deployment that answered 429 with Retry-After (or x-ratelimit-reset-*): a key with a TTL plus a
// pub/sub nudge, held in memory by every worker, so jobs for it wait instead of each worker hammering it. Checking a
// pause is a memory lookup: never a Redis round trip on a request's path.
import type { Cluster, Redis } from 'ioredis';
import type { Logger } from 'pino';
import { z } from 'zod';
import type { RedisKeys } from '../queue/keys.ts';
import { deploymentId } from './breakers.ts';
import { NudgeChannel } from './nudges.ts';

/** A provider asking for longer than this (a daily quota's reset) still gets only this pause at a time. */
export const MAX_PAUSE_MS = 10 * 60_000;

export interface DeploymentPausesOptions {
  /** Commands: the pause keys and nudges. Owned by the caller. */
  redis: Redis | Cluster;
  /** A subscriber connection (it may carry other channels: messages are told apart by channel). Owned by the caller. */
  subscriber: Redis | Cluster;
  keys: Pick<RedisKeys, 'upstreamKeys' | 'pauseChannel'>;
  /** This worker: it ignores its own nudges. */
  instanceId: string;
  logger: Logger;
  /** Deployments whose pauses are read at start and after a reconnect (every route target of the config). */
  deployments: Iterable<{ provider: string; model: string }>;
}

const NudgeSchema = z.object({ p: z.string().min(1), m: z.string().min(1), ms: z.number().int().positive(), from: z.string() });

export class DeploymentPauses {
  private readonly o: DeploymentPausesOptions;
  /** Deployment id → epoch ms the pause ends (this worker's clock). */
  private readonly until = new Map<string, number>();
  private readonly known: Array<{ provider: string; model: string }>;
  private readonly nudges: NudgeChannel<z.infer<typeof NudgeSchema>>;
  private closed = false;

  constructor(options: DeploymentPausesOptions) {
    this.o = options;
    const seen = new Map<string, { provider: string; model: string }>();
    for (const d of options.deployments) seen.set(deploymentId(d.provider, d.model), { provider: d.provider, model: d.model });
    this.known = [...seen.values()];
    this.nudges = new NudgeChannel({
      subscriber: options.subscriber,
      channel: options.keys.pauseChannel,
      schema: NudgeSchema,
      instanceId: options.instanceId,
      logger: options.logger,
      what: 'deployment pause',
      onNudge: (nudge) => this.extend(deploymentId(nudge.p, nudge.m), Date.now() + Math.min(MAX_PAUSE_MS, nudge.ms)),
      resync: () => this.resync(),
    });
  }

  /** Subscribes to the nudges and reads the pauses the pool holds now (again after every reconnect). */
  start(): Promise<void> {
    return this.nudges.start();
  }

  /** Idempotent; leaves the connections to their owner. */
  async close(): Promise<void> {
    this.closed = true;
    await this.nudges.close();
  }

  /** Whether any deployment is (or recently was) paused: false makes every check here free. */
  get active(): boolean {
    return this.until.size > 0;
  }

  /** Milliseconds until the deployment may be called again; 0 when it is not paused. Memory only. */
  remainingMs(provider: string, model: string, now = Date.now()): number {
    if (this.until.size === 0) return 0;
    const id = deploymentId(provider, model);
    const until = this.until.get(id);
    if (until === undefined) return 0;
    if (until > now) return until - now;
    this.until.delete(id);
    return 0;
  }

  /** Pauses the deployment for `ms` in this worker at once, then in the pool (the key first, then the nudge). */
  pause(provider: string, model: string, ms: number, now = Date.now()): void {
    const length = Math.min(MAX_PAUSE_MS, Math.ceil(ms));
    if (length <= 0 || this.closed) return;
    this.extend(deploymentId(provider, model), now + length);
    this.o.logger.warn({ deployment: deploymentId(provider, model), forMs: length }, 'upstream rate limit: deployment paused pool-wide');
    const { redis, keys, instanceId, logger } = this.o;
    const nudge = JSON.stringify({ p: provider, m: model, ms: length, from: instanceId });
    Promise.all([redis.set(keys.upstreamKeys(provider).pause(model), instanceId, 'PX', length), redis.publish(keys.pauseChannel, nudge)]).catch((err: unknown) =>
      logger.warn({ err: String(err), deployment: deploymentId(provider, model) }, 'deployment pause not shared'),
    );
  }

  /** A pause only ever grows: a shorter one arriving late must not shorten a longer one. */
  private extend(id: string, until: number): void {
    if ((this.until.get(id) ?? 0) < until) this.until.set(id, until);
  }

  /** Nudges sent while the subscriber was reconnecting are lost: the keys tell what is paused now. */
  private async resync(): Promise<void> {
    if (this.closed || this.known.length === 0) return;
    // One command per deployment (each provider has a hash tag of its own: no cross-slot pipeline on a cluster).
    const ttls = await Promise.all(this.known.map((d) => this.o.redis.pttl(this.o.keys.upstreamKeys(d.provider).pause(d.model))));
    const now = Date.now();
    ttls.forEach((ttl, i) => {
      if (ttl > 0) this.extend(deploymentId(this.known[i]!.provider, this.known[i]!.model), now + ttl);
    });
  }
}
