// One call to one deployment, as the route walk makes it: the request out, the answer read under its size caps, a stream
// relayed event by event as it arrives (and, for the response cache, kept while it stays under the entry cap).
// Never retries and never chooses a target: route-walk.ts does both.
import { isForcedUsageChunk } from './usage-request.ts';
import type { Dispatcher } from 'undici';
import type { CompletionJob, CompletionResult } from '../queue/jobs.ts';
import type { JobReplies } from '../queue/reply-publisher.ts';
import type { Metrics } from '../observability/metrics.ts';
import type { ProviderRuntime } from './dispatcher.ts';
import type { RouteTarget } from '../catalogue/catalogue.ts';
import { isStreamFailure, type UpstreamRequest } from './providers/adapter.ts';
import { discardBody, readBodyCapped, SMALL_BODY_LIMIT } from './providers/openai/response.ts';
import { deadlineFailure, failureFromNetworkError, protocolFailure, tooLargeFailure, type UpstreamFailure } from './providers/openai/errors.ts';

/** A call's result, and the time its response head took (for the latency strategy), when one came. */
export type Outcome = { ok: true; result: CompletionResult; headMs: number } | { ok: false; failure: UpstreamFailure; headMs?: number };

/** Thrown when the job's own signal aborts (client gone, worker closing): no reply is due. */
export class CallCancelledError extends Error {
  constructor() {
    super('upstream call cancelled');
    this.name = 'CallCancelledError';
  }
}

/** A stream's data payloads kept for the response cache, while they stay under `maxBytes`. */
export interface StreamCapture {
  readonly maxBytes: number;
  chunks: string[];
  bytes: number;
  /** Past maxBytes: nothing more is kept and the answer is not stored. */
  overflow: boolean;
}

export interface AttemptContext {
  metrics: Metrics;
  /** Headers a stream's head carries (x-spillway-deployment, x-spillway-attempts). */
  headHeaders: Record<string, string>;
  capture: StreamCapture | undefined;
}

/**
 * One call to one provider. Three bounds, each reported as its own failure: the response head must come within
 * `timeoutMs` of the request being written to a socket (undici headersTimeout; the wait for a free pool
 * connection does not count), the body may not go silent longer than `streamIdleTimeoutMs` (undici bodyTimeout),
 * and the whole call ends at the job's deadline (an abort of our own, which is not "client gone").
 */
export async function attemptOnce(
  ctx: AttemptContext,
  job: CompletionJob,
  target: RouteTarget,
  provider: ProviderRuntime,
  request: UpstreamRequest,
  replies: JobReplies,
  jobSignal: AbortSignal,
): Promise<Outcome> {
  if (jobSignal.aborted) throw new CallCancelledError();
  const msLeft = job.deadline - Date.now();
  if (msLeft <= 0) return { ok: false, failure: deadlineFailure() };
  // One controller, a timer and a listener: AbortSignal.any/timeout cost more per call and are only
  // released by GC, which on the hot path shows up as memory held after a burst.
  const controller = new AbortController();
  const deadline = { passed: false };
  const timer = setTimeout(() => {
    deadline.passed = true;
    controller.abort(new Error('job deadline reached'));
  }, msLeft);
  const onJobAbort = () => controller.abort(jobSignal.reason);
  jobSignal.addEventListener('abort', onJobAbort, { once: true });
  const signal = controller.signal;
  const started = performance.now();
  let status = 0;
  let succeeded = false;
  try {
    const response = await provider.pool.request({
      method: 'POST',
      path: request.path,
      headers: request.headers,
      body: request.body,
      signal,
      // Never longer than the time left: a head arriving after the deadline is of no use.
      headersTimeout: Math.max(1, Math.min(provider.timeoutMs, msLeft)),
    });
    status = response.statusCode;
    const headMs = performance.now() - started;
    const outcome = await readResponse(ctx, job, target, provider, response, replies, signal);
    succeeded = outcome.ok;
    return { ...outcome, headMs };
  } catch (err) {
    if (jobSignal.aborted) throw new CallCancelledError();
    return { ok: false, failure: deadline.passed ? deadlineFailure() : failureFromNetworkError(err) };
  } finally {
    clearTimeout(timer);
    jobSignal.removeEventListener('abort', onJobAbort);
    const seconds = (performance.now() - started) / 1000;
    const deployment = `${target.provider}/${target.model}`;
    ctx.metrics.upstreamDuration.observe({ provider: provider.id, deployment, status: String(status) }, seconds);
    // A 200 whose stream broke half-way is an error, not an ok: count what the attempt achieved.
    const outcome = jobSignal.aborted ? 'aborted' : succeeded ? 'ok' : status === 429 ? 'rate_limited' : 'error';
    ctx.metrics.upstreamRequests.inc({ provider: provider.id, deployment, outcome });
  }
}

