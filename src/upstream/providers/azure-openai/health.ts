// The active health probe of an Azure OpenAI resource: GET {baseUrl}/openai/models?api-version=… with the api-key.
// Builds the request only; the health-check runner sends it and judges the answer.
import type { ProviderRuntime } from '../../dispatcher.ts';

export function azureHealthProbe(provider: ProviderRuntime, path: string | undefined): { path: string; headers: Record<string, string> } {
  const headers: Record<string, string> = { ...provider.headers, accept: 'application/json' };
  if (provider.apiKey !== undefined) headers['api-key'] = provider.apiKey;
  const base = provider.basePath + (path ?? '/openai/models');
  const query = base.includes('api-version=') ? '' : `${base.includes('?') ? '&' : '?'}api-version=${encodeURIComponent(provider.apiVersion ?? '')}`;
  return { path: base + query, headers };
}
