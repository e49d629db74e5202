// The `azure-openai` adapter: the folder's functions composed into a ProviderAdapter. Answers are OpenAI-shaped
// already (plus Azure's content-filter fields, kept for clients that read them), so JSON is relayed unparsed.
import type { ProviderAdapter } from '../adapter.ts';
import { buildAzureRequest } from './request.ts';
import { failureFromAzureResponse } from './errors.ts';
import { readAzureStream } from './stream.ts';
import { azureHealthProbe } from './health.ts';

export const azureOpenAIAdapter: ProviderAdapter = {
  serves: () => true,
  buildRequest: buildAzureRequest,
  failureFromResponse: failureFromAzureResponse,
  readStream: (body, maxEventBytes, _context, onData) => readAzureStream(body, maxEventBytes, onData),
  healthProbe: azureHealthProbe,
};
