// Normalises Anthropic error answers: `{"type":"error","error":{"type","message"}}` (the same nesting as OpenAI's, so the
// OpenAI reader finds message and type), with 529 overloaded_error treated as the 503 it means. Never echoes a key.
import type { Dispatcher } from 'undici';
import { failureFromResponse, protocolFailure, type UpstreamFailure } from '../openai/errors.ts';

/** Anthropic's own status for "overloaded": retryable, and shown to clients as the broker's 503, like a provider's 503. */
const OVERLOADED = 529;

/** Anthropic error types a client can act on; the rest become invalid_request_error when the status is the client's. */
const CLIENT_TYPES = new Set(['invalid_request_error', 'not_found_error', 'permission_error', 'authentication_error']);

export function failureFromAnthropicResponse(status: number, headers: Dispatcher.ResponseData['headers'], bodyText: string | undefined): UpstreamFailure {
  if (status === OVERLOADED) {
    return { ...failureFromResponse(503, headers, bodyText), detail: `anthropic answered 529 (overloaded)${bodyText === undefined ? '' : `: ${bodyText.slice(0, 200)}`}` };
  }
  const failure = failureFromResponse(status, headers, bodyText);
  const clientError = failure.clientError;
  // request_too_large (413) and other Anthropic-only types are shown in OpenAI's vocabulary.
  if (clientError !== undefined && !CLIENT_TYPES.has(clientError.type)) return { ...failure, clientError: { ...clientError, type: 'invalid_request_error' } };
  return failure;
}

/** An `event: error` inside a stream, e.g. overloaded_error mid-answer: the status its type stands for, retryable when that is. */
export function failureFromStreamError(data: string): UpstreamFailure {
  let type = 'api_error';
  try {
    const parsed = JSON.parse(data) as { error?: { type?: unknown } };
    if (typeof parsed.error?.type === 'string') type = parsed.error.type;
  } catch {
    return protocolFailure(200, true, 'anthropic stream error event that is not JSON');
  }
  const status = STREAM_ERROR_STATUS[type] ?? 500;
  return { ...failureFromAnthropicResponse(status, {}, data), detail: `anthropic stream error event (${type})` };
}

const STREAM_ERROR_STATUS: Record<string, number> = {
  overloaded_error: OVERLOADED,
  api_error: 500,
  rate_limit_error: 429,
  timeout_error: 504,
  invalid_request_error: 400,
};
