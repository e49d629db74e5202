// Worker side of the reply path: publishes head / chunk / done / error on the waiting ingress's channel (SPUBLISH on
// Redis Cluster). Never sends a message larger than `inlineReplyBytes` that it can avoid: a JSON body over it is stored
// under a key, a pointer travels instead. Coalesces a stream's chunks: one chunk PUBLISH in flight per stream at a time.
import { setTimeout as sleep } from 'node:timers/promises';
import type { Cluster, Redis } from 'ioredis';
import type { RedisKeys } from './keys.ts';
import { encodeReply, type WireReplyMessage } from './replies.ts';
import type { CompletionResult, JobResult, StoredResult } from './jobs.ts';

type ErrorResult = Extract<CompletionResult, { kind: 'error' }>;
type FinalResult = Exclude<CompletionResult, ErrorResult>;

/** A final message whose PUBLISH failed is tried again, with backoff (0.2, 0.4, 0.8, 1.6 s): a failover takes seconds. */
const FINAL_PUBLISH_ATTEMPTS = 5;
const FINAL_RETRY_BASE_MS = 200;

export interface ReplyPublisherOptions {
  /** Largest message (and chunk batch) sent over pub/sub; a larger JSON body is stored under a key. */
  inlineReplyBytes: number;
  /** TTL of a stored body and of a parked final message (jobs.replyTtlSeconds): the ingress's time to reconcile. */
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
  private readonly redis: Redis | Cluster;
  private readonly keys: RedisKeys;
  /** @internal */
  readonly inlineReplyBytes: number;
  private readonly storedReplyTtlSeconds: number;

  constructor(redis: Redis | Cluster, keys: RedisKeys, options: Partial<ReplyPublisherOptions> = {}) {
    this.redis = redis;
    this.keys = keys;
    this.inlineReplyBytes = options.inlineReplyBytes ?? 1024 * 1024;
    this.storedReplyTtlSeconds = options.storedReplyTtlSeconds ?? 60;
  }

  /** A stream writer for one job; `replyTo` null (async job) makes every call a no-op. */
  forJob(jobId: string, attempt: number, replyTo: string | null, options: ForJobOptions = {}): JobReplies {
    return new JobReplies(this, jobId, attempt, replyTo, options.onUnheard);
  }

  /** @internal The reply channel of an ingress. */
  channelOf(replyTo: string): string {
    return this.keys.replyChannel(replyTo);
  }

  /** @internal Resolves with the number of subscribers that received the message. */
  publish(channel: string, raw: string): Promise<number> {
    // Sharded pub/sub on a cluster: the message stays on the master owning the channel's slot (plain PUBLISH would be
    // copied to every node over the cluster bus).
    return (this.keys.cluster ? this.redis.spublish(channel, raw) : this.redis.publish(channel, raw)) as Promise<number>;
  }

  /** @internal Whether a PUBLISH now would go out at once (not wait in ioredis's offline queue). */
  get connected(): boolean {
    return this.redis.status === 'ready';
  }

  /** @internal Stores a body too large for pub/sub; resolves once Redis has it, so the pointer is never early. */
  async store(jobId: string, replyTo: string | null, status: number, body: string): Promise<StoredResult> {
    const key = this.keys.storedReply(jobId, replyTo);
    await this.redis.set(key, body, 'EX', this.storedReplyTtlSeconds);
    return { kind: 'stored', status, key, bytes: Buffer.byteLength(body) };
  }

  /**
   * @internal Parks a final message its ingress did not hear (PUBLISH reached nobody: the ingress's reply connection
   * is down and it reconciles once back). Completed jobs are removed at once, so this is what it will find.
   */
  async park(replyTo: string, jobId: string, raw: string): Promise<void> {
    await this.redis.set(this.keys.parkedReply(replyTo, jobId), raw, 'EX', this.storedReplyTtlSeconds);
  }
}

export class JobReplies {
  private readonly publisher: ReplyPublisher;
  private readonly jobId: string;
  private readonly attempt: number;
  private readonly replyTo: string | null;
  private readonly channel: string | null;
  private readonly onUnheard: (() => void) | undefined;
  private buffered: string[] = [];
  private bufferedChars = 0;
  private nextSeq = 0;
  private flushScheduled = false;
  /** Chunk PUBLISHes sent and not yet answered: while one is, new chunks wait for it and then go out together. */
  private chunksInFlight = 0;
  private unheardSeen = false;
  /** Publishes in flight, so `done` can be ordered after the last chunk's PUBLISH on the same connection. */
  private last: Promise<unknown> = Promise.resolve();
  private failure: unknown = undefined;

