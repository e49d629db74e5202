// One access-log line and one duration observation per request, for JSON replies (onResponse hook) and hijacked
// SSE streams alike. Logs the route pattern, never the query string or a header value.
import type { FastifyRequest } from 'fastify';
import type { Metrics } from '../observability/metrics.ts';

export function recordRequest(metrics: Metrics, request: FastifyRequest, status: number, elapsedMs: number): void {
  const route = request.routeOptions.url ?? 'unmatched';
  metrics.httpRequestDuration.observe({ route, status: String(status) }, elapsedMs / 1000);
  const level = status >= 500 ? 'error' : status >= 400 ? 'warn' : 'info';
  request.log[level]({ method: request.method, route, status, ms: Math.round(elapsedMs * 10) / 10 }, 'request completed');
}
