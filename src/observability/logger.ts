// The process logger (pino): JSON lines, child loggers per boundary (reqId, tenant, jobId).
// `redact` covers every place a secret could sit; constant messages, data in fields.
import { pino, type DestinationStream, type Logger } from 'pino';

/**
 * Where a secret could sit in a logged object: request headers (tenant and admin keys, cookies, a provider key in an
 * upstream request), provider keys, tenant and admin key lists, webhook signing secrets and signatures. Tests grep
 * every process's output for every configured secret (test/support/spillway-cluster.ts): this is the first line.
 */
export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers["api-key"]',
  'req.headers["x-api-key"]',
  'req.headers.cookie',
  'req.headers["proxy-authorization"]',
  'headers.authorization',
  'headers["api-key"]',
  'headers["x-api-key"]',
  'headers.cookie',
  'headers["webhook-signature"]',
  '*.headers.authorization',
  '*.headers["api-key"]',
  '*.headers["x-api-key"]',
  '*.apiKey',
  'apiKey',
  'keys',
  'secrets',
  '*.secrets',
  'config.providers[*].apiKey',
  'config.providers[*].headers',
  'config.tenants[*].keys',
  'config.tenants[*].webhook.secrets',
  'config.admin.keys',
];

/** `destination`: where lines go (default stdout); tests pass a stream to read them back. */
export function createLogger(level: string, name = 'spillway', destination?: DestinationStream): Logger {
  const options = {
    name,
    level,
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    base: { pid: process.pid },
  };
  return destination === undefined ? pino(options) : pino(options, destination);
}
