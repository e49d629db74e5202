// POST /v1/chat/completions, /v1/completions, /v1/embeddings: authenticate, validate, resolve the model,
// enqueue the job and hold the request until its reply (JSON or SSE). Never calls an upstream itself.
import { randomUUID } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import type { Config, Endpoint, TenantConfig } from '../../config/schema.ts';
import type { Authenticate } from '../plugins/auth.ts';
import type { Router } from '../../catalogue/catalogue.ts';
import type { ReplyBus } from '../../queue/reply-bus.ts';
import type { CompletionQueue } from '../../queue/completion-queue.ts';
import { JOB_SCHEMA_VERSION, type CompletionJob } from '../../queue/jobs.ts';
import type { Metrics } from '../../observability/metrics.ts';
import type { AdmissionGate } from '../../admission/gate.ts';
import { parseRequestBody } from '../../openai/schemas.ts';
import { modelNotAllowed, modelNotFound, modelWrongEndpoint } from '../../errors.ts';
import { PendingRequest } from '../pending-request.ts';
import { recordFirstToken, recordRequest } from '../access-log.ts';
import { sendQueuedAnswer } from './queued-answer.ts';
import { compileHeaderFilter, pickHeaders, type HeaderFilter } from '../forward-headers.ts';
import { submitJob, type AsyncJobServices } from './job-submission.ts';
import { sendAccepted } from './jobs.ts';
import { IDEMPOTENT_ANSWER_TTL_MS, startIdempotentRequest, validIdempotencyKey } from './idempotent-requests.ts';
import { AnswerKeeper, type KeptAnswer } from '../../queue/idempotency.ts';
import { planCache, type CacheDirective } from '../../cache/directive.ts';
import type { CachedAnswer, ResponseCache } from '../../cache/response-cache.ts';
import { SSE_DONE, SSE_HEADERS, sseData } from '../../openai/sse.ts';

