// Makes the upstream call for one job: walks the route (fallbacks), retries retryable failures within the
// deadline, relays a stream chunk by chunk as it arrives. The only retry layer for completion jobs (BullMQ attempts = 1).
import { createParser } from 'eventsource-parser';
import type { Logger } from 'pino';
import type { CompletionJob, CompletionResult } from '../queue/jobs.ts';
import type { JobReplies } from '../queue/reply-publisher.ts';
import type { Metrics } from '../observability/metrics.ts';
import type { ProviderRuntime } from './dispatcher.ts';
import { targetForAttempt, type RouteTarget } from './routing.ts';
import { retryDelayMs } from './retry-policy.ts';
import { buildOpenAIRequest } from './providers/openai/request.ts';
import { failureFromNetworkError, failureFromResponse, type UpstreamFailure } from './providers/openai/errors.ts';

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
  let failure: UpstreamFailure | undefined;
  for (let attempt = 0; attempt < deps.maxAttempts; attempt++) {
    const target = targetForAttempt(targets, attempt);
    const provider = target && deps.providers.get(target.provider);
    if (target === undefined || provider === undefined) break;
    const outcome = await attemptOnce(deps, job, target, provider, replies, signal);
    if (outcome.ok) return outcome.result;
    failure = outcome.failure;
    deps.logger.warn({ provider: provider.id, attempt, status: failure.status, detail: failure.detail }, 'upstream attempt failed');
    // Once a chunk reached the client, a retry would duplicate tokens: the stream ends with an error instead.
    if (!failure.retryable || replies.chunkCount > 0) break;
    const delay = retryDelayMs(attempt, failure.retryAfterMs, job.deadline - Date.now());
    if (delay === undefined || attempt + 1 >= deps.maxAttempts) break;
    deps.metrics.upstreamRequests.inc({ provider: provider.id, outcome: 'retry' });
    await sleep(delay, signal);
  }
  return finalError(failure, replies.chunkCount > 0);
}

async function attemptOnce(
  deps: UpstreamDeps,
  job: CompletionJob,
  target: RouteTarget,
  provider: ProviderRuntime,
  replies: JobReplies,
  jobSignal: AbortSignal,
): Promise<Outcome> {
  if (jobSignal.aborted) throw new CallCancelledError();
  const timeoutMs = Math.max(1, Math.min(provider.timeoutMs, job.deadline - Date.now()));
  // One controller, a timer and a listener: AbortSignal.any/timeout cost more per call and are only
  // released by GC, which on the hot path shows up as memory held after a burst.
  const controller = new AbortController();
  const timeout = { aborted: false };
  const timer = setTimeout(() => {
    timeout.aborted = true;
    controller.abort(new Error('upstream attempt timed out'));
  }, timeoutMs);
  const onJobAbort = () => controller.abort(jobSignal.reason);
  jobSignal.addEventListener('abort', onJobAbort, { once: true });
  const signal = controller.signal;
  const request = buildOpenAIRequest(provider, job.endpoint, job.body, target.model, { ...job.headers, 'x-request-id': job.requestId });
  const started = performance.now();
  let status = 0;
  let succeeded = false;
  try {
    const response = await provider.pool.request({ method: 'POST', path: request.path, headers: request.headers, body: request.body, signal });
    status = response.statusCode;
    if (status < 200 || status >= 300) {
      const text = await response.body.text();
      return { ok: false, failure: failureFromResponse(status, response.headers, text) };
    }
    const contentType = String(response.headers['content-type'] ?? '');
    if (job.stream && contentType.includes('text/event-stream')) {
      const relayed = await relayStream(response.body, status, replies, signal);
      succeeded = relayed.ok;
      return relayed;
    }
    const text = await response.body.text();
    if (!contentType.includes('json')) {
      return { ok: false, failure: { ...failureFromResponse(502, {}, ''), detail: `upstream answered ${status} with content-type "${contentType}"` } };
    }
    if (job.stream) {
      // The provider ignored `stream: true`. Dressing its JSON answer up as chunks would not be what the
      // provider said: fail clearly instead (not retryable: it would do the same again).
      return { ok: false, failure: { ...failureFromResponse(502, {}, ''), retryable: false, detail: 'upstream did not stream' } };
    }
    succeeded = true;
    return { ok: true, result: { kind: 'body', status, body: text } };
  } catch (err) {
    if (jobSignal.aborted) throw new CallCancelledError();
    return { ok: false, failure: failureFromNetworkError(err, timeout.aborted) };
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

/** Relays SSE events as they arrive; the head goes out with the first event, so a failure before it can be retried. */
async function relayStream(body: AsyncIterable<Buffer | string> & { setEncoding(e: BufferEncoding): unknown }, status: number, replies: JobReplies, signal: AbortSignal): Promise<Outcome> {
  let finished = false;
  let usage: unknown;
  const parser = createParser({
    onEvent(event) {
      if (finished) return;
      if (event.data === '[DONE]') {
        finished = true;
        return;
      }
      if (replies.chunkCount === 0) replies.head(status, { 'content-type': 'text/event-stream; charset=utf-8' });
      replies.chunk(event.data);
      // Usage rides on the last chunk (stream_options.include_usage); parse only the chunk that carries it.
      if (event.data.includes('"usage":{')) usage = safeUsage(event.data);
    },
  });
  body.setEncoding('utf8');
  for await (const text of body) {
    if (signal.aborted) break;
    parser.feed(text as string);
  }
  if (!finished) {
    if (signal.aborted) throw signal.reason;
    return { ok: false, failure: { ...failureFromNetworkError(undefined, false), detail: 'upstream stream ended before [DONE]' } };
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
  if (streamStarted) return errorResult(502, {}, 'The upstream stream was interrupted.', 'api_error', 'stream_interrupted');
  if (failure.clientError !== undefined) {
    const e = failure.clientError;
    return { kind: 'error', status: failure.status, headers: {}, error: e };
  }
  if (failure.status === 429) {
    // Providers' rate limits are the broker's to absorb: the client gets an overload answer with a retry hint.
    const seconds = String(Math.max(1, Math.ceil((failure.retryAfterMs ?? 1000) / 1000)));
    return errorResult(503, { 'retry-after': seconds }, 'The upstream providers are overloaded; try again shortly.', 'server_error', 'upstream_overloaded');
  }
  if (failure.status === 0 && failure.detail === 'upstream timed out') {
    return errorResult(504, {}, 'The upstream did not answer in time.', 'timeout_error', 'upstream_timeout');
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
