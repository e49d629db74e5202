// Which adapter speaks for which provider type. `mock` providers are the built-in mock upstream, which speaks OpenAI.
// Lookup only: an adapter is chosen once per provider when its runtime is built, never per request.
import type { ProviderConfig } from '../../config/schema.ts';
import type { ProviderAdapter } from './adapter.ts';
import { openaiAdapter } from './openai/index.ts';
import { azureOpenAIAdapter } from './azure-openai/index.ts';
import { anthropicAdapter } from './anthropic/index.ts';

const ADAPTERS: Record<ProviderConfig['type'], ProviderAdapter> = {
  openai: openaiAdapter,
  mock: openaiAdapter,
  'azure-openai': azureOpenAIAdapter,
  anthropic: anthropicAdapter,
};

export function adapterFor(type: ProviderConfig['type']): ProviderAdapter {
  return ADAPTERS[type];
}