  constructor(publisher: ReplyPublisher, jobId: string, attempt: number, replyTo: string | null, onUnheard?: () => void) {
    this.publisher = publisher;
    this.jobId = jobId;
    this.attempt = attempt;
    this.replyTo = replyTo;
    this.channel = replyTo === null ? null : publisher.channelOf(replyTo);
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

  /** The last head's headers (x-spillway-deployment, -attempts): the worker's log line reads them. */
  headHeaders: Record<string, string> | undefined;

  head(status: number, headers: Record<string, string>): void {
    this.headHeaders = headers;
    this.sendPart({ k: 'head', j: this.jobId, a: this.attempt, status, headers }, false);
  }

  /**
   * Queues one SSE payload. The first chunk goes out on the next turn of the event loop (with whatever else arrived in
   * that turn); while a chunk PUBLISH is in flight, later chunks gather and leave in one message as soon as it is
   * answered. A fast stream thus costs a PUBLISH per Redis round trip instead of one per token, and a slow one (a token
   * every few ms or more) still gets each token sent at once.
   */
  chunk(data: string): void {
    this.buffered.push(data);
    this.bufferedChars += data.length;
    // A burst of events must not add up to one message past the inline size (Redis's subscriber buffer limit).
    if (this.bufferedChars >= this.publisher.inlineReplyBytes) {
      this.flush();
    } else if (this.chunksInFlight === 0 && !this.flushScheduled) {
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
        returnValue = await this.publisher.store(this.jobId, this.replyTo, result.status, result.body);
      } catch (err) {
        // Not stored: keep the body as the return value, which reconciliation can still read.
        return { returnValue: result, failure: err };
      }
      this.sendFinal(encodeReply({ k: 'done', j: this.jobId, a: this.attempt, result: returnValue }));
    } else {
      this.sendFinal(raw);
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
    this.sendFinal(encodeReply({ k: 'error', j: this.jobId, a: this.attempt, status: result.status, headers: result.headers, error: result.error }));
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
    this.sendPart({ k: 'chunk', j: this.jobId, a: this.attempt, seq: this.nextSeq, data }, true);
    this.nextSeq += data.length;
  };

  /** A head or chunk: worth sending only if it can be heard now (a stream with a hole in it is not delivered). */
  private sendPart(message: WireReplyMessage, isChunk: boolean): void {
    if (this.channel === null || this.unheardSeen) return;
    if (!this.publisher.connected) {
      // Queued behind a reconnect, it would reach an ingress that lost the messages before it: give up now.
      this.markUnheard();
      return;
    }
    if (isChunk) this.chunksInFlight++;
    this.last = this.publisher.publish(this.channel, encodeReply(message)).then(
      (receivers) => {
        if (receivers === 0) this.markUnheard();
        if (isChunk) this.chunkAnswered();
      },
      (err: unknown) => {
        this.failure ??= err;
        if (isChunk) this.chunkAnswered();
      },
    );
  }

  /** The chunks that gathered while a PUBLISH was in flight leave now, in one message. */
  private chunkAnswered(): void {
    this.chunksInFlight--;
    if (this.chunksInFlight === 0 && this.buffered.length > 0 && !this.flushScheduled) this.flush();
  }

  /**
   * `done` or `error`. When it reaches nobody (the ingress's reply connection is down: it reconciles once back), it is
   * parked under a key the ingress reads then: the job itself is removed as soon as it completes. A PUBLISH that fails
   * (the connection to the channel's master broke: a failover) is sent again once the cluster has a master for the
   * slot, where the ingress subscribes again; a second copy of a final message is ignored by the ingress.
   */
  private sendFinal(raw: string): void {
    // Sent now, behind the parts on the same connection (in order); callers await `last` for delivery to Redis.
    const first = this.publisher.publish(this.channel!, raw);
    this.last = this.deliverFinal(first, raw).catch((err: unknown) => {
      this.failure ??= err;
    });
  }

  private async deliverFinal(first: Promise<number>, raw: string): Promise<void> {
    let receivers: number | undefined;
    for (let attempt = 1; receivers === undefined; attempt++) {
      try {
        receivers = await (attempt === 1 ? first : this.publisher.publish(this.channel!, raw));
      } catch (err) {
        if (attempt >= FINAL_PUBLISH_ATTEMPTS) throw err;
        await sleep(FINAL_RETRY_BASE_MS * 2 ** (attempt - 1), undefined, { ref: false });
      }
    }
    if (receivers === 0) await this.publisher.park(this.replyTo!, this.jobId, raw);
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
