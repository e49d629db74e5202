// The `openai` adapter (any OpenAI-compatible API): the folder's functions composed into a ProviderAdapter.
// No translateJson: an OpenAI answer is relayed as the text it came as, never parsed on the hot path.
import type { ProviderAdapter } from '../adapter.ts';
import { buildOpenAIRequest } from './request.ts';
import { failureFromResponse } from './errors.ts';
import { readSseEvents } from './stream.ts';
import { openAIHealthProbe } from './health.ts';

export const openaiAdapter: ProviderAdapter = {
  serves: () => true,
  buildRequest: buildOpenAIRequest,
  failureFromResponse,
  readStream: (body, maxEventBytes, _context, onData) => readSseEvents(body, maxEventBytes, onData),
  healthProbe: openAIHealthProbe,
};
