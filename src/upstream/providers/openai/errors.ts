// Normalises an upstream failure (HTTP status, network error, timeout, malformed or oversized answer) into
// {kind, status, retryable, retryAfterMs}. Upstream auth problems are the operator's, never "your key is wrong".
import { parseRateLimitReset, parseRetryAfter } from '../../retry-policy.ts';

/**
 * What went wrong, for the final answer and the logs: `status` an HTTP error answer; `timeout` no response head
 * within timeoutMs; `idle` the body went silent longer than streamIdleTimeoutMs; `network` the connection failed;
 * `deadline` the job's deadline passed; `too_large` the answer exceeded a size cap; `protocol` an answer that
 * cannot be relayed (wrong content type, a stream that ends without [DONE]); `refused` the adapter could not carry the
 * request to this provider (an endpoint or field it lacks) and nothing was sent.
 */
export type FailureKind = 'status' | 'timeout' | 'idle' | 'network' | 'deadline' | 'too_large' | 'protocol' | 'refused';

export interface UpstreamFailure {
  kind: FailureKind;
  /** Upstream HTTP status; 0 when no response came (network error, timeout). */
  status: number;
  retryable: boolean;
  retryAfterMs: number | undefined;
  /** What may be shown to the client when this is the final failure (only for client-caused 4xx). */
  clientError: { message: string; type: string; param: string | null; code: string | null } | undefined;
  /** For logs; never contains a secret. */
  detail: string;
}

/** `bodyText` is undefined when the body was not read (over the error-body cap): the status alone decides. */
export function failureFromResponse(status: number, headers: Record<string, string | string[] | undefined>, bodyText: string | undefined): UpstreamFailure {
  const retryable = status === 408 || status === 409 || status === 429 || status >= 500;
  const error = bodyText === undefined ? undefined : parseErrorObject(bodyText);
  // 400/413/422: the client's request was refused on its merits; its message helps the client fix it.
  const clientCaused = status === 400 || status === 413 || status === 422;
  return {
    kind: 'status',
    status,
    retryable,
    // A 429 without Retry-After still says when its budget resets (x-ratelimit-reset-*): the deployment's pause.
    retryAfterMs: parseRetryAfter(headers) ?? (status === 429 ? parseRateLimitReset(headers) : undefined),
    clientError: clientCaused ? (error ?? { message: `Upstream rejected the request (${status}).`, type: 'invalid_request_error', param: null, code: null }) : undefined,
    detail: `upstream answered ${status}${error ? `: ${error.message.slice(0, 200)}` : bodyText === undefined ? ' (error body over the size cap, not read)' : ''}`,
  };
}

/** A thrown transport error: undici's own timeouts are told apart from a failed connection by their codes. */
export function failureFromNetworkError(err: unknown): UpstreamFailure {
  const code = typeof err === 'object' && err !== null ? (err as { code?: unknown }).code : undefined;
  if (code === 'UND_ERR_HEADERS_TIMEOUT') return failure('timeout', 0, true, 'upstream timed out (no response head in time)');
  // Retryable only while no chunk has reached the client: the call loop checks that.
  if (code === 'UND_ERR_BODY_TIMEOUT') return failure('idle', 0, true, 'upstream went silent mid-body (stream idle timeout)');
  const message = err instanceof Error ? `: ${err.message.slice(0, 200)}` : '';
  return failure('network', 0, true, `upstream connection failed${typeof code === 'string' ? ` (${code})` : ''}${message}`);
}

/** The job's deadline passed during the call: nobody waits any more, so no retry. */
export function deadlineFailure(): UpstreamFailure {
  return failure('deadline', 0, false, 'job deadline reached during the upstream call');
}

/** An answer over a size cap: the provider would answer the same again, so no retry. */
export function tooLargeFailure(status: number, detail: string): UpstreamFailure {
  return failure('too_large', status, false, detail);
}

/** An answer that cannot be relayed as it is (wrong content type, a stream cut short without an error). */
export function protocolFailure(status: number, retryable: boolean, detail: string): UpstreamFailure {
  return failure('protocol', status, retryable, detail);
}

/** A request an adapter cannot translate for its provider: a 400 naming the field, sent nowhere, never retried. */
export function clientFailure(message: string, param: string | null, detail: string): UpstreamFailure {
  return { ...failure('refused', 400, false, detail), clientError: { message, type: 'invalid_request_error', param, code: null } };
}

function failure(kind: FailureKind, status: number, retryable: boolean, detail: string): UpstreamFailure {
  return { kind, status, retryable, retryAfterMs: undefined, clientError: undefined, detail };
}

function parseErrorObject(text: string): UpstreamFailure['clientError'] {
  try {
    const parsed = JSON.parse(text) as { error?: { message?: unknown; type?: unknown; param?: unknown; code?: unknown } };
    const e = parsed.error;
    if (e === undefined || typeof e.message !== 'string') return undefined;
    return {
      message: e.message,
      type: typeof e.type === 'string' ? e.type : 'invalid_request_error',
      param: typeof e.param === 'string' ? e.param : null,
      code: typeof e.code === 'string' ? e.code : null,
    };
  } catch {
    return undefined;
  }
}
