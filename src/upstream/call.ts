// Makes the upstream call for one job: walks the route (fallbacks), retries retryable failures within the
// deadline, relays a stream chunk by chunk as it arrives. The only retry layer for completion jobs (BullMQ attempts = 1).
import type { Dispatcher } from 'undici';
import type { Logger } from 'pino';
import type { CompletionJob, CompletionResult } from '../queue/jobs.ts';
import type { JobReplies } from '../queue/reply-publisher.ts';
import type { Metrics } from '../observability/metrics.ts';
import type { ProviderRuntime } from './dispatcher.ts';
import { targetForAttempt, type RouteTarget } from './routing.ts';
import { ProviderCooldowns } from './retry-policy.ts';
import { buildOpenAIRequest } from './providers/openai/request.ts';
import { discardBody, readBodyCapped, SMALL_BODY_LIMIT } from './providers/openai/response.ts';
import { readSseEvents } from './providers/openai/stream.ts';
import {
  deadlineFailure,
  failureFromNetworkError,
  failureFromResponse,
  protocolFailure,
  tooLargeFailure,
  type UpstreamFailure,
} from './providers/openai/errors.ts';

export interface UpstreamDeps {
  providers: ReadonlyMap<string, ProviderRuntime>;
  metrics: Metrics;
  logger: Logger;
  maxAttempts: number;
}

type ErrorResult = Extract<CompletionResult, { kind: 'error' }>;
type Outcome = { ok: true; result: CompletionResult } | { ok: false; failure: UpstreamFailure };

/** Thrown when the job's own signal aborts (client gone, worker closing): no reply is due. */
export class CallCancelledError extends Error {
  constructor() {
    super('upstream call cancelled');
    this.name = 'CallCancelledError';
  }
}

export async function callUpstream(
  deps: UpstreamDeps,
  job: CompletionJob,
  targets: readonly RouteTarget[],
  replies: JobReplies,
  signal: AbortSignal,
): Promise<CompletionResult> {
  // A target whose provider this worker does not know (config drift between roles) is skipped, not fatal.
  const usable = targets.filter((t) => deps.providers.has(t.provider));
  const cooldowns = new ProviderCooldowns();
  let failure: UpstreamFailure | undefined;
  let target = targetForAttempt(usable, 0);
  for (let attempt = 0; attempt < deps.maxAttempts; attempt++) {
    const provider = target && deps.providers.get(target.provider);
    if (target === undefined || provider === undefined) break;
    const outcome = await attemptOnce(deps, job, target, provider, replies, signal);
    if (outcome.ok) return outcome.result;
    failure = outcome.failure;
    deps.logger.warn({ provider: provider.id, attempt, status: failure.status, kind: failure.kind, detail: failure.detail }, 'upstream attempt failed');
    // Once a chunk reached the client, a retry would duplicate tokens: the stream ends with an error instead.
    if (!failure.retryable || replies.chunkCount > 0 || attempt + 1 >= deps.maxAttempts) break;
    cooldowns.failed(provider.id, failure.retryAfterMs);
    const next = targetForAttempt(usable, attempt + 1);
    // The failed provider's Retry-After delays only a call to that provider: a fallback goes out at once.
    const delay = next === undefined ? undefined : cooldowns.delayBefore(next.provider, attempt, job.deadline - Date.now());
    if (delay === undefined) break;
    deps.metrics.upstreamRequests.inc({ provider: provider.id, outcome: 'retry' });
    if (delay > 0) await sleep(delay, signal);
    target = next;
  }
  return finalError(failure, replies.chunkCount > 0);
}

/**
 * One call to one provider. Three bounds, each reported as its own failure: the response head must come within
 * `timeoutMs` of the request being written to a socket (undici headersTimeout; the wait for a free pool
 * connection does not count), the body may not go silent longer than `streamIdleTimeoutMs` (undici bodyTimeout),
 * and the whole call ends at the job's deadline (an abort of our own, which is not "client gone").
 */
async function attemptOnce(
  deps: UpstreamDeps,
  job: CompletionJob,
  target: RouteTarget,
  provider: ProviderRuntime,
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
  const request = buildOpenAIRequest(provider, job.endpoint, job.body, target.model, { ...job.headers, 'x-request-id': job.requestId });
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
    const outcome = await readResponse(job, provider, response, replies, signal);
    succeeded = outcome.ok;
    return outcome;
  } catch (err) {
    if (jobSignal.aborted) throw new CallCancelledError();
    return { ok: false, failure: deadline.passed ? deadlineFailure() : failureFromNetworkError(err) };
  } finally {
    clearTimeout(timer);
    jobSignal.removeEventListener('abort', onJobAbort);
    const seconds = (performance.now() - started) / 1000;
    deps.metrics.upstreamDuration.observe({ provider: provider.id, status: String(status) }, seconds);
    // A 200 whose stream broke half-way is an error, not an ok: count what the attempt achieved.
    const outcome = jobSignal.aborted ? 'aborted' : succeeded ? 'ok' : 'error';
    deps.metrics.upstreamRequests.inc({ provider: provider.id, outcome });
  }
}

