// What "the same request" means for the response cache: the endpoint, the public model, stream or not, and every body
// field that can change the answer, in a canonical JSON form (key order never matters), hashed with SHA-256.
// Never hashes a field that only labels the request (user, metadata): those would split identical answers apart.
import { createHash } from 'node:crypto';

/**
 * Body fields that do not change what the model answers: who asks (`user`, `safety_identifier`), labels (`metadata`),
 * storage and billing choices (`store`, `service_tier`, `prompt_cache_key`). `model` and `stream` are keyed on their own.
 */
const IGNORED_FIELDS: ReadonlySet<string> = new Set(['user', 'metadata', 'store', 'service_tier', 'prompt_cache_key', 'safety_identifier', 'model', 'stream']);

export interface RequestIdentity {
  /** The tenant id, or `*` when the model's cache is shared across tenants. */
  scope: string;
  endpoint: string;
  /** The public model name. */
  model: string;
  stream: boolean;
  body: Record<string, unknown>;
}

/** The request's cache hash: 64 hex digits, the same for the same request whatever its key order. */
export function requestHash(identity: RequestIdentity): string {
  const fields: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(identity.body)) {
    if (!IGNORED_FIELDS.has(name) && value !== undefined) fields[name] = value;
  }
  const canonical = canonicalJson([identity.scope, identity.endpoint, identity.model, identity.stream, fields]);
  return createHash('sha256').update(canonical).digest('hex');
}

/** JSON with every object's keys sorted, so that {"a":1,"b":2} and {"b":2,"a":1} hash the same. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map((item) => (item === undefined ? 'null' : canonicalJson(item))).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.keys(value)
      .filter((key) => (value as Record<string, unknown>)[key] !== undefined)
      .sort()
      .map((key) => `${JSON.stringify(key)}:${canonicalJson((value as Record<string, unknown>)[key])}`);
    return `{${entries.join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}
