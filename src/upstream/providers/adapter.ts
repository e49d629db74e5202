// The one interface every provider folder implements: build the HTTP request from the OpenAI-shaped job body, turn
// the answer (JSON or stream) and the errors back into OpenAI shapes, and say how to probe the provider's health.
// Adapters are pure translators: no retries, no breakers, no Redis, no knowledge of the queue or of Fastify.
import type { Dispatcher } from 'undici';
import type { Endpoint } from '../../config/schema.ts';
import type { ProviderRuntime } from '../dispatcher.ts';
import type { UpstreamFailure } from './openai/errors.ts';
import type { SseOutcome } from './openai/stream.ts';
import type { UpstreamRequest } from './openai/request.ts';

export type { UpstreamRequest } from './openai/request.ts';

/** What the stream reader needs from the job: the client's body (include_usage, tools) and the target model. */
export interface StreamContext {
  readonly body: Record<string, unknown>;
  readonly model: string;
}

/** How a relayed stream ended: an SseOutcome, or a failure the provider reported inside the stream. */
export type StreamEnd = SseOutcome | UpstreamFailure;

export interface ProviderAdapter {
  /** Whether the provider has this endpoint at all; a route target that cannot serve it is skipped. */
  serves(endpoint: Endpoint): boolean;
  /** The request, or a `refused` failure (nothing is sent) when this provider cannot carry the body out as asked. */
  buildRequest(
    provider: ProviderRuntime,
    endpoint: Endpoint,
    body: Record<string, unknown>,
    model: string,
    extraHeaders: Record<string, string>,
  ): UpstreamRequest | UpstreamFailure;
  /** A non-2xx answer (its body read up to a small cap; undefined when over it) as a normalised failure. */
  failureFromResponse(status: number, headers: Dispatcher.ResponseData['headers'], bodyText: string | undefined): UpstreamFailure;
  /**
   * Turns a 2xx JSON answer into the OpenAI body the client expects. Absent when the provider already answers in
   * OpenAI's shape: the text is then relayed as it came, never parsed (the hot path of the `openai` adapter).
   * `body` is the client's request body, for translations that depend on what was asked.
   */
  translateJson?: (text: string, endpoint: Endpoint, model: string, body?: Record<string, unknown>) => string | UpstreamFailure;
  /** Reads the provider's SSE body and hands on OpenAI `data:` payloads (chat.completion.chunk JSON) one by one. */
  readStream(body: Dispatcher.ResponseData['body'], maxEventBytes: number, context: StreamContext, onData: (data: string) => void): Promise<StreamEnd>;
  /** The GET request of the active health check: path (joined to the baseUrl's path unless absolute) and headers. */
  healthProbe(provider: ProviderRuntime, path: string | undefined): { path: string; headers: Record<string, string> };
}

/** Tells a failure reported inside a stream from the SseOutcome strings. */
export function isStreamFailure(end: StreamEnd): end is UpstreamFailure {
  return typeof end !== 'string';
}
