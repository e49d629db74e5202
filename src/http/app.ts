// buildApp(deps): the Fastify ingress without listening (tests use inject() or listen on port 0).
// Wires plugins and routes only; owns no connection and starts nothing.
import { randomUUID } from 'node:crypto';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { Config } from '../config/schema.ts';
import type { Metrics } from '../observability/metrics.ts';
import type { ReplyBus } from '../queue/reply-bus.ts';
import type { CompletionQueue } from '../queue/completion-queue.ts';
import { createRouter } from '../upstream/routing.ts';
import { createAuthenticator } from './plugins/auth.ts';
import { errorHandlerPlugin } from './plugins/error-handler.ts';
import { healthPlugin } from './plugins/health.ts';
import { registerCompletionRoutes } from './routes/completions.ts';
import { registerModelRoutes } from './routes/models.ts';
import { recordRequest } from './access-log.ts';

export interface IngressDeps {
  config: Config;
  logger: Logger;
  metrics: Metrics;
  bus: ReplyBus;
  queue: CompletionQueue;
  instanceId: string;
  notReadyReason: () => string | undefined;
}

const SAFE_REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

export async function buildApp(deps: IngressDeps): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: deps.logger as FastifyBaseLogger,
    // One log line per request is written by the routes themselves (with tenant and job); none from Fastify.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: deps.config.server.bodyLimitBytes,
    trustProxy: deps.config.server.trustProxy,
    // A client's X-Request-Id is kept when it is sane, so logs can be correlated end to end.
    genReqId: (req) => {
      const given = req.headers['x-request-id'];
      return typeof given === 'string' && SAFE_REQUEST_ID.test(given) ? given : randomUUID();
    },
    return503OnClosing: true,
    forceCloseConnections: 'idle',
  });

  await app.register(errorHandlerPlugin, { bodyLimitBytes: deps.config.server.bodyLimitBytes });
  await app.register(healthPlugin, { registry: deps.metrics.registry, notReadyReason: deps.notReadyReason });

  const startedAt = Date.now();
  app.addHook('onRequest', async (request, reply) => {
    reply.header('x-request-id', request.id);
  });
  app.addHook('onResponse', async (request, reply) => recordRequest(deps.metrics, request, reply.statusCode, reply.elapsedTime));

  const authenticate = createAuthenticator(deps.config.tenants);
  const router = createRouter(deps.config);
  registerModelRoutes(app, { config: deps.config, authenticate, startedAt });
  registerCompletionRoutes(app, { ...deps, authenticate, router });
  return app;
}
