// One access-log line and one duration observation per request: the onResponse hook records what Fastify sent,
// the route records its hijacked SSE streams itself. Logs the route pattern, never the query string or a header value.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Metrics } from '../observability/metrics.ts';

declare module 'fastify' {
  interface FastifyReply {
    /** Whether Fastify sent this reply (its onSend hooks ran): false for a hijacked stream. */
    sentByFastify: boolean;
  }
}

export function recordRequest(metrics: Metrics, request: FastifyRequest, status: number, elapsedMs: number): void {
  const route = request.routeOptions.url ?? 'unmatched';
  metrics.httpRequestDuration.observe({ route, status: String(status) }, elapsedMs / 1000);
  const level = status >= 500 ? 'error' : status >= 400 ? 'warn' : 'info';
  request.log[level]({ method: request.method, route, status, ms: Math.round(elapsedMs * 10) / 10 }, 'request completed');
}

/**
 * Records every reply Fastify sends. Fastify runs onResponse for hijacked replies too, but never onSend: a reply
 * that passed through onSend is Fastify's; the others are streams their route records with the status it ended with.
 */
export function registerAccessLog(app: FastifyInstance, metrics: Metrics): void {
  app.decorateReply('sentByFastify', false);
  app.addHook('onSend', (_request, reply, payload, done) => {
    reply.sentByFastify = true;
    done(null, payload);
  });
  app.addHook('onResponse', (request, reply, done) => {
    if (reply.sentByFastify) recordRequest(metrics, request, reply.statusCode, reply.elapsedTime);
    done();
  });
}
