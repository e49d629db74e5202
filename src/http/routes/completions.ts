// POST /v1/chat/completions, /v1/completions, /v1/embeddings: authenticate, validate, resolve the model,
// enqueue the job and hold the request until its reply (JSON or SSE). Never calls an upstream itself.
import { randomUUID } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import type { Config, Endpoint, TenantConfig } from '../../config/schema.ts';
import type { Authenticate } from '../plugins/auth.ts';
import type { Router } from '../../upstream/routing.ts';
import type { ReplyBus } from '../../queue/reply-bus.ts';
import type { CompletionQueue } from '../../queue/completion-queue.ts';
import { JOB_SCHEMA_VERSION, type CompletionJob } from '../../queue/jobs.ts';
import type { Metrics } from '../../observability/metrics.ts';
import { parseRequestBody } from '../../openai/schemas.ts';
import { modelNotAllowed, modelNotFound, modelWrongEndpoint, serviceUnavailable } from '../../errors.ts';
import { PendingRequest } from '../pending-request.ts';
import { recordRequest } from '../access-log.ts';
import { compileHeaderFilter, pickHeaders, type HeaderFilter } from '../forward-headers.ts';

export interface CompletionRouteDeps {
  config: Config;
  authenticate: Authenticate;
  router: Router;
  bus: ReplyBus;
  queue: CompletionQueue;
  metrics: Metrics;
  logger: Logger;
  instanceId: string;
}

const ROUTES: ReadonlyArray<[string, Endpoint]> = [
  ['/v1/chat/completions', 'chat.completions'],
  ['/v1/completions', 'completions'],
  ['/v1/embeddings', 'embeddings'],
];

export function registerCompletionRoutes(app: FastifyInstance, deps: CompletionRouteDeps): void {
  const forward = compileHeaderFilter(deps.config.server.forwardHeaders);
  for (const [url, endpoint] of ROUTES) {
    app.post(url, async (request, reply) => handle(deps, forward, endpoint, request, reply));
  }
}

async function handle(
  deps: CompletionRouteDeps,
  forward: HeaderFilter,
  endpoint: Endpoint,
  request: FastifyRequest,
  reply: FastifyReply,
): Promise<unknown> {
  const tenant = deps.authenticate(request);
  const parsed = parseRequestBody(endpoint, request.body);
  const model = deps.router.model(parsed.model);
  if (model === undefined) throw modelNotFound(parsed.model);
  if (tenant.models !== undefined && !tenant.models.includes(model.name)) throw modelNotAllowed(model.name);
  if (!deps.router.servesEndpoint(model, endpoint)) throw modelWrongEndpoint(model.name, endpoint);

  const now = Date.now();
  const deadline = now + deadlineBudgetMs(deps.config, tenant);
  const jobId = randomUUID();
  const job: CompletionJob = {
    v: JOB_SCHEMA_VERSION,
    endpoint,
    requestId: request.id,
    tenant: tenant.id,
    model: model.name,
    body: parsed.body,
    stream: parsed.stream,
    replyTo: deps.instanceId,
    headers: pickHeaders(request.headers, forward),
    enqueuedAt: now,
    deadline,
  };
  // Built only when something is logged: a child logger per request is measurable on the hot path.
  const log = () => request.log.child({ tenant: tenant.id, jobId, model: model.name });
  const pending = new PendingRequest({
    reply,
    stream: parsed.stream,
    deadline,
    requestId: request.id,
    keepAliveMs: deps.config.server.streamKeepAliveMs,
    bufferLimitBytes: deps.config.server.streamBufferBytes,
    onAbandon: (reason) => {
      log().info({ reason }, reason === 'draining' ? 'request cut by the ingress drain: cancelling its job' : 'request abandoned: cancelling its job');
      deps.queue.cancel(jobId).catch((err: unknown) => log().warn({ err }, 'cancelling a job failed'));
    },
    onFinish: () => {
      deps.bus.unregister(jobId);
      deps.metrics.pendingReplies.dec();
    },
  });
  deps.bus.register(jobId, pending);
  deps.metrics.pendingReplies.inc();
  // Not awaited: the deadline (and a client that leaves) must be answered even while Redis does not answer.
  deps.queue.enqueue(jobId, job).catch((err: unknown) => {
    log().error({ err }, 'enqueue failed');
    // Finishes the pending request once (timer, listener, bus entry, gauge); `settled` rejects with the 503.
    pending.failBeforeEnqueue(serviceUnavailable('The request queue is unavailable; try again shortly.'));
    // A command that timed out may still have added the job: nobody will wait for it.
    void deps.queue.discard(jobId, deadline);
  });
  const settled = await pending.settled;
  if (settled.kind === 'streamed') {
    // Hijacked replies skip Fastify's onResponse hook: record the stream here.
    recordRequest(deps.metrics, request, settled.status, reply.elapsedTime);
    return reply;
  }
  return reply.code(settled.status).header('content-type', 'application/json; charset=utf-8').send(settled.body);
}

/** Time a request may take in all: its longest queue wait plus the upstream timeout, capped by config. */
function deadlineBudgetMs(config: Config, tenant: TenantConfig): number {
  const wait = tenant.maxQueueWaitMs ?? config.server.maxQueueWaitMs;
  return Math.min(wait + config.server.requestTimeoutMs, config.server.maxDeadlineMs);
}