/** Reads an answer under its size caps: JSON up to maxResponseBytes, error and unexpected bodies up to a small cap. */
async function readResponse(job: CompletionJob, provider: ProviderRuntime, response: Dispatcher.ResponseData, replies: JobReplies, signal: AbortSignal): Promise<Outcome> {
  const { statusCode: status, headers, body } = response;
  if (status < 200 || status >= 300) {
    return { ok: false, failure: failureFromResponse(status, headers, await readBodyCapped(body, headers, SMALL_BODY_LIMIT)) };
  }
  const contentType = String(headers['content-type'] ?? '');
  if (job.stream && contentType.includes('text/event-stream')) return relayStream(body, status, provider, replies, signal);
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
  return { ok: true, result: { kind: 'body', status, body: text } };
}

/** Relays SSE events as they arrive; the head goes out with the first event, so a failure before it can be retried. */
async function relayStream(body: Dispatcher.ResponseData['body'], status: number, provider: ProviderRuntime, replies: JobReplies, signal: AbortSignal): Promise<Outcome> {
  let usage: unknown;
  const end = await readSseEvents(body, provider.maxResponseBytes, (data) => {
    if (replies.chunkCount === 0) replies.head(status, { 'content-type': 'text/event-stream; charset=utf-8' });
    replies.chunk(data);
    // Usage rides on the last chunk (stream_options.include_usage); parse only the chunk that carries it.
    if (data.includes('"usage":{')) usage = safeUsage(data);
  });
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

function safeUsage(data: string): unknown {
  try {
    return (JSON.parse(data) as { usage?: unknown }).usage;
  } catch {
    return undefined;
  }
}

function finalError(failure: UpstreamFailure | undefined, streamStarted: boolean): ErrorResult {
  if (failure === undefined) {
    return errorResult(502, {}, 'No upstream could serve this model.', 'api_error', 'no_route');
  }
  if (failure.kind === 'deadline') {
    return errorResult(504, {}, 'The request did not complete before its deadline.', 'timeout_error', 'deadline_exceeded');
  }
  if (failure.kind === 'too_large') {
    return errorResult(502, {}, 'The upstream answer exceeded the size this broker accepts.', 'api_error', 'upstream_response_too_large');
  }
  if (streamStarted) {
    const message = failure.kind === 'idle' ? 'The upstream stream stalled: no data within the idle timeout.' : 'The upstream stream was interrupted.';
    return errorResult(502, {}, message, 'api_error', 'stream_interrupted');
  }
  if (failure.clientError !== undefined) {
    return { kind: 'error', status: failure.status, headers: {}, error: failure.clientError };
  }
  if (failure.kind === 'status' && (failure.status === 429 || failure.status === 503)) {
    // Providers' rate limits and overloads are the broker's to absorb: the client gets an overload answer with a retry hint.
    const seconds = String(Math.max(1, Math.ceil((failure.retryAfterMs ?? 1000) / 1000)));
    return errorResult(503, { 'retry-after': seconds }, 'The upstream providers are overloaded; try again shortly.', 'server_error', 'upstream_overloaded');
  }
  if (failure.kind === 'timeout' || failure.kind === 'idle') {
    return errorResult(504, {}, 'The upstream did not answer in time.', 'timeout_error', 'upstream_timeout');
  }
  if (failure.kind === 'protocol') {
    return errorResult(502, {}, 'The upstream answered in a form the broker cannot relay.', 'api_error', 'upstream_error');
  }
  return errorResult(502, {}, `The upstream request failed after retries (${failure.status === 0 ? 'no response' : `status ${failure.status}`}).`, 'api_error', 'upstream_error');
}

function errorResult(status: number, headers: Record<string, string>, message: string, type: string, code: string): ErrorResult {
  return { kind: 'error', status, headers, error: { message, type, param: null, code } };
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(new CallCancelledError());
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(new CallCancelledError());
    };
    signal.addEventListener('abort', onAbort, { once: true });
  });
}
