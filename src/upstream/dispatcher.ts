// One undici Pool per provider (keep-alive, bounded connections = the provider's maxConcurrency per worker).
// Never retries by itself: retries belong to call.ts, which knows about deadlines.
import { Pool } from 'undici';
import type { ProviderConfig } from '../config/schema.ts';
import type { ProviderAdapter } from './providers/adapter.ts';
import { adapterFor } from './providers/registry.ts';
import { defaultResponsesMode, withResponses } from '../responses/adapter.ts';
import { DEFAULT_ANTHROPIC_VERSION, DEFAULT_MAX_TOKENS } from './providers/anthropic/request.ts';

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
  /** Speaks the provider's format; chosen once here, never per request. */
  readonly adapter: ProviderAdapter;
  /** azure-openai: the api-version query parameter. */
  readonly apiVersion: string | undefined;
  /** anthropic: the anthropic-version header. */
  readonly anthropicVersion: string;
  /** anthropic: max_tokens when the client sets none. */
  readonly defaultMaxTokens: number;
  readonly circuitBreaker: ProviderConfig['circuitBreaker'];
  readonly healthCheck: ProviderConfig['healthCheck'];
  /** Pool-wide rpm / tpm / calls at once (src/upstream/pool-limits.ts); undefined: no Redis call for this provider. */
  readonly limits: ProviderConfig['limits'];
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
    // The Responses API wraps the provider's own adapter: natively, or bridged over its chat completions.
    adapter: withResponses(adapterFor(config.type), config.responses ?? defaultResponsesMode(config.type)),
    apiVersion: config.apiVersion,
    anthropicVersion: config.anthropicVersion ?? DEFAULT_ANTHROPIC_VERSION,
    defaultMaxTokens: config.defaultMaxTokens ?? DEFAULT_MAX_TOKENS,
    circuitBreaker: config.circuitBreaker,
    healthCheck: config.healthCheck,
    limits: config.limits,
  };
}

export async function closeProviderRuntimes(providers: Iterable<ProviderRuntime>): Promise<void> {
  await Promise.all([...providers].map((p) => p.pool.close().catch(() => p.pool.destroy())));
}
