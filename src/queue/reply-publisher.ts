// Worker side of the reply path: publishes head / chunk / done / error on the waiting ingress's channel.
// Stream chunks that arrive together are sent in one PUBLISH (flushed on the next turn of the event loop: no added latency).
import type { Redis } from 'ioredis';
import type { RedisKeys } from './keys.ts';
import { encodeReply, type ReplyMessage } from './replies.ts';
import type { CompletionResult } from './jobs.ts';

type ErrorResult = Extract<CompletionResult, { kind: 'error' }>;
type FinalResult = Exclude<CompletionResult, ErrorResult>;

export class ReplyPublisher {
  private readonly redis: Redis;
  private readonly keys: RedisKeys;

  constructor(redis: Redis, keys: RedisKeys) {
    this.redis = redis;
    this.keys = keys;
  }

  /** A stream writer for one job; `replyTo` null (async job) makes every call a no-op. */
  forJob(jobId: string, attempt: number, replyTo: string | null): JobReplies {
    return new JobReplies(this, jobId, attempt, replyTo === null ? null : this.keys.replyChannel(replyTo));
  }

  /** @internal */
  publish(channel: string, message: ReplyMessage): Promise<unknown> {
    return this.redis.publish(channel, encodeReply(message));
  }
}

export class JobReplies {
  private readonly publisher: ReplyPublisher;
  private readonly jobId: string;
  private readonly attempt: number;
  private readonly channel: string | null;
  private buffered: string[] = [];
  private nextSeq = 0;
  private flushScheduled = false;
  /** Publishes in flight, so `done` can be ordered after the last chunk's PUBLISH on the same connection. */
  private last: Promise<unknown> = Promise.resolve();
  private failure: unknown = undefined;

  constructor(publisher: ReplyPublisher, jobId: string, attempt: number, channel: string | null) {
    this.publisher = publisher;
    this.jobId = jobId;
    this.attempt = attempt;
    this.channel = channel;
  }

  /** Number of chunks handed over so far (sent or about to be). */
  get chunkCount(): number {
    return this.nextSeq + this.buffered.length;
  }

  head(status: number, headers: Record<string, string>): void {
    this.send({ k: 'head', j: this.jobId, a: this.attempt, status, headers });
  }

  chunk(data: string): void {
    this.buffered.push(data);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(this.flush);
    }
  }

  async done(result: FinalResult): Promise<void> {
    this.flush();
    this.send({ k: 'done', j: this.jobId, a: this.attempt, result });
    await this.settle();
  }

  async error(result: ErrorResult): Promise<void> {
    this.flush();
    this.send({ k: 'error', j: this.jobId, a: this.attempt, status: result.status, headers: result.headers, error: result.error });
    await this.settle();
  }

  /** Waits for every PUBLISH so far; throws the first that failed (the caller logs it: the ingress will time out or reconcile). */
  private async settle(): Promise<void> {
    await this.last;
    if (this.failure !== undefined) throw this.failure;
  }

  private readonly flush = (): void => {
    this.flushScheduled = false;
    if (this.buffered.length === 0) return;
    const data = this.buffered;
    this.buffered = [];
    this.send({ k: 'chunk', j: this.jobId, a: this.attempt, seq: this.nextSeq, data });
    this.nextSeq += data.length;
  };

  private send(message: ReplyMessage): void {
    if (this.channel === null) return;
    // One connection publishes in order; keep the latest promise so callers can await delivery to Redis.
    this.last = this.publisher.publish(this.channel, message).catch((err: unknown) => {
      this.failure ??= err;
    });
  }
}
