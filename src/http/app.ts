// buildApp(deps): the Fastify ingress without listening (tests use inject() or listen on port 0).
// Wires plugins and routes only; owns no connection and starts nothing.
import { randomUUID } from 'node:crypto';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { Config } from '../config/schema.ts';
import type { Metrics } from '../observability/metrics.ts';
import type { ReplyBus } from '../queue/reply-bus.ts';
import type { CompletionQueue } from '../queue/completion-queue.ts';
import { createRouter } from '../catalogue/catalogue.ts';
import { createAuthenticator } from './plugins/auth.ts';
import { clientErrorHandler } from './plugins/client-errors.ts';
import { errorHandlerPlugin, frameworkErrors } from './plugins/error-handler.ts';
import { healthPlugin } from './plugins/health.ts';
import { jsonBodyPlugin } from './plugins/json-body.ts';
import { registerCompletionRoutes } from './routes/completions.ts';
import { registerResponseRoutes } from './routes/responses.ts';
import { registerJobRoutes } from './routes/jobs.ts';
import { registerFileRoutes, type FileServices } from './routes/files.ts';
import { registerBatchRoutes, type BatchServices } from './routes/batches.ts';
import type { AsyncJobServices } from './routes/job-submission.ts';
import type { AdmissionGate } from '../admission/gate.ts';
import type { ResponseCache } from '../cache/response-cache.ts';
import { registerModelRoutes } from './routes/models.ts';
import { registerAccessLog } from './access-log.ts';
import { registerUsageRoutes, type UsageReader } from './routes/usage.ts';
import { registerCors } from './plugins/cors.ts';

export interface IngressDeps {
  config: Config;
  logger: Logger;
  metrics: Metrics;
  bus: ReplyBus;
  queue: CompletionQueue;
  instanceId: string;
  /** Per-tenant admission in front of the queue (src/admission/gate.ts). */
  admission: AdmissionGate;
  /** The response cache (src/cache): looked up by the completion routes; absent: no lookups. */
  cache?: ResponseCache;
  notReadyReason: () => string | undefined;
  /** Async jobs (/v1/jobs, `Prefer: respond-async`) and Idempotency-Key; absent: neither is served. */
  jobs?: AsyncJobServices;
  /** Files (/v1/files): their metadata and storage; absent: not served. */
  files?: FileServices;
  /** The Batch API (/v1/batches); absent: not served. */
  batches?: BatchServices;
  /** The daily usage counters behind GET /v1/usage; absent: the route is not served. */
  usage?: UsageReader;
}

const SAFE_REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** proxy-addr's trust function: hop 0 is the socket's peer, hop 1 the last X-Forwarded-For entry, and so on. */
const trustOneHop = (_address: string, hop: number): boolean => hop === 0;

export async function buildApp(deps: IngressDeps): Promise<FastifyInstance> {
  const { server } = deps.config;
  // Node refuses a headers timeout longer than the whole-request timeout.
  const headersTimeout = Math.min(server.headersTimeoutMs, server.requestReceiveTimeoutMs);
  const app = Fastify({
    loggerInstance: deps.logger as FastifyBaseLogger,
    // One log line per request is written by the routes themselves (with tenant and job); none from Fastify.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: server.bodyLimitBytes,
    // Exactly one hop: the peer (the proxy in front) is trusted, so the client address is the last X-Forwarded-For
    // entry, the one that proxy appended. `true` would trust the whole header, whose left part the client writes.
    trustProxy: server.trustProxy ? trustOneHop : false,
    // A client that trickles its headers or body would hold a connection and its buffered bytes for ever: bound
    // both (Node answers 408 through clientErrorHandler). Node checks them on a timer, 30 s apart by default.
    requestTimeout: server.requestReceiveTimeoutMs,
    http: { headersTimeout, requestTimeout: server.requestReceiveTimeoutMs, connectionsCheckingInterval: Math.min(1_000, headersTimeout) },
    clientErrorHandler,
    frameworkErrors,
    // A client's X-Request-Id is kept when it is sane, so logs can be correlated end to end.
    genReqId: (req) => {
      const given = req.headers['x-request-id'];
      return typeof given === 'string' && SAFE_REQUEST_ID.test(given) ? given : randomUUID();
    },
    return503OnClosing: true,
    forceCloseConnections: 'idle',
  });

  await app.register(errorHandlerPlugin, { bodyLimitBytes: server.bodyLimitBytes });
  await app.register(jsonBodyPlugin, { maxDepth: server.maxJsonDepth });
  await app.register(healthPlugin, { registry: deps.metrics.registry, notReadyReason: deps.notReadyReason });

  const startedAt = Date.now();
  app.decorateRequest('tenant', null);
  app.addHook('onRequest', (request, reply, done) => {
    reply.header('x-request-id', request.id);
    done();
  });
  registerAccessLog(app, deps.metrics, { models: deps.config.models.map((m) => m.name) });
  // Before the API's auth hook: a browser's preflight carries no key.
  if (server.cors.origins.length > 0) await registerCors(app, server.cors.origins);
  // Loaded only when mounted: Bull Board's UI stack stays out of an ingress that does not serve it.
  if (deps.config.admin.keys.length > 0) {
    const { registerQueueUi } = await import('./plugins/queue-ui.ts');
    await registerQueueUi(app, { keys: deps.config.admin.keys, queues: deps.queue.queues });
  }

  const auth = createAuthenticator(deps.config.tenants);
  const router = createRouter(deps.config);
  // The API proper (/v1/*; not /health, /ready, /metrics): the key is checked in onRequest, before the body is
  // read, so a client without a valid key cannot make the ingress buffer its body.
  await app.register(async (api) => {
    api.addHook('onRequest', auth.onRequest);
    registerModelRoutes(api, { config: deps.config, authenticate: auth.authenticate, startedAt });
    registerCompletionRoutes(api, { ...deps, authenticate: auth.authenticate, router });
    registerResponseRoutes(api, { ...deps, authenticate: auth.authenticate, router });
    if (deps.jobs !== undefined) registerJobRoutes(api, { ...deps, jobs: deps.jobs, authenticate: auth.authenticate, router });
    if (deps.files !== undefined) registerFileRoutes(api, { files: deps.files, authenticate: auth.authenticate });
    if (deps.batches !== undefined) registerBatchRoutes(api, { config: deps.config, batches: deps.batches, authenticate: auth.authenticate });
  });
  // Outside the API's auth hook: an admin key (every tenant's usage) is not a tenant key; the route checks both itself.
  if (deps.usage !== undefined) registerUsageRoutes(app, { config: deps.config, authenticate: auth.authenticate, usage: deps.usage });
  return app;
}
