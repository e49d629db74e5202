// Normalises an upstream failure (HTTP status or network error) into {status, retryable, retryAfterMs, error}.
// Upstream auth problems are the operator's, not the client's: they never surface as "your key is wrong".
import { parseRetryAfter } from '../../retry-policy.ts';

export interface UpstreamFailure {
  /** Upstream HTTP status; 0 when no response came (network error, timeout). */
  status: number;
  retryable: boolean;
  retryAfterMs: number | undefined;
  /** What may be shown to the client when this is the final failure (only for client-caused 4xx). */
  clientError: { message: string; type: string; param: string | null; code: string | null } | undefined;
  /** For logs; never contains a secret. */
  detail: string;
}

export function failureFromResponse(status: number, headers: Record<string, string | string[] | undefined>, bodyText: string): UpstreamFailure {
  const retryable = status === 408 || status === 409 || status === 429 || status >= 500;
  const error = parseErrorObject(bodyText);
  // 400/413/422: the client's request was refused on its merits; its message helps the client fix it.
  const clientCaused = status === 400 || status === 413 || status === 422;
  return {
    status,
    retryable,
    retryAfterMs: parseRetryAfter(headers),
    clientError: clientCaused ? (error ?? { message: `Upstream rejected the request (${status}).`, type: 'invalid_request_error', param: null, code: null }) : undefined,
    detail: `upstream answered ${status}${error ? `: ${error.message.slice(0, 200)}` : ''}`,
  };
}

export function failureFromNetworkError(err: unknown, timedOut: boolean): UpstreamFailure {
  const code = (err as { code?: unknown }).code;
  return {
    status: 0,
    retryable: true,
    retryAfterMs: undefined,
    clientError: undefined,
    detail: timedOut
      ? 'upstream timed out'
      : `upstream connection failed${typeof code === 'string' ? ` (${code})` : ''}${err instanceof Error ? `: ${err.message.slice(0, 200)}` : ''}`,
  };
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
