// A pool-wide nudge channel, the pub/sub half of state kept in Redis keys with TTLs (circuit breakers, deployment
// pauses): validated JSON messages, this worker's own ones skipped, and the keys read again whenever the subscriber
// (re)connects, since nudges sent while it was away are lost.
import type { Cluster, Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { z } from 'zod';

export interface NudgeChannelOptions<T extends { from: string }> {
  /** A subscriber connection (it may carry other channels: messages are told apart by channel). Owned by the caller. */
  subscriber: Redis | Cluster;
  channel: string;
  schema: z.ZodType<T>;
  /** This worker: its own nudges are skipped (it applied them before sending). */
  instanceId: string;
  logger: Logger;
  /** What the nudges are about, for log lines (e.g. "circuit breaker"). */
  what: string;
  onNudge(nudge: T): void;
  /** Reads the pool's current state from its keys: at start and after every reconnect. */
  resync(): Promise<void>;
}

export class NudgeChannel<T extends { from: string }> {
  private readonly o: NudgeChannelOptions<T>;
  private closed = false;

  constructor(options: NudgeChannelOptions<T>) {
    this.o = options;
  }

  /** Subscribes, then reads the current state. */
  async start(): Promise<void> {
    this.o.subscriber.on('message', this.onMessage);
    this.o.subscriber.on('ready', this.onReady);
    await this.o.subscriber.subscribe(this.o.channel);
    await this.o.resync();
  }

  /** Idempotent. Leaves the connection to its owner. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.o.subscriber.off('message', this.onMessage);
    this.o.subscriber.off('ready', this.onReady);
    await this.o.subscriber.unsubscribe(this.o.channel).catch(() => undefined);
  }

  private readonly onMessage = (channel: string, raw: string): void => {
    if (channel !== this.o.channel || this.closed) return;
    let nudge: T;
    try {
      nudge = this.o.schema.parse(JSON.parse(raw));
    } catch {
      this.o.logger.warn({ channel }, `malformed ${this.o.what} nudge ignored`);
      return;
    }
    if (nudge.from === this.o.instanceId) return;
    this.o.onNudge(nudge);
  };

  private readonly onReady = (): void => {
    this.o.resync().catch((err: unknown) => this.o.logger.warn({ err: String(err) }, `${this.o.what} resync failed`));
  };
}
