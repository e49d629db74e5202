// Builds the HTTP request to Azure OpenAI: {baseUrl}/openai/deployments/{deployment}/{endpoint}?api-version=…, the key
// in the `api-key` header. A route target's `model` is the deployment name. Never logs or returns the key.
import type { Endpoint } from '../../../config/schema.ts';
import type { ProviderRuntime } from '../../dispatcher.ts';
import type { UpstreamRequest } from '../openai/request.ts';

const PATHS: Record<Endpoint, string> = {
  'chat.completions': '/chat/completions',
  completions: '/completions',
  embeddings: '/embeddings',
  responses: '/responses',
};

export function buildAzureRequest(
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
  if (provider.apiKey !== undefined) headers['api-key'] = provider.apiKey;
  // The Responses API is not under a deployment: /openai/responses, the deployment named by the body's `model`.
  const resource = endpoint === 'responses' ? '/openai' : `/openai/deployments/${encodeURIComponent(model)}`;
  const path = `${provider.basePath}${resource}${PATHS[endpoint]}?api-version=${encodeURIComponent(provider.apiVersion ?? '')}`;
  // Azure routes on the deployment in the path; the body's `model` names it too, as Azure's own SDKs send it.
  return { path, headers, body: JSON.stringify({ ...body, model }) };
}
