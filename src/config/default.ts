// The configuration used when no file is given: the built-in mock provider and one dev tenant, so that
// `spillway start` answers out of the box. Never points at a real provider or holds a real key.
import type { ConfigInput } from './schema.ts';

/** The documented development key of the built-in `dev` tenant. */
export const DEV_API_KEY = 'sk-spillway-dev';

export function defaultDevConfig(): ConfigInput {
  return {
    server: { forwardHeaders: ['x-mock-*'] },
    providers: [{ id: 'mock', type: 'mock', mock: { latencyMs: 20, chunks: 16, chunkDelayMs: 15 } }],
    models: [
      // The mock echoes the model it is asked for, so answers carry the names clients know.
      { name: 'gpt-4o-mini', route: [{ provider: 'mock', model: 'gpt-4o-mini' }] },
      { name: 'gpt-4.1', route: [{ provider: 'mock', model: 'gpt-4.1' }] },
      { name: 'gpt-3.5-turbo-instruct', route: [{ provider: 'mock', model: 'gpt-3.5-turbo-instruct' }], endpoints: ['completions'] },
      { name: 'text-embedding-3-small', route: [{ provider: 'mock', model: 'text-embedding-3-small' }], endpoints: ['embeddings'] },
    ],
    tenants: [{ id: 'dev', dev: true, keys: [DEV_API_KEY] }],
  };
}
