// The active health probe of an OpenAI-compatible API: GET {baseUrl}/models with the provider's key.
// Builds the request only; the health-check runner sends it and judges the answer.
import type { ProviderRuntime } from '../../dispatcher.ts';

export function openAIHealthProbe(provider: ProviderRuntime, path: string | undefined): { path: string; headers: Record<string, string> } {
  const headers: Record<string, string> = { ...provider.headers, accept: 'application/json' };
  if (provider.apiKey !== undefined) headers.authorization = `Bearer ${provider.apiKey}`;
  return { path: provider.basePath + (path ?? '/models'), headers };
}
