// API-key authentication: an `onRequest` hook resolves the tenant from `Authorization: Bearer <key>` (or `api-key`)
// by its SHA-256, before any body is read. Only hashes are held in memory; a key never appears in a response or log.
import { hash } from 'node:crypto';
import type { FastifyRequest, onRequestHookHandler } from 'fastify';
import type { TenantConfig } from '../../config/schema.ts';
import { invalidApiKey, missingApiKey } from '../../errors.ts';

declare module 'fastify' {
  interface FastifyRequest {
    /** The tenant the auth hook resolved; null on routes the hook does not cover. */
    tenant: TenantConfig | null;
  }
}

/** The tenant of an authenticated request (routes call it; the hook has already done the work). */
export type Authenticate = (request: FastifyRequest) => TenantConfig;

export interface Authenticator {
  /** The `onRequest` hook for authenticated routes: 401 before the body is read. */
  onRequest: onRequestHookHandler;
  authenticate: Authenticate;
}

export function hashApiKey(key: string): string {
  // One-shot hash: ~0.2 µs for a 50-character key (createHash(): ~0.5 µs), cheap enough for every request, so no
  // cache of raw keys is kept.
  return hash('sha256', key, 'hex');
}

/** The hash a configured key stands for: a `sha256:<hex>` entry as written, a plain (dev) key hashed. */
export function configuredKeyHash(key: string): string {
  return key.startsWith('sha256:') ? key.slice('sha256:'.length) : hashApiKey(key);
}

/** Whether a presented key is one of the configured admin keys: hashed like tenant keys, only hashes are held. */
export function createAdminKeyCheck(keys: readonly string[]): (presented: string) => boolean {
  const hashes = new Set(keys.map(configuredKeyHash));
  return (presented) => hashes.has(hashApiKey(presented));
}

const BEARER = /^bearer[ \t]+/i;

/** The key a client presented, if any: RFC 9110 makes the auth scheme case-insensitive; stray spaces are not part of a key. */
export function presentedKey(headers: FastifyRequest['headers']): string | undefined {
  const authorization = headers.authorization;
  if (authorization !== undefined && BEARER.test(authorization)) return authorization.replace(BEARER, '').trim() || undefined;
  const apiKey = headers['api-key'];
  return typeof apiKey === 'string' ? apiKey.trim() || undefined : undefined;
}

export function createAuthenticator(tenants: readonly TenantConfig[]): Authenticator {
  const byHash = new Map<string, TenantConfig>();
  for (const tenant of tenants) {
    for (const key of tenant.keys) {
      byHash.set(configuredKeyHash(key), tenant);
    }
  }
  const resolve = (headers: FastifyRequest['headers']): TenantConfig => {
    const key = presentedKey(headers);
    if (key === undefined) throw missingApiKey();
    const tenant = byHash.get(hashApiKey(key));
    if (tenant === undefined) throw invalidApiKey();
    return tenant;
  };
  return {
    onRequest: (request, reply, done) => {
      try {
        request.tenant = resolve(request.headers);
      } catch (err) {
        // The body is never read for a refused request: close the connection after the 401 rather than let Node
        // drain (read and discard) whatever the client still sends.
        if (hasBody(request)) reply.header('connection', 'close');
        done(err as Error);
        return;
      }
      done();
    },
    // The hook has run on every authenticated route; resolving again covers a route registered outside its scope.
    authenticate: (request) => request.tenant ?? resolve(request.headers),
  };
}

function hasBody(request: FastifyRequest): boolean {
  const { headers } = request;
  return headers['transfer-encoding'] !== undefined || (headers['content-length'] !== undefined && headers['content-length'] !== '0');
}