type Read = { ok: true; result: CompletionResult } | { ok: false; failure: UpstreamFailure };

/** Reads an answer under its size caps: JSON up to maxResponseBytes, error and unexpected bodies up to a small cap. */
async function readResponse(
  ctx: AttemptContext,
  job: CompletionJob,
  target: RouteTarget,
  provider: ProviderRuntime,
  response: Dispatcher.ResponseData,
  replies: JobReplies,
  signal: AbortSignal,
): Promise<Read> {
  const { statusCode: status, headers, body } = response;
  if (status < 200 || status >= 300) {
    return { ok: false, failure: provider.adapter.failureFromResponse(status, headers, await readBodyCapped(body, headers, SMALL_BODY_LIMIT)) };
  }
  const contentType = String(headers['content-type'] ?? '');
  if (job.stream && contentType.includes('text/event-stream')) return relayStream(ctx, body, status, job, target, provider, replies, signal);
  if (!contentType.includes('json')) {
    await discardBody(body);
    return { ok: false, failure: protocolFailure(status, true, `upstream answered ${status} with content-type "${contentType.slice(0, 100)}"`) };
  }
  if (job.stream) {
    // The provider ignored `stream: true`. Dressing its JSON answer up as chunks would not be what the
    // provider said: fail clearly instead (not retryable: it would do the same again).
    await discardBody(body);
    return { ok: false, failure: protocolFailure(status, false, 'upstream did not stream') };
  }
  const text = await readBodyCapped(body, headers, provider.maxResponseBytes);
  if (text === undefined) {
    return { ok: false, failure: tooLargeFailure(status, `upstream answer over maxResponseBytes (${provider.maxResponseBytes})`) };
  }
  // An OpenAI-shaped answer (no translateJson) is relayed as the text it came as: no parse on the hot path.
  const translate = provider.adapter.translateJson;
  if (translate === undefined) return { ok: true, result: { kind: 'body', status, body: text } };
  const translated = translate(text, job.endpoint, target.model, job.body);
  if (typeof translated !== 'string') return { ok: false, failure: translated };
  return { ok: true, result: { kind: 'body', status, body: translated } };
}

/** Relays SSE events as they arrive; the head goes out with the first event, so a failure before it can be retried. */
async function relayStream(
  ctx: AttemptContext,
  body: Dispatcher.ResponseData['body'],
  status: number,
  job: CompletionJob,
  target: RouteTarget,
  provider: ProviderRuntime,
  replies: JobReplies,
  signal: AbortSignal,
): Promise<Read> {
  let usage: unknown;
  const capture = ctx.capture;
  const end = await provider.adapter.readStream(body, provider.maxResponseBytes, { body: job.body, model: target.model }, (data) => {
    // Usage rides on the last chunk (stream_options.include_usage); parse only the chunk that carries it.
    if (data.includes('"usage":{')) usage = safeUsage(data);
    // Asked for the token budget only: the client's stream stays as it asked (src/upstream/usage-request.ts).
    if (isForcedUsageChunk(job.body, data)) return;
    if (replies.chunkCount === 0) replies.head(status, { 'content-type': 'text/event-stream; charset=utf-8', ...ctx.headHeaders });
    replies.chunk(data);
    if (capture !== undefined && !capture.overflow) keep(capture, data);
  });
  if (isStreamFailure(end)) {
    // An error the provider reported inside the stream (Anthropic's `event: error`): an abort may also end it.
    signal.throwIfAborted();
    return { ok: false, failure: end };
  }
  if (end === 'too_large') {
    return { ok: false, failure: tooLargeFailure(status, `an upstream stream event over maxResponseBytes (${provider.maxResponseBytes})`) };
  }
  if (end === 'ended') {
    // An abort can end the body quietly: let the caller tell the deadline or a cancel from a short stream.
    signal.throwIfAborted();
    return { ok: false, failure: protocolFailure(status, true, 'upstream stream ended before [DONE]') };
  }
  return { ok: true, result: usage === undefined ? { kind: 'stream', chunks: replies.chunkCount } : { kind: 'stream', chunks: replies.chunkCount, usage } };
}

function keep(capture: StreamCapture, data: string): void {
  capture.bytes += Buffer.byteLength(data) + 3; // as stored: a JSON array of strings (quotes and comma)
  if (capture.bytes > capture.maxBytes) {
    capture.overflow = true;
    capture.chunks = [];
    return;
  }
  capture.chunks.push(data);
}

function safeUsage(data: string): unknown {
  try {
    // A chat chunk carries `usage`; a Responses terminal event carries it in its `response`.
    const parsed = JSON.parse(data) as { usage?: unknown; response?: { usage?: unknown } };
    return parsed.usage ?? parsed.response?.usage;
  } catch {
    return undefined;
  }
}
