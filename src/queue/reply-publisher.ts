// Worker side of the reply path: publishes head / chunk / done / error on the waiting ingress's channel. Never sends
// a message larger than `inlineReplyBytes` that it can avoid: a JSON body over it is stored under a key, a pointer
// travels instead. Stream chunks that arrive together go in one PUBLISH (flushed on the next turn of the event loop).
import type { Redis } from 'ioredis';
import type { RedisKeys } from './keys.ts';
import { encodeReply, type WireReplyMessage } from './replies.ts';
import type { CompletionResult, JobResult, StoredResult } from './jobs.ts';

type ErrorResult = Extract<CompletionResult, { kind: 'error' }>;
type FinalResult = Exclude<CompletionResult, ErrorResult>;

export interface ReplyPublisherOptions {
  /** Largest message (and chunk batch) sent over pub/sub; a larger JSON body is stored under a key. */
  inlineReplyBytes: number;
  /** TTL of a stored body: as long as the job's own result is kept (jobs.keepCompletedSeconds). */
  storedReplyTtlSeconds: number;
}

export interface ForJobOptions {
  /**
   * Called once when a `head` or `chunk` reaches no subscriber (PUBLISH answered 0, or the connection is down): the
   * waiting ingress is gone or lost messages, so the stream can no longer be delivered intact.
   */
  onUnheard?: () => void;
}

/** What `done` achieved: the job's return value (the result, or the pointer to its stored body), and any failure. */
export interface DoneOutcome {
  returnValue: JobResult;
  /** A failed store or PUBLISH (the caller logs it: the ingress reconciles from the return value, or times out). */
  failure?: unknown;
}

export class ReplyPublisher {
  private readonly redis: Redis;
  private readonly keys: RedisKeys;
  /** @internal */
  readonly inlineReplyBytes: number;
  private readonly storedReplyTtlSeconds: number;

  constructor(redis: Redis, keys: RedisKeys, options: Partial<ReplyPublisherOptions> = {}) {
    this.redis = redis;
    this.keys = keys;
    this.inlineReplyBytes = options.inlineReplyBytes ?? 1024 * 1024;
    this.storedReplyTtlSeconds = options.storedReplyTtlSeconds ?? 60;
  }

  /** A stream writer for one job; `replyTo` null (async job) makes every call a no-op. */
  forJob(jobId: string, attempt: number, replyTo: string | null, options: ForJobOptions = {}): JobReplies {
    return new JobReplies(this, jobId, attempt, replyTo === null ? null : this.keys.replyChannel(replyTo), options.onUnheard);
  }

  /** @internal Resolves with the number of subscribers that received the message. */
  publish(channel: string, raw: string): Promise<number> {
    return this.redis.publish(channel, raw);
  }

  /** @internal Whether a PUBLISH now would go out at once (not wait in ioredis's offline queue). */
  get connected(): boolean {
    return this.redis.status === 'ready';
  }

  /** @internal Stores a body too large for pub/sub; resolves once Redis has it, so the pointer is never early. */
  async store(jobId: string, status: number, body: string): Promise<StoredResult> {
    const key = this.keys.storedReply(jobId);
    await this.redis.set(key, body, 'EX', this.storedReplyTtlSeconds);
    return { kind: 'stored', status, key, bytes: Buffer.byteLength(body) };
  }
}

export class JobReplies {
  private readonly publisher: ReplyPublisher;
  private readonly jobId: string;
  private readonly attempt: number;
  private readonly channel: string | null;
  private readonly onUnheard: (() => void) | undefined;
  private buffered: string[] = [];
  private bufferedChars = 0;
  private nextSeq = 0;
  private flushScheduled = false;
  private unheardSeen = false;
  /** Publishes in flight, so `done` can be ordered after the last chunk's PUBLISH on the same connection. */
  private last: Promise<unknown> = Promise.resolve();
  private failure: unknown = undefined;

