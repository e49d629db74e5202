// One undici Pool per provider (keep-alive, bounded connections = the provider's maxConcurrency per worker).
// Never retries by itself: retries belong to call.ts, which knows about deadlines.
import { Pool } from 'undici';
import type { ProviderConfig } from '../config/schema.ts';

export interface ProviderRuntime {
  readonly id: string;
  readonly type: ProviderConfig['type'];
  /** Path prefix of the API (e.g. `/v1`), joined to endpoint paths. */
  readonly basePath: string;
  readonly apiKey: string | undefined;
  readonly headers: Readonly<Record<string, string>>;
  readonly timeoutMs: number;
  readonly pool: Pool;
}

/** `baseUrl` is required here: for `mock` providers the composition root passes the in-process mock's URL. */
export function createProviderRuntime(config: ProviderConfig, baseUrl: string): ProviderRuntime {
  const url = new URL(baseUrl);
  const pool = new Pool(url.origin, {
    connections: config.maxConcurrency,
    keepAliveTimeout: 30_000,
    // The request's own AbortSignal enforces the deadline; these only bound a silent peer.
    headersTimeout: config.timeoutMs,
    bodyTimeout: config.timeoutMs,
  });
  return {
    id: config.id,
    type: config.type,
    basePath: url.pathname.replace(/\/+$/, ''),
    apiKey: config.apiKey,
    headers: config.headers,
    timeoutMs: config.timeoutMs,
    pool,
  };
}

export async function closeProviderRuntimes(providers: Iterable<ProviderRuntime>): Promise<void> {
  await Promise.all([...providers].map((p) => p.pool.close().catch(() => p.pool.destroy())));
}
