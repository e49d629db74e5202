// One client request waiting for its job: turns reply messages into a JSON answer or an SSE stream, enforces the
// deadline, keeps a queued stream alive, bounds what a slow reader may leave unread, and cancels the job when the
// answer is no longer wanted. Never writes a token twice or ends a stream silently short.
import type { FastifyReply } from 'fastify';
import type { ReplySink } from '../queue/reply-bus.ts';
import type { CompletionResult } from '../queue/jobs.ts';
import type { ReplyMessage } from '../queue/replies.ts';
import { deadlineExceeded, jobLost, shuttingDown, slowReader, streamInterrupted, SpillwayError, upstreamFailed } from '../errors.ts';
import { toOpenAIError } from '../openai/errors.ts';
import { SSE_HEADERS, sseData, SSE_DONE, SSE_KEEP_ALIVE } from '../openai/sse.ts';

/** Why an answer is no longer wanted: its job is cancelled. */
export type AbandonReason = 'client_closed' | 'deadline' | 'stream_broken' | 'slow_reader' | 'job_missing' | 'draining';

export type Settled = { kind: 'json'; status: number; body: string } | { kind: 'streamed'; status: number };

export interface PendingRequestOptions {
  reply: FastifyReply;
  stream: boolean;
  deadline: number;
  requestId: string;
  /** A stream that has written nothing for this long gets its head (if not out yet) and a `: keep-alive` comment. */
  keepAliveMs: number;
  /** Bytes a stream's client may leave unread before the stream is ended with an error and its job cancelled. */
  bufferLimitBytes: number;
  /** Called once when the answer is no longer wanted (client gone, deadline passed, stream broken, job lost, drain). */
  onAbandon: (reason: AbandonReason) => void;
  /** Called once when the request is over, whatever the outcome. */
  onFinish: () => void;
}

/** Once a slow reader's stream is ended, how long its unread bytes may still hold the socket open. */
const SLOW_READER_LINGER_MS = 10_000;

export class PendingRequest implements ReplySink {
  /** Resolves with the JSON answer, or once a stream has ended; rejects with the error to send as JSON. */
  readonly settled: Promise<Settled>;
  private resolve!: (value: Settled) => void;
  private reject!: (err: SpillwayError) => void;
  private readonly options: PendingRequestOptions;
  private readonly timer: NodeJS.Timeout;
  private keepAlive: NodeJS.Timeout | undefined;
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
    options.reply.raw.on('close', this.onClientClose);
  }

  onMessage(message: ReplyMessage): void {
    if (this.done) return;
    if (message.a < this.latestAttempt) return; // a worker that lost the job to a newer attempt: not this answer
    this.latestAttempt = message.a;
    switch (message.k) {
      case 'head':
        if (!this.options.stream) return;
        if (this.streamAttempt === undefined) {
          this.startStream(message.a, message.status);
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
        this.nextSeq += message.data.length;
        this.write(message.data.length === 1 ? sseData(message.data[0]!) : message.data.map(sseData).join(''));
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
      this.resolve({ kind: 'json', status: result.status, body: result.body });
      return;
    }
    if (this.streamAttempt === undefined) this.startStream(attempt, 200);
    if (this.streamAttempt !== attempt || result.chunks !== this.nextSeq) {
      this.abandon('stream_broken', streamInterrupted('The stream was interrupted: chunks were lost in transit.'));
      return;
    }
    this.finish();
    this.options.reply.raw.end(SSE_DONE);
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
    if (!raw.writableEnded) raw.end(sseData(JSON.stringify(toOpenAIError(err).body)));
    this.resolve({ kind: 'streamed', status: err.statusCode });
  }

  private startStream(attempt: number, status: number): void {
    this.streamAttempt = attempt;
    this.sendHead(status);
  }

  private sendHead(status: number): void {
    if (this.headSent) return;
    this.headSent = true;
    const { reply } = this.options;
    reply.hijack();
    // No flushHeaders(): the head goes out with the first chunk, a tick later, in one write.
    reply.raw.writeHead(status, { ...SSE_HEADERS, 'x-request-id': this.options.requestId });
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
    this.options.reply.raw.off('close', this.onClientClose);
    this.options.onFinish();
  }
}