  constructor(publisher: ReplyPublisher, jobId: string, attempt: number, channel: string | null, onUnheard?: () => void) {
    this.publisher = publisher;
    this.jobId = jobId;
    this.attempt = attempt;
    this.channel = channel;
    this.onUnheard = onUnheard;
  }

  /** Number of chunks handed over so far (sent or about to be). */
  get chunkCount(): number {
    return this.nextSeq + this.buffered.length;
  }

  /** Whether a head or chunk reached nobody: the stream cannot be delivered intact any more. */
  get unheard(): boolean {
    return this.unheardSeen;
  }

  head(status: number, headers: Record<string, string>): void {
    this.sendPart({ k: 'head', j: this.jobId, a: this.attempt, status, headers });
  }

  chunk(data: string): void {
    this.buffered.push(data);
    this.bufferedChars += data.length;
    // A burst of events must not add up to one message past the inline size (Redis's subscriber buffer limit).
    if (this.bufferedChars >= this.publisher.inlineReplyBytes) {
      this.flush();
    } else if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(this.flush);
    }
  }

  /**
   * Publishes the final answer. A JSON body whose message would exceed `inlineReplyBytes` is stored under a key
   * and only the pointer is published and returned (the job's return value must not hold a second copy). Never
   * rejects: a failure is reported in the outcome, with the return value that still lets the ingress reconcile.
   */
  async done(result: FinalResult): Promise<DoneOutcome> {
    this.flush();
    if (this.channel === null) return { returnValue: result };
    const raw = encodeReply({ k: 'done', j: this.jobId, a: this.attempt, result });
    let returnValue: JobResult = result;
    if (result.kind === 'body' && exceeds(raw, this.publisher.inlineReplyBytes)) {
      try {
        returnValue = await this.publisher.store(this.jobId, result.status, result.body);
      } catch (err) {
        // Not stored: keep the body as the return value, which reconciliation can still read.
        return { returnValue: result, failure: err };
      }
      this.send(encodeReply({ k: 'done', j: this.jobId, a: this.attempt, result: returnValue }));
    } else {
      this.send(raw);
    }
    try {
      await this.settle();
      return { returnValue };
    } catch (err) {
      return { returnValue, failure: err };
    }
  }

  async error(result: ErrorResult): Promise<void> {
    this.flush();
    if (this.channel === null) return;
    this.send(encodeReply({ k: 'error', j: this.jobId, a: this.attempt, status: result.status, headers: result.headers, error: result.error }));
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
    this.bufferedChars = 0;
    this.sendPart({ k: 'chunk', j: this.jobId, a: this.attempt, seq: this.nextSeq, data });
    this.nextSeq += data.length;
  };

  /** A head or chunk: worth sending only if it can be heard now (a stream with a hole in it is not delivered). */
  private sendPart(message: WireReplyMessage): void {
    if (this.channel === null || this.unheardSeen) return;
    if (!this.publisher.connected) {
      // Queued behind a reconnect, it would reach an ingress that lost the messages before it: give up now.
      this.markUnheard();
      return;
    }
    this.last = this.publisher.publish(this.channel, encodeReply(message)).then(
      (receivers) => {
        if (receivers === 0) this.markUnheard();
      },
      (err: unknown) => {
        this.failure ??= err;
      },
    );
  }

  private send(raw: string): void {
    // One connection publishes in order; keep the latest promise so callers can await delivery to Redis.
    this.last = this.publisher.publish(this.channel!, raw).catch((err: unknown) => {
      this.failure ??= err;
    });
  }

  private markUnheard(): void {
    if (this.unheardSeen) return;
    this.unheardSeen = true;
    this.onUnheard?.();
  }
}

/**
 * Whether an encoded message is over `limit` bytes. The string length is known for free; the exact UTF-8 size is
 * computed only when the answer depends on it (a char is 1 to 3 bytes).
 */
function exceeds(raw: string, limit: number): boolean {
  if (raw.length > limit) return true;
  return raw.length * 3 > limit && Buffer.byteLength(raw) > limit;
}
