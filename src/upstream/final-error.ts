// The answer a job gets when no deployment answered: the status a client SDK expects for the last failure, and a
// message naming what was tried (deployments and how each ended). Never names a key or shows an upstream's raw body.
import type { CompletionResult } from '../queue/jobs.ts';
import type { UpstreamFailure } from './providers/openai/errors.ts';

export type ErrorResult = Extract<CompletionResult, { kind: 'error' }>;

/** One deployment the job tried or skipped, for the final message and the logs. */
export interface Tried {
  deployment: string;
  outcome: string;
}

/** How a failure reads in "what was tried". */
export function describeFailure(failure: UpstreamFailure): string {
  switch (failure.kind) {
    case 'status':
      return `status ${failure.status}`;
    case 'timeout':
      return 'no response in time';
    case 'idle':
      return 'stream stalled';
    case 'network':
      return 'connection failed';
    case 'deadline':
      return 'deadline reached';
    case 'too_large':
      return 'answer too large';
    case 'protocol':
      return 'unusable answer';
    case 'refused':
      return 'cannot carry this request';
    default:
      return failure.kind satisfies never;
  }
}

/** " Tried: a/m1 (status 500), b/m2 (connection failed)." — each deployment once, with its last outcome. */
function triedText(tried: readonly Tried[]): string {
  if (tried.length === 0) return '';
  const last = new Map<string, string>();
  for (const entry of tried) {
    last.delete(entry.deployment);
    last.set(entry.deployment, entry.outcome);
  }
  return ` Tried: ${[...last].map(([deployment, outcome]) => `${deployment} (${outcome})`).join(', ')}.`;
}

export function finalError(failure: UpstreamFailure | undefined, streamStarted: boolean, tried: readonly Tried[]): ErrorResult {
  const what = triedText(tried);
  if (failure === undefined) {
    return errorResult(502, {}, `No upstream could serve this model.${what}`, 'api_error', 'no_route');
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
    return errorResult(503, { 'retry-after': seconds }, `The upstream providers are overloaded; try again shortly.${what}`, 'server_error', 'upstream_overloaded');
  }
  if (failure.kind === 'timeout' || failure.kind === 'idle') {
    return errorResult(504, {}, `The upstream did not answer in time.${what}`, 'timeout_error', 'upstream_timeout');
  }
  if (failure.kind === 'protocol') {
    return errorResult(502, {}, `The upstream answered in a form the broker cannot relay.${what}`, 'api_error', 'upstream_error');
  }
  return errorResult(502, {}, `The upstream request failed after retries (${failure.status === 0 ? 'no response' : `status ${failure.status}`}).${what}`, 'api_error', 'upstream_error');
}

/** Every target has its breaker open: 503 with the time until the earliest may be probed again. */
export function allOpenResult(retryAfterMs: number, tried: readonly Tried[]): ErrorResult {
  const seconds = String(Math.max(1, Math.ceil(retryAfterMs / 1000)));
  return errorResult(
    503,
    { 'retry-after': seconds },
    `Every upstream of this model is unavailable right now (circuit breaker open); try again shortly.${triedText(tried)}`,
    'server_error',
    'upstream_unavailable',
  );
}

export function errorResult(status: number, headers: Record<string, string>, message: string, type: string, code: string): ErrorResult {
  return { kind: 'error', status, headers, error: { message, type, param: null, code } };
}
