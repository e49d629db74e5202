// One client request waiting for its job: turns reply messages into a JSON answer or an SSE stream, enforces the
// deadline, and cancels the job when the client goes away. Never writes a token twice or ends a stream silently short.
import type { FastifyReply } from 'fastify';
import type { ReplySink } from '../queue/reply-bus.ts';
import type { CompletionResult } from '../queue/jobs.ts';
import type { ReplyMessage } from '../queue/replies.ts';
import { deadlineExceeded, jobLost, shuttingDown, streamInterrupted, SpillwayError, upstreamFailed } from '../errors.ts';
import { toOpenAIError } from '../openai/errors.ts';
import { SSE_HEADERS, sseData, SSE_DONE } from '../openai/sse.ts';

/** Why an answer is no longer wanted: its job is cancelled. */
export type AbandonReason = 'client_closed' | 'deadline' | 'stream_broken' | 'slow_reader' | 'job_missing' | 'draining';

export type Settled = { kind: 'json'; status: number; body: string } | { kind: 'streamed'; status: number };

export interface PendingRequestOptions {
  reply: FastifyReply;
  stream: boolean;
  deadline: number;
  requestId: string;
  /** Called once when the answer is no longer wanted (client gone, deadline passed, stream broken). */
  onAbandon: (reason: AbandonReason) => void;
  /** Called once when the request is over, whatever the outcome. */
  onFinish: () => void;
}

export class PendingRequest implements ReplySink {
  /** Resolves with the JSON answer, or once a stream has ended; rejects with the error to send as JSON. */
  readonly settled: Promise<Settled>;
  private resolve!: (value: Settled) => void;
  private reject!: (err: SpillwayError) => void;
  private readonly options: PendingRequestOptions;
  private readonly timer: NodeJS.Timeout;
  private done = false;
  /** Set once the SSE head is written: from then on errors go out as SSE events. */
  private streamAttempt: number | undefined;
  private nextSeq = 0;

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
    options.reply.raw.on('close', this.onClientClose);
  }

  onMessage(message: ReplyMessage): void {
    if (this.done) return;
    switch (message.k) {
      case 'head':
        if (this.streamAttempt !== undefined) {
          // A second head: the job was re-run (its worker died). Replaying would duplicate tokens.
          this.abandon('stream_broken', streamInterrupted('The stream was interrupted: the worker serving it was lost.'));
        } else if (this.options.stream) {
          this.startStream(message.a, message.status);
        }
        return;
      case 'chunk':
        if (this.streamAttempt === undefined && message.seq === 0 && this.options.stream) this.startStream(message.a, 200);
        if (this.streamAttempt !== message.a || message.seq !== this.nextSeq) {
          this.abandon('stream_broken', streamInterrupted('The stream was interrupted: chunks were lost in transit.'));
          return;
        }
        this.nextSeq += message.data.length;
        this.options.reply.raw.write(message.data.length === 1 ? sseData(message.data[0]!) : message.data.map(sseData).join(''));
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

  private complete(result: Extract<CompletionResult, { kind: 'body' | 'stream' }>, attempt: number): void {
    if (result.kind === 'body') {
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
    if (this.streamAttempt === undefined) {
      this.reject(err);
      return;
    }
    // Headers are out: the error travels as an SSE event, which the OpenAI SDKs raise as an APIError.
    const raw = this.options.reply.raw;
    if (!raw.writableEnded) raw.end(sseData(JSON.stringify(toOpenAIError(err).body)));
    this.resolve({ kind: 'streamed', status: err.statusCode });
  }

  /** The job could not be enqueued: stop the deadline timer and the close listener, answer `err` as JSON. */
  failBeforeEnqueue(err: SpillwayError): void {
    if (this.done) return;
    this.fail(err);
  }

  private startStream(attempt: number, status: number): void {
    this.streamAttempt = attempt;
    const { reply } = this.options;
    reply.hijack();
    // No flushHeaders(): the head goes out with the first chunk, a tick later, in one write.
    reply.raw.writeHead(status, { ...SSE_HEADERS, 'x-request-id': this.options.requestId });
  }

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
    this.options.reply.raw.off('close', this.onClientClose);
    this.options.onFinish();
  }
}
