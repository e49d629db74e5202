// Which client headers travel to the upstream: those `server.forwardHeaders` names, minus credentials,
// hop-by-hop, proxy and encoding headers, whatever the patterns match. Never forwards a secret.
import type { FastifyRequest } from 'fastify';

/**
 * Never forwarded, whatever the config's patterns match: credentials; hop-by-hop headers (RFC 9110 §7.6.1), which
 * describe this connection and not the next one; headers describing the body, which the worker re-serialises;
 * `accept-encoding`, since the worker does not decode a compressed answer (undici asks for what it decodes).
 */
const NEVER_FORWARD = new Set([
  'authorization',
  'api-key',
  'x-api-key',
  'cookie',
  'host',
  'content-length',
  'content-type',
  'content-encoding',
  'accept-encoding',
  'connection',
  'keep-alive',
  'transfer-encoding',
  'te',
  'trailer',
  'upgrade',
  'expect',
  'http2-settings',
  'forwarded',
  'via',
]);
/** Proxy metadata (x-forwarded-for, x-forwarded-proto, proxy-authorization…): about our hop, not the client's request. */
const NEVER_FORWARD_PREFIXES = ['x-forwarded-', 'proxy-'];

export type HeaderFilter = (name: string) => boolean;

export function compileHeaderFilter(patterns: readonly string[]): HeaderFilter {
  const exact = new Set(patterns.filter((p) => !p.endsWith('*')));
  const prefixes = patterns.filter((p) => p.endsWith('*')).map((p) => p.slice(0, -1));
  return (name) =>
    !NEVER_FORWARD.has(name) &&
    !NEVER_FORWARD_PREFIXES.some((prefix) => name.startsWith(prefix)) &&
    (exact.has(name) || prefixes.some((prefix) => name.startsWith(prefix)));
}

/**
 * The headers of `headers` (all the client sent, lowercase names as Node gives them) that `forward` allows, minus
 * those the client's own `Connection` header names: those are hop-by-hop by the client's say (RFC 9110 §7.6.1).
 */
export function pickHeaders(headers: FastifyRequest['headers'], forward: HeaderFilter): Record<string, string> {
  const hopByHop = connectionOptions(headers.connection);
  const picked: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (typeof value === 'string' && forward(name) && !hopByHop?.has(name)) picked[name] = value;
  }
  return picked;
}

/** The header names listed in `Connection` (`keep-alive` and `close` are options, harmless to include). */
function connectionOptions(connection: string | string[] | undefined): Set<string> | undefined {
  // The usual values name no header: no set to build on the hot path.
  if (connection === undefined || connection === 'keep-alive' || connection === 'close') return undefined;
  const joined = Array.isArray(connection) ? connection.join(',') : connection;
  return new Set(joined.split(',').map((token) => token.trim().toLowerCase()).filter((token) => token !== ''));
}
