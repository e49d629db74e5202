// One access-log line and one set of request metrics per request: the onResponse hook records what Fastify sent, the
// routes record their hijacked SSE streams themselves. Logs the route pattern, never the query string or a header
// value; tenant and model are labels only when the config knows them (bounded: a client cannot mint series).
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Metrics } from '../observability/metrics.ts';

declare module 'fastify' {
  interface FastifyReply {
    /** Whether Fastify sent this reply (its onSend hooks ran): false for a hijacked stream. */
    sentByFastify: boolean;
  }
  interface FastifyRequest {
    /** The configured public model names (the only values the `model` label takes). */
    readonly knownModels: ReadonlySet<string>;
  }
}

const NO_MODELS: ReadonlySet<string> = new Set();

/** The public model a request named in its body, if the config has it; '' otherwise. */
function modelOf(request: FastifyRequest): string {
  const body = request.body;
  const model = body !== null && typeof body === 'object' ? (body as { model?: unknown }).model : undefined;
  return typeof model === 'string' && request.knownModels.has(model) ? model : '';
}

/** What the worker said about the answer (its x-spillway-* headers). */
export interface AnswerInfo {
  deployment?: string | undefined;
  attempts?: string | undefined;
  cache?: string | undefined;
}

export function recordRequest(metrics: Metrics, request: FastifyRequest, status: number, elapsedMs: number, answer: AnswerInfo = {}): void {
  const route = request.routeOptions.url ?? 'unmatched';
  const tenant = request.tenant?.id ?? '';
  const model = modelOf(request);
  metrics.httpRequestDuration.observe({ route, status: String(status) }, elapsedMs / 1000);
  metrics.httpRequests.inc({ route, status: String(status), tenant, model });
  const level = status >= 500 ? 'error' : status >= 400 ? 'warn' : 'info';
  const line = {
    method: request.method,
    route,
    status,
    ms: Math.round(elapsedMs * 10) / 10,
    tenant: tenant === '' ? undefined : tenant,
    model: model === '' ? undefined : model,
    deployment: answer.deployment,
    attempts: answer.attempts === undefined ? undefined : Number(answer.attempts),
    cache: answer.cache,
  };
  request.log[level](line, 'request completed');
}

/**
 * A hijacked stream, recorded by its route when it ends. `abandoned`: why the broker gave up on it (client gone,
 * deadline, slow reader…), if it did; a stream that ended with another status than 200 and no such reason was cut by
 * an upstream error after its head.
 */
export function recordStream(metrics: Metrics, request: FastifyRequest, status: number, elapsedMs: number, abandoned?: string, answer?: AnswerInfo): void {
  if (status !== 200 || abandoned !== undefined) metrics.streamInterruptions.inc({ cause: abandoned ?? 'upstream_error' });
  recordRequest(metrics, request, status, elapsedMs, answer);
}

/** A stream's first content chunk reached the client: time to first token, from the request's arrival. */
export function recordFirstToken(metrics: Metrics, request: FastifyRequest, elapsedMs: number): void {
  metrics.timeToFirstToken.observe({ model: modelOf(request) }, elapsedMs / 1000);
}

/**
 * Records every reply Fastify sends. Fastify runs onResponse for hijacked replies too, but never onSend: a reply
 * that passed through onSend is Fastify's; the others are streams their route records with the status it ended with.
 */
export function registerAccessLog(app: FastifyInstance, metrics: Metrics, options: { models?: Iterable<string> } = {}): void {
  const models: ReadonlySet<string> = options.models === undefined ? NO_MODELS : new Set(options.models);
  app.decorateRequest('knownModels', { getter: () => models });
  app.decorateReply('sentByFastify', false);
  app.addHook('onSend', (_request, reply, payload, done) => {
    reply.sentByFastify = true;
    done(null, payload);
  });
  app.addHook('onResponse', (request, reply, done) => {
    if (reply.sentByFastify) {
      const text = (name: string) => {
        const value = reply.getHeader(name);
        return typeof value === 'string' ? value : undefined;
      };
      recordRequest(metrics, request, reply.statusCode, reply.elapsedTime, {
        deployment: text('x-spillway-deployment'),
        attempts: text('x-spillway-attempts'),
        cache: text('x-spillway-cache'),
      });
    }
    done();
  });
}