export interface CompletionRouteDeps {
  config: Config;
  authenticate: Authenticate;
  router: Router;
  bus: ReplyBus;
  queue: CompletionQueue;
  metrics: Metrics;
  logger: Logger;
  instanceId: string;
  admission: AdmissionGate;
  /** Async jobs (`Prefer: respond-async`) and Idempotency-Key; absent: both headers are ignored. */
  jobs?: AsyncJobServices;
  /** The response cache (src/cache); absent: nothing is looked up (the worker still stores what jobs ask it to). */
  cache?: ResponseCache;
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
  // Header checks only: a request without these headers pays no Redis round trip for them.
  if (deps.jobs !== undefined && request.headers.prefer !== undefined && prefersAsync(request.headers.prefer)) {
    return respondAsync({ ...deps, jobs: deps.jobs }, forward, endpoint, tenant, request, reply);
  }
  const parsed = parseRequestBody(endpoint, request.body);
  const model = deps.router.model(parsed.model);
  if (model === undefined) throw modelNotFound(parsed.model);
  if (tenant.models !== undefined && !tenant.models.includes(model.name)) throw modelNotAllowed(model.name);
  if (!deps.router.servesEndpoint(model, endpoint)) throw modelWrongEndpoint(model.name, endpoint);
  // Idempotency-Key: a retry with the same body joins the first request's job while it is in flight (no second
  // upstream call); before admission, so a retry is not charged twice either.
  const idempotencyKey = deps.jobs === undefined ? undefined : validIdempotencyKey(request.headers['idempotency-key']);
  let claimedJobId: string | undefined;
  let keyHash: string | undefined;
  let keyClaim: { raw: string } | undefined;
  if (idempotencyKey !== undefined) {
    claimedJobId = randomUUID();
    const left = new AbortController();
    reply.raw.once('close', () => left.abort());
    const started = await startIdempotentRequest(deps.jobs!.idempotency, {
      tenantId: tenant.id,
      key: idempotencyKey,
      endpoint,
      body: parsed.body,
      stream: parsed.stream,
      jobId: claimedJobId,
      deadline: Date.now() + deadlineBudgetMs(deps.config, tenant),
      lingerMs: IDEMPOTENT_ANSWER_TTL_MS,
      signal: left.signal,
    });
    if (started.kind === 'answer') {
      return reply.code(started.status).header('content-type', 'application/json; charset=utf-8').header('idempotent-replayed', 'true').send(started.body);
    }
    keyHash = started.keyHash;
    keyClaim = started.claim;
  }
  const claimed = keyHash;
  const keepAnswer =
    claimed === undefined
      ? undefined
      : (answer: KeptAnswer) => {
          deps.jobs!.idempotency.keep(tenant.id, claimed, answer, IDEMPOTENT_ANSWER_TTL_MS).catch((err: unknown) => log().warn({ err }, 'keeping an idempotent answer failed'));
        };
  let runsOnForRetry = false;
  // Response cache: only a model, tenant or request that opts in pays for it (one Redis call). A fresh answer skips
  // admission and the queue; an identical request already in flight is waited for instead of called again.
  let cacheDirective: CacheDirective | undefined;
  const cachePlan = deps.cache === undefined ? undefined : planCache({ cache: deps.config.cache, model, tenant, endpoint, body: parsed.body, stream: parsed.stream, cacheControl: request.headers['cache-control'] });
  if (cachePlan !== undefined) {
    const left = new AbortController();
    reply.raw.once('close', () => left.abort());
    const cached = await deps.cache!.resolve(cachePlan, Date.now() + deadlineBudgetMs(deps.config, tenant), left.signal);
    if (cached.kind === 'hit') {
      deps.metrics.cacheHits.inc({ kind: cached.joined ? 'joined' : 'fresh' });
      return sendCachedAnswer(deps, request, reply, cached.answer);
    }
    if (cachePlan.lookup) deps.metrics.cacheMisses.inc();
    cacheDirective = cached.directive;
  }
  // Tenant budgets and load shedding: throws the 429 / 503 before anything is enqueued.
  const admitted = await deps.admission.admit(tenant, endpoint, parsed.body);
  for (const [name, value] of Object.entries(admitted.headers)) void reply.header(name, value);

  const now = Date.now();
  const deadline = now + deadlineBudgetMs(deps.config, tenant);
  const jobId = claimedJobId ?? randomUUID();
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
    ...(admitted.tokens > 0 ? { tokens: admitted.tokens } : {}),
    ...(cacheDirective === undefined ? {} : { cache: cacheDirective }),
  };
  // Built only when something is logged: a child logger per request is measurable on the hot path.
  const log = () => request.log.child({ tenant: tenant.id, jobId, model: model.name });
  /** Why the broker gave up on this request, if it did (a stream cut short is counted by cause). */
  let abandonedFor: string | undefined;
  const pending = new PendingRequest({
    reply,
    stream: parsed.stream,
    deadline,
    requestId: request.id,
    headers: admitted.headers,
    ...(parsed.stream && request.headers['x-spillway-queue-position'] === 'true' ? { describePlace: () => deps.admission.describePlace(jobId) } : {}),
    keepAliveMs: deps.config.server.streamKeepAliveMs,
    bufferLimitBytes: deps.config.server.streamBufferBytes,
    onFirstChunk: () => recordFirstToken(deps.metrics, request, reply.elapsedTime),
    onAbandon: (reason) => {
      abandonedFor = reason;
      if (reason === 'client_closed' && keepAnswer !== undefined && !parsed.stream) {
        // The client sent an Idempotency-Key: its retry joins this job, which therefore runs on (answer kept below).
        log().info('request abandoned: its job runs on for a retry with the same Idempotency-Key');
        runsOnForRetry = true;
        return;
      }
      log().info({ reason }, reason === 'draining' ? 'request cut by the ingress drain: cancelling its job' : 'request abandoned: cancelling its job');
      // Sent on the add's connection after the add itself: a late add is removed right behind it, before a worker runs it.
      deps.queue.cancel(jobId).catch((err: unknown) => log().warn({ err }, 'cancelling a job failed'));
    },
    onFinish: () => {
      deps.bus.unregister(jobId);
      deps.metrics.pendingReplies.dec();
      // A finished stream cannot be joined: its retries run anew at once (a JSON answer is kept for them instead).
      if (parsed.stream && keyHash !== undefined && keyClaim !== undefined) {
        deps.jobs!.idempotency.ended(tenant.id, keyHash, keyClaim, IDEMPOTENT_ANSWER_TTL_MS).catch((err: unknown) => log().warn({ err }, 'marking an idempotent stream ended failed'));
      }
      // Nobody waits here any more, but a retry will: the job's answer is caught off the bus and kept for it.
      if (runsOnForRetry && keepAnswer !== undefined) deps.bus.register(jobId, new AnswerKeeper({ deadline, keep: keepAnswer, release: () => deps.bus.unregister(jobId) }));
    },
  });
  return sendQueuedAnswer(deps, request, reply, {
    jobId,
    job,
    delayMs: admitted.delayMs,
    priority: admitted.priority,
    pending,
    abandonedFor: () => abandonedFor,
    ...(keepAnswer === undefined ? {} : { onJson: (status: number, body: string) => keepAnswer({ status, body }) }),
    log,
  });
}

