// Calls in flight per deployment across the worker pool, for `strategy: least-busy`: each worker counts its own in
// memory and, every interval, writes its counts to one Redis hash and reads the others' (one pipeline, never on a
// request's path). A worker that dies stops writing and its counts age out.
import type { Cluster, Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { RedisKeys } from '../queue/keys.ts';

export interface BusyCountsOptions {
  redis: Redis | Cluster;
  keys: Pick<RedisKeys, 'busyCounts'>;
  instanceId: string;
  logger: Logger;
  /** Deployment ids counted (the targets of least-busy models). */
  deployments: Iterable<string>;
  /** How often counts are shared; default 200 ms. */
  intervalMs?: number;
}

export const DEFAULT_BUSY_INTERVAL_MS = 200;
/** A worker's report older than this many intervals is ignored (and removed): that worker is gone. */
const STALE_INTERVALS = 5;

export class BusyCounts {
  private readonly o: BusyCountsOptions;
  private readonly intervalMs: number;
  private readonly tracked: ReadonlySet<string>;
  private readonly local = new Map<string, number>();
  /** The other workers' counts at the last report. */
  private others = new Map<string, number>();
  /** The other workers' last values and since when (this worker's clock) each has not changed. */
  private seen = new Map<string, { value: string; since: number }>();
  private timer: NodeJS.Timeout | undefined;
  private reporting: Promise<void> | undefined;

  constructor(options: BusyCountsOptions) {
    this.o = options;
    this.intervalMs = options.intervalMs ?? DEFAULT_BUSY_INTERVAL_MS;
    this.tracked = new Set(options.deployments);
  }

  start(): void {
    if (this.tracked.size === 0 || this.timer !== undefined) return;
    this.timer = setInterval(() => void this.refresh(), this.intervalMs);
    this.timer.unref();
    void this.refresh();
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await this.reporting;
  }

  /** Whether a deployment is counted (only least-busy targets are). */
  tracks(deployment: string): boolean {
    return this.tracked.has(deployment);
  }

  callStarted(deployment: string): void {
    if (this.tracked.has(deployment)) this.local.set(deployment, (this.local.get(deployment) ?? 0) + 1);
  }

  callEnded(deployment: string): void {
    const count = this.local.get(deployment);
    if (count !== undefined) this.local.set(deployment, Math.max(0, count - 1));
  }

  /** Calls in flight to the deployment: this worker's now, the others' as of their last report. */
  busy(deployment: string): number {
    return (this.local.get(deployment) ?? 0) + (this.others.get(deployment) ?? 0);
  }

  /** Shares this worker's counts and reads the pool's (tests call it to skip the wait for the timer). */
  refresh(): Promise<void> {
    this.reporting ??= this.report()
      .catch((err: unknown) => this.o.logger.warn({ err: String(err) }, 'sharing calls in flight failed'))
      .finally(() => {
        this.reporting = undefined;
      });
    return this.reporting;
  }

  private async report(): Promise<void> {
    const { redis, keys, instanceId } = this.o;
    const now = Date.now();
    const pipeline = redis.pipeline();
    for (const deployment of this.tracked) pipeline.hset(keys.busyCounts, `${deployment}\t${instanceId}`, `${this.local.get(deployment) ?? 0}:${now}`);
    pipeline.pexpire(keys.busyCounts, STALE_INTERVALS * this.intervalMs * 10);
    pipeline.hgetall(keys.busyCounts);
    const results = (await pipeline.exec()) ?? [];
    const [err, all] = results.at(-1) ?? [null, {}];
    if (err !== null) throw err;
    const others = new Map<string, number>();
    const stale: string[] = [];
    const seen = new Map<string, { value: string; since: number }>();
    for (const [fieldName, value] of Object.entries((all ?? {}) as Record<string, string>)) {
      const tab = fieldName.lastIndexOf('\t');
      if (tab === -1 || fieldName.slice(tab + 1) === instanceId) continue;
      // A live worker rewrites its value (it carries its own clock) at every report; one that stopped is gone. Judged
      // by this worker's clock alone: the hosts' clocks may disagree.
      const previous = this.seen.get(fieldName);
      const since = previous !== undefined && previous.value === value ? previous.since : now;
      if (now - since > STALE_INTERVALS * this.intervalMs) {
        stale.push(fieldName);
        continue;
      }
      seen.set(fieldName, { value, since });
      const deployment = fieldName.slice(0, tab);
      others.set(deployment, (others.get(deployment) ?? 0) + (Number(value.split(':')[0]) || 0));
    }
    this.others = others;
    this.seen = seen;
    if (stale.length > 0) await redis.hdel(keys.busyCounts, ...stale);
  }
}
