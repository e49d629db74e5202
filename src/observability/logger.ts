// The process logger (pino): JSON lines, child loggers per boundary (reqId, tenant, jobId).
// `redact` covers every place a secret could sit; constant messages, data in fields.
import { pino, type Logger } from 'pino';

export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers["api-key"]',
  'req.headers["x-api-key"]',
  'headers.authorization',
  'headers["api-key"]',
  '*.apiKey',
  'apiKey',
  'config.providers[*].apiKey',
  'config.tenants[*].keys',
];

export function createLogger(level: string, name = 'spillway'): Logger {
  return pino({
    name,
    level,
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    base: { pid: process.pid },
  });
}