/** A fresh answer from the response cache, sent as the client asked for it: JSON, or replayed as an SSE stream. */
function sendCachedAnswer(deps: CompletionRouteDeps, request: FastifyRequest, reply: FastifyReply, answer: CachedAnswer): FastifyReply {
  if (answer.kind === 'body') {
    return reply.code(answer.status).header('x-spillway-cache', 'hit').header('content-type', 'application/json; charset=utf-8').send(answer.body);
  }
  // An entry is at most its model's maxEntryBytes: written at once, the socket buffers it.
  reply.hijack();
  reply.raw.writeHead(answer.status, { ...SSE_HEADERS, 'x-request-id': request.id, 'x-spillway-cache': 'hit' });
  reply.raw.end(answer.chunks.map((data) => sseData(data)).join('') + SSE_DONE);
  recordRequest(deps.metrics, request, answer.status, reply.elapsedTime);
  return reply;
}

/** Time a request may take in all: its longest queue wait plus the upstream timeout, capped by config. */
function deadlineBudgetMs(config: Config, tenant: TenantConfig): number {
  const wait = tenant.maxQueueWaitMs ?? config.server.maxQueueWaitMs;
  return Math.min(wait + config.server.requestTimeoutMs, config.server.maxDeadlineMs);
}

/** Whether `Prefer` (RFC 7240) asks for `respond-async`. */
function prefersAsync(prefer: string | string[]): boolean {
  const values = Array.isArray(prefer) ? prefer : [prefer];
  return values.some((value) => value.split(',').some((preference) => preference.split(';')[0]!.trim().toLowerCase() === 'respond-async'));
}

/** The request as an async job: 202 with the job, `Location` and `Preference-Applied`, instead of the answer. */
async function respondAsync(
  deps: CompletionRouteDeps & { jobs: AsyncJobServices },
  forward: HeaderFilter,
  endpoint: Endpoint,
  tenant: TenantConfig,
  request: FastifyRequest,
  reply: FastifyReply,
): Promise<FastifyReply> {
  const idempotencyKey = validIdempotencyKey(request.headers['idempotency-key']);
  const submitted = await submitJob(deps, {
    tenant,
    endpoint,
    body: request.body,
    ...(idempotencyKey === undefined ? {} : { idempotencyKey }),
    requestId: request.id,
    headers: pickHeaders(request.headers, forward),
  });
  void reply.header('preference-applied', 'respond-async');
  return sendAccepted(reply, submitted);
}
