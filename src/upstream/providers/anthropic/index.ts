// The `anthropic` adapter (the Messages API): the folder's functions composed into a ProviderAdapter. Chat only:
// a route target on this provider is skipped for text completions and embeddings.
import type { ProviderAdapter } from '../adapter.ts';
import { buildAnthropicRequest } from './request.ts';
import { translateAnthropicJson } from './response.ts';
import { failureFromAnthropicResponse } from './errors.ts';
import { readAnthropicStream } from './stream.ts';
import { anthropicHealthProbe } from './health.ts';

export const anthropicAdapter: ProviderAdapter = {
  serves: (endpoint) => endpoint === 'chat.completions',
  buildRequest: buildAnthropicRequest,
  failureFromResponse: failureFromAnthropicResponse,
  translateJson: translateAnthropicJson,
  readStream: readAnthropicStream,
  healthProbe: anthropicHealthProbe,
};
