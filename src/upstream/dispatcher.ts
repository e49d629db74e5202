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
  /** Longest wait for the response head, counted from the moment the request is written to a socket. */
  readonly timeoutMs: number;
  /** Longest silence between two pieces of a body (a stream's chunk gap). */
  readonly streamIdleTimeoutMs: number;
  /** Largest JSON answer read, and largest single SSE event held. */
  readonly maxResponseBytes: number;
  readonly pool: Pool;
}

/** `baseUrl` is required here: for `mock` providers the composition root passes the in-process mock's URL. */
export function createProviderRuntime(config: ProviderConfig, baseUrl: string): ProviderRuntime {
  const url = new URL(baseUrl);
  const pool = new Pool(url.origin, {
    connections: config.maxConcurrency,
    keepAliveTimeout: 30_000,
    // undici starts headersTimeout when the request is written to a socket, not while it waits in the pool for a
    // free connection, and restarts bodyTimeout at each piece of body: so neither the wait for a connection nor a
    // long healthy stream counts against them. The job's deadline bounds the whole call (call.ts aborts at it).
    headersTimeout: config.timeoutMs,
    bodyTimeout: config.streamIdleTimeoutMs,
  });
  return {
    id: config.id,
    type: config.type,
    basePath: url.pathname.replace(/\/+$/, ''),
    apiKey: config.apiKey,
    headers: config.headers,
    timeoutMs: config.timeoutMs,
    streamIdleTimeoutMs: config.streamIdleTimeoutMs,
    maxResponseBytes: config.maxResponseBytes,
    pool,
  };
}

export async function closeProviderRuntimes(providers: Iterable<ProviderRuntime>): Promise<void> {
  await Promise.all([...providers].map((p) => p.pool.close().catch(() => p.pool.destroy())));
}
