// One client request waiting for its job: turns reply messages into a JSON answer or an SSE stream, enforces the
// deadline, keeps a queued stream alive, bounds what a slow reader may leave unread, and cancels the job when the
// answer is no longer wanted. Never writes a token twice or ends a stream silently short.
import type { FastifyReply } from 'fastify';
import type { ReplySink } from '../queue/reply-bus.ts';
import type { CompletionResult } from '../queue/jobs.ts';
import type { ReplyMessage } from '../queue/replies.ts';
import { deadlineExceeded, jobLost, shuttingDown, slowReader, streamInterrupted, SpillwayError, upstreamFailed } from '../errors.ts';
import { toOpenAIError, type OpenAIErrorBody } from '../openai/errors.ts';
import { SSE_HEADERS, sseData, SSE_DONE, SSE_KEEP_ALIVE } from '../openai/sse.ts';

/**
 * How a stream's payloads go out. Default: chat's `data:` events ended by `data: [DONE]`, a late error as a
 * `data: {"error":…}` event. The Responses API names each event, sends no [DONE] and numbers its error event.
 */
export interface StreamFraming {
  event(payload: string): string;
  /** Written last on a stream that completed. */
  end: string;
  /** The event of an error after the head; `sequenceNumber` is the count of payloads written before it. */
  error(body: OpenAIErrorBody, sequenceNumber: number): string;
}

const CHAT_FRAMING: StreamFraming = { event: sseData, end: SSE_DONE, error: (body) => sseData(JSON.stringify(body)) };

/** Why an answer is no longer wanted: its job is cancelled. */
export type AbandonReason = 'client_closed' | 'deadline' | 'stream_broken' | 'slow_reader' | 'job_missing' | 'draining';

/** `headers`: the worker's x-spillway-* headers of a JSON answer (deployment, attempts, cache). */
export type Settled = { kind: 'json'; status: number; body: string; headers?: Record<string, string> } | { kind: 'streamed'; status: number };

export interface PendingRequestOptions {
  reply: FastifyReply;
  stream: boolean;
  deadline: number;
  requestId: string;
  /** Extra response headers (x-ratelimit-*), sent with a JSON answer by the route and with a stream's head here. */
  headers?: Record<string, string>;
  /** A stream that has written nothing for this long gets its head (if not out yet) and a `: keep-alive` comment. */
  keepAliveMs: number;
  /**
   * For a client that asked where it stands (x-spillway-queue-position): an SSE comment describing the job's place in
   * the queue, written every QUEUE_POSITION_INTERVAL_MS until the answer flows.
   */
  describePlace?: () => Promise<string | undefined>;
  /** Bytes a stream's client may leave unread before the stream is ended with an error and its job cancelled. */
  bufferLimitBytes: number;
  /** The stream's wire format; default CHAT_FRAMING. */
  framing?: StreamFraming;
  /** Called once when the answer is no longer wanted (client gone, deadline passed, stream broken, job lost, drain). */
  onAbandon: (reason: AbandonReason) => void;
  /** Called once when the request is over, whatever the outcome. */
  onFinish: () => void;
  /** Called when a stream's first chunk is written to the client (time to first token). */
  onFirstChunk?: () => void;
}

/** How often a client that asked for its queue position hears it. */
export const QUEUE_POSITION_INTERVAL_MS = 1_000;

/** Once a slow reader's stream is ended, how long its unread bytes may still hold the socket open. */
const SLOW_READER_LINGER_MS = 10_000;

export class PendingRequest implements ReplySink {
  /** Resolves with the JSON answer, or once a stream has ended; rejects with the error to send as JSON. */
  readonly settled: Promise<Settled>;
  private resolve!: (value: Settled) => void;
  private reject!: (err: SpillwayError) => void;
  private readonly options: PendingRequestOptions;
  private readonly framing: StreamFraming;
  private readonly timer: NodeJS.Timeout;
  private keepAlive: NodeJS.Timeout | undefined;
  private positionTimer: NodeJS.Timeout | undefined;
  private done = false;
  /** Set once the SSE head is written (by the answer, or early by the keep-alive): from then on errors are SSE events. */
  private headSent = false;
  /** The attempt whose chunks this stream relays; set by its first head or chunk. */
  private streamAttempt: number | undefined;
  /** The highest attempt seen: a message of an older one comes from a worker that lost the job, and is ignored. */
  private latestAttempt = -1;
  private nextSeq = 0;
  /** Whether anything was written since the last keep-alive tick. */
  private wroteSinceTick = false;

