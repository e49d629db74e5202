// CORS for browser clients (@fastify/cors): off unless `server.cors.origins` lists origins; each allowed one exactly.
// Must never answer a preflight for an origin not listed, nor send Allow-Credentials (the API uses keys, not cookies).
import type { FastifyInstance, FastifyRequest } from 'fastify';
import cors, { type FastifyCorsOptions } from '@fastify/cors';

/** Methods of the API a browser may call. nginx answers preflights with the same list (deploy/nginx; a test compares). */
export const CORS_METHODS = ['GET', 'POST', 'DELETE', 'OPTIONS'] as const;

/** Response headers a browser script may read: the request id, what an SDK needs to back off, an async job's URL. */
export const CORS_EXPOSED_HEADERS = [
  'x-request-id',
  'retry-after',
  'retry-after-ms',
  'x-should-retry',
  'location',
  'x-ratelimit-limit-requests',
  'x-ratelimit-remaining-requests',
  'x-ratelimit-reset-requests',
  'x-ratelimit-limit-tokens',
  'x-ratelimit-remaining-tokens',
  'x-ratelimit-reset-tokens',
] as const;

/** How long a browser may reuse a preflight answer. */
export const CORS_MAX_AGE_SECONDS = 600;

/**
 * Registered at the root, before the API's auth hook: a preflight carries no key, so it is answered in the CORS
 * onRequest hook. A request from an origin not listed gets no CORS header (the browser refuses it) and its
 * preflight falls through to the OpenAI-shaped 404; every answer carries `Vary: Origin`.
 */
export async function registerCors(app: FastifyInstance, origins: readonly string[]): Promise<void> {
  const allowed = new Set(origins);
  const base = {
    methods: [...CORS_METHODS],
    exposedHeaders: [...CORS_EXPOSED_HEADERS],
    maxAge: CORS_MAX_AGE_SECONDS,
    credentials: false,
    // An OPTIONS from an allowed origin without Access-Control-Request-Method is answered like a preflight rather
    // than with @fastify/cors's plain-text 400 (every error here is OpenAI-shaped).
    strictPreflight: false,
  } satisfies FastifyCorsOptions;
  const delegator = (request: FastifyRequest, callback: (error: Error | null, options: FastifyCorsOptions) => void): void => {
    const origin = request.headers.origin;
    callback(null, { ...base, origin: origin !== undefined && allowed.has(origin) ? origin : false });
  };
  await app.register(cors, { delegator });
}
