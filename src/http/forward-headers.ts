// Which client headers travel to the upstream: those `server.forwardHeaders` names, minus credentials,
// hop-by-hop and proxy headers, whatever the patterns match. Never forwards a secret.
import type { FastifyRequest } from 'fastify';

/** Credentials and hop-by-hop headers are never forwarded, whatever the config's patterns match. */
const NEVER_FORWARD = new Set(['authorization', 'api-key', 'x-api-key', 'cookie', 'host', 'content-length', 'content-type', 'connection', 'transfer-encoding', 'te', 'upgrade', 'keep-alive', 'proxy-authorization']);

export type HeaderFilter = (name: string) => boolean;

export function compileHeaderFilter(patterns: readonly string[]): HeaderFilter {
  const exact = new Set(patterns.filter((p) => !p.endsWith('*')));
  const prefixes = patterns.filter((p) => p.endsWith('*')).map((p) => p.slice(0, -1));
  return (name) => !NEVER_FORWARD.has(name) && (exact.has(name) || prefixes.some((prefix) => name.startsWith(prefix)));
}

export function pickHeaders(headers: FastifyRequest['headers'], forward: HeaderFilter): Record<string, string> {
  const picked: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (typeof value === 'string' && forward(name)) picked[name] = value;
  }
  return picked;
}
