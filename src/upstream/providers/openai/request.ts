// Builds the HTTP request to an OpenAI-compatible API: path per endpoint, auth header, the client's body with the
// provider's model name. Never logs or returns the key: it only goes into the outgoing header.
import type { Endpoint } from '../../../config/schema.ts';
import type { ProviderRuntime } from '../../dispatcher.ts';

const PATHS: Record<Endpoint, string> = {
  'chat.completions': '/chat/completions',
  completions: '/completions',
  embeddings: '/embeddings',
  responses: '/responses',
};

export interface UpstreamRequest {
  path: string;
  headers: Record<string, string>;
  body: string;
}

export function buildOpenAIRequest(
  provider: ProviderRuntime,
  endpoint: Endpoint,
  body: Record<string, unknown>,
  model: string,
  extraHeaders: Record<string, string>,
): UpstreamRequest {
  const headers: Record<string, string> = {
    ...extraHeaders,
    ...provider.headers,
    'content-type': 'application/json',
    accept: body.stream === true ? 'text/event-stream' : 'application/json',
  };
  if (provider.apiKey !== undefined) headers.authorization = `Bearer ${provider.apiKey}`;
  return { path: provider.basePath + PATHS[endpoint], headers, body: JSON.stringify({ ...body, model }) };
}