  constructor(options: PendingRequestOptions) {
    this.options = options;
    this.framing = options.framing ?? CHAT_FRAMING;
    this.settled = new Promise<Settled>((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
    // The client may go away before the route awaits `settled` (e.g. during enqueue): that rejection is
    // expected and must not count as unhandled. Awaiting `settled` still sees it.
    this.settled.catch(() => undefined);
    this.timer = setTimeout(() => this.abandon('deadline', deadlineExceeded()), Math.max(0, options.deadline - Date.now()));
    // A load balancer's idle timeout (often 60 s) would cut a stream that waits in the queue before it starts.
    if (options.stream) this.keepAlive = setInterval(this.onKeepAliveTick, options.keepAliveMs);
    if (options.stream && options.describePlace !== undefined) this.positionTimer = setInterval(this.onPositionTick, QUEUE_POSITION_INTERVAL_MS);
    options.reply.raw.on('close', this.onClientClose);
    // The client may have left while the route awaited admission: its 'close' is not coming again.
    if (options.reply.raw.destroyed || options.reply.raw.socket?.destroyed === true) queueMicrotask(this.onClientClose);
  }

  onMessage(message: ReplyMessage): void {
    if (this.done) return;
    if (message.a < this.latestAttempt) return; // a worker that lost the job to a newer attempt: not this answer
    this.latestAttempt = message.a;
    switch (message.k) {
      case 'head':
        if (!this.options.stream) return;
        if (this.streamAttempt === undefined) {
          this.startStream(message.a, message.status, message.headers);
        } else if (this.streamAttempt !== message.a) {
          // A head of a newer attempt: the job was re-run (its worker died). Replaying would duplicate tokens.
          this.abandon('stream_broken', streamInterrupted('The stream was interrupted: the worker serving it was lost.'));
        }
        return;
      case 'chunk':
        if (this.streamAttempt === undefined && message.seq === 0 && this.options.stream) this.startStream(message.a, 200);
        if (this.streamAttempt !== message.a || message.seq !== this.nextSeq) {
          this.abandon('stream_broken', streamInterrupted('The stream was interrupted: chunks were lost in transit.'));
          return;
        }
        if (this.nextSeq === 0) this.options.onFirstChunk?.();
        this.nextSeq += message.data.length;
        this.write(message.data.length === 1 ? this.framing.event(message.data[0]!) : message.data.map((d) => this.framing.event(d)).join(''));
        return;
      case 'done':
        this.complete(message.result, message.a);
        return;
      case 'error':
        this.fail(new SpillwayError(message.error.message, {
          statusCode: message.status,
          type: message.error.type as SpillwayError['type'],
          param: message.error.param,
          code: message.error.code,
          headers: message.headers,
        }));
        return;
      default:
        message satisfies never;
    }
  }

  onFinishedUnseen(result: CompletionResult | undefined, attempt: number, failedReason: string | undefined): void {
    if (this.done) return;
    if (result === undefined) {
      this.fail(upstreamFailed(`The request failed: ${failedReason ?? 'unknown reason'}.`));
    } else if (result.kind === 'error') {
      this.onMessage({ k: 'error', j: '', a: attempt, status: result.status, headers: result.headers, error: result.error });
    } else {
      this.complete(result, attempt);
    }
  }

  onLost(reason: 'job_missing' | 'draining'): void {
    this.abandon(reason, reason === 'draining' ? shuttingDown() : jobLost());
  }

  /** The job could not be enqueued: stop the deadline timer and the close listener, answer `err` as JSON. */
  failBeforeEnqueue(err: SpillwayError): void {
    if (this.done) return;
    this.fail(err);
  }

  private complete(result: Extract<CompletionResult, { kind: 'body' | 'stream' }>, attempt: number): void {
    if (result.kind === 'body') {
      if (this.headSent) {
        // Only a provider that ignored `stream: true` could get here, and the worker refuses that: never hand a
        // JSON body to an SSE client as if it were a stream.
        this.fail(streamInterrupted('The upstream answered a streaming request without a stream.'));
        return;
      }
      this.finish();
      this.resolve(result.headers === undefined ? { kind: 'json', status: result.status, body: result.body } : { kind: 'json', status: result.status, body: result.body, headers: result.headers });
      return;
    }
    if (this.streamAttempt === undefined) this.startStream(attempt, 200);
    if (this.streamAttempt !== attempt || result.chunks !== this.nextSeq) {
      this.abandon('stream_broken', streamInterrupted('The stream was interrupted: chunks were lost in transit.'));
      return;
    }
    this.finish();
    this.options.reply.raw.end(this.framing.end);
    this.resolve({ kind: 'streamed', status: 200 });
  }

  private fail(err: SpillwayError): void {
    this.finish();
    if (!this.headSent) {
      this.reject(err);
      return;
    }
    // Headers are out: the error travels as an SSE event, which the OpenAI SDKs raise as an APIError.
    const raw = this.options.reply.raw;
    if (!raw.writableEnded) raw.end(this.framing.error(toOpenAIError(err).body, this.nextSeq));
    this.resolve({ kind: 'streamed', status: err.statusCode });
  }

  private startStream(attempt: number, status: number, headers?: Record<string, string>): void {
    this.streamAttempt = attempt;
    this.sendHead(status, headers);
  }

  /** `upstream`: the head message's headers, of which only Spillway's own (x-spillway-*) reach the client. */
  private sendHead(status: number, upstream?: Record<string, string>): void {
    if (this.headSent) return;
    this.headSent = true;
    const { reply } = this.options;
    reply.hijack();
    const spillway: Record<string, string> = {};
    for (const [name, value] of Object.entries(upstream ?? {})) if (name.startsWith('x-spillway-')) spillway[name] = value;
    // No flushHeaders(): the head goes out with the first chunk, a tick later, in one write.
    reply.raw.writeHead(status, { ...this.options.headers, ...spillway, ...SSE_HEADERS, 'x-request-id': this.options.requestId });
  }

  /**
   * Writes to a client that may not be reading. Pub/sub cannot be paused, so backpressure is honoured by bounding
   * what waits in the socket's buffer: past the limit the stream ends with an error and the job is cancelled.
   */
  private write(text: string): void {
    const raw = this.options.reply.raw;
    this.wroteSinceTick = true;
    if (raw.write(text) || raw.writableLength <= this.options.bufferLimitBytes) return;
    this.abandon('slow_reader', slowReader(this.options.bufferLimitBytes));
    // The error event waits behind the unread bytes; a client that never reads them must not hold the socket.
    const linger = setTimeout(() => raw.destroy(), SLOW_READER_LINGER_MS);
    linger.unref();
    raw.once('close', () => clearTimeout(linger));
  }

  private readonly onKeepAliveTick = (): void => {
    if (this.done) return;
    if (this.wroteSinceTick) {
      this.wroteSinceTick = false;
      return;
    }
    // Nothing flowed for a whole interval (queued, or a slow first token): the head goes out now with 200, and a
    // comment line, which SSE clients ignore, keeps proxies from closing the idle connection.
    this.sendHead(200);
    this.write(SSE_KEEP_ALIVE);
    this.wroteSinceTick = false;
  };

  private readonly onPositionTick = (): void => {
    if (this.done || this.streamAttempt !== undefined) {
      clearInterval(this.positionTimer);
      return;
    }
    this.options.describePlace?.().then(
      (comment) => {
        if (comment === undefined || this.done || this.streamAttempt !== undefined) return;
        this.sendHead(200);
        this.write(comment);
      },
      () => undefined, // advisory: a Redis hiccup skips one report
    );
  };

  private abandon(reason: AbandonReason, err: SpillwayError): void {
    if (this.done) return;
    this.options.onAbandon(reason);
    this.fail(err);
  }

  private readonly onClientClose = (): void => {
    if (this.done || this.options.reply.raw.writableFinished) return;
    this.abandon('client_closed', new SpillwayError('The client closed the request.', { statusCode: 499, type: 'invalid_request_error', code: 'client_closed_request' }));
  };

  private finish(): void {
    this.done = true;
    clearTimeout(this.timer);
    clearInterval(this.keepAlive);
    clearInterval(this.positionTimer);
    this.options.reply.raw.off('close', this.onClientClose);
    this.options.onFinish();
  }
}
