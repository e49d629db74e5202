// Whether and how one request uses the response cache, decided at the ingress from the config (top-level `cache`, the
// model's, the tenant's) and the request's Cache-Control, and carried in the job so the worker stores what was decided.
// Pure: no Redis, no clock. A request that does not use the cache gets no directive and costs nothing more.
import { z } from 'zod';
import type { CacheConfig, Endpoint, ModelConfig, TenantConfig } from '../config/schema.ts';
import { requestHash } from './request-key.ts';

export const CacheDirectiveSchema = z.strictObject({
  /** The request hash (request-key.ts): names the entry and its single-flight lock. */
  key: z.string().regex(/^[0-9a-f]{64}$/),
  /** Freshness: an entry younger than this is a hit; also the TTL of the answer this job stores. */
  ttlMs: z.number().int().positive(),
  /** How much longer the entry is kept, to answer when every deployment fails. */
  maxStaleMs: z.number().int().nonnegative(),
  /** Answers larger than this are not stored. */
  maxEntryBytes: z.number().int().positive(),
  /** May a stale entry answer this request when every deployment fails (not for `no-cache`). */
  stale: z.boolean(),
  /** The single-flight token this job holds for `key`: the worker releases the lock with it once the call ends. */
  flight: z.string().min(1).optional(),
});

export type CacheDirective = z.infer<typeof CacheDirectiveSchema>;

/** The directive, and whether the ingress looks the answer up first (not for `no-cache` or `max-age=0`). */
export interface CachePlan {
  directive: CacheDirective;
  lookup: boolean;
}

/** Endpoints whose answers are cached: the Responses API keeps state of its own and is never cached. */
const CACHED_ENDPOINTS: ReadonlySet<Endpoint> = new Set(['chat.completions', 'completions', 'embeddings']);

export interface CacheControl {
  noStore: boolean;
  noCache: boolean;
  /** `max-age` in seconds, when sent. */
  maxAge: number | undefined;
}

/** Parses a request's Cache-Control (RFC 9111 request directives; unknown ones are ignored, as the RFC asks). */
export function parseCacheControl(header: string | string[] | undefined): CacheControl {
  const result: CacheControl = { noStore: false, noCache: false, maxAge: undefined };
  if (header === undefined) return result;
  for (const part of (Array.isArray(header) ? header.join(',') : header).split(',')) {
    const [rawName = '', rawValue] = part.split('=', 2);
    const name = rawName.trim().toLowerCase();
    if (name === 'no-store') result.noStore = true;
    else if (name === 'no-cache') result.noCache = true;
    else if (name === 'max-age' && rawValue !== undefined && /^\s*"?\d{1,9}"?\s*$/.test(rawValue)) result.maxAge = Number(rawValue.replace(/"/g, ''));
  }
  return result;
}

export interface CacheRequest {
  cache: CacheConfig;
  model: ModelConfig;
  tenant: TenantConfig;
  endpoint: Endpoint;
  body: Record<string, unknown>;
  stream: boolean;
  cacheControl: string | string[] | undefined;
}

/**
 * The cache plan of one request, or undefined when it does not use the cache: `no-store`, an endpoint that is not
 * cached, or caching off for its model and tenant without a `max-age` opt-in. Settings: the tenant's own win over the
 * model's, which win over the top-level ones; a request's `max-age` lowers the TTL (never raises it).
 */
export function planCache(request: CacheRequest): CachePlan | undefined {
  if (!CACHED_ENDPOINTS.has(request.endpoint)) return undefined;
  const control = parseCacheControl(request.cacheControl);
  if (control.noStore) return undefined;
  const { cache } = request;
  const model = request.model.cache ?? {};
  const tenant = request.tenant.cache ?? {};
  const optedIn = cache.requestOptIn && control.maxAge !== undefined && control.maxAge > 0;
  const enabled = tenant.enabled ?? model.enabled ?? cache.enabled;
  if (!enabled && !optedIn) return undefined;
  const settingsTtl = tenant.ttlMs ?? model.ttlMs ?? cache.ttlMs;
  const ttlMs = control.maxAge !== undefined && control.maxAge > 0 ? Math.min(settingsTtl, control.maxAge * 1000) : settingsTtl;
  // `no-cache` (and `max-age=0`): no stored answer for this request, not even a stale one; its own answer is stored.
  const lookup = !control.noCache && control.maxAge !== 0;
  const shared = model.shared ?? cache.shared;
  return {
    lookup,
    directive: {
      key: requestHash({ scope: shared ? '*' : request.tenant.id, endpoint: request.endpoint, model: request.model.name, stream: request.stream, body: request.body }),
      ttlMs,
      maxStaleMs: tenant.maxStaleMs ?? model.maxStaleMs ?? cache.maxStaleMs,
      maxEntryBytes: tenant.maxEntryBytes ?? model.maxEntryBytes ?? cache.maxEntryBytes,
      stale: lookup,
    },
  };
}
