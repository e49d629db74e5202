// The active health probe of the Anthropic API: GET {baseUrl}/models with x-api-key and anthropic-version.
// Builds the request only; the health-check runner sends it and judges the answer.
import type { ProviderRuntime } from '../../dispatcher.ts';

export function anthropicHealthProbe(provider: ProviderRuntime, path: string | undefined): { path: string; headers: Record<string, string> } {
  const headers: Record<string, string> = { ...provider.headers, accept: 'application/json', 'anthropic-version': provider.anthropicVersion };
  if (provider.apiKey !== undefined) headers['x-api-key'] = provider.apiKey;
  return { path: provider.basePath + (path ?? '/models'), headers };
}
