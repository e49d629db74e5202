// The Responses API: POST /v1/responses as one more job kind on the queued path (auth, validation, admission, queue,
// worker, reply channel, deadline, cancellation), and the stored responses: GET (JSON or replayed as a stream),
// GET …/input_items, DELETE, POST …/cancel. Never calls an upstream; never shows one tenant another's response.
import { randomUUID } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Cluster, Redis } from 'ioredis';
import type { Config, TenantConfig } from '../../config/schema.ts';
import type { Authenticate } from '../plugins/auth.ts';
import type { Router } from '../../catalogue/catalogue.ts';
import type { ReplyBus } from '../../queue/reply-bus.ts';
import type { CompletionQueue } from '../../queue/completion-queue.ts';
import { JOB_SCHEMA_VERSION, type CompletionJob } from '../../queue/jobs.ts';
import { createRedisKeys } from '../../queue/keys.ts';
import type { Metrics } from '../../observability/metrics.ts';
import type { AdmissionGate } from '../../admission/gate.ts';
import { parseResponsesRequest } from '../../openai/responses-schemas.ts';
import { SSE_HEADERS } from '../../openai/sse.ts';
import {
  invalidRequest,
  modelNotAllowed,
  modelNotFound,
  modelWrongEndpoint,
  previousResponseNotFound,
  responseNotFound,
  serviceUnavailable,
  SpillwayError,
  unsupportedParameter,
} from '../../errors.ts';
import { responseIdFor, type ResponseItem, type ResponsesJobContext } from '../../responses/context.ts';
import { inputItemsOf, MAX_CHAIN, ResponseStore, type StoredResponse } from '../../responses/store.ts';
import { TerminalCapture } from '../../responses/capture.ts';
import { RESPONSES_FRAMING } from '../../responses/sse.ts';
import { replayEvents } from '../../responses/replay.ts';
import { listInputItems } from '../../responses/input-items.ts';
import { cancelBackground, refreshBackground, submitBackground, TERMINAL, type BackgroundDeps } from '../../responses/background.ts';
import type { JobStore } from '../../queue/job-store.ts';
import type { WebhookQueue } from '../../webhooks/webhook-queue.ts';
import { PendingRequest } from '../pending-request.ts';
import { recordFirstToken, recordRequest } from '../access-log.ts';
import { sendQueuedAnswer } from './queued-answer.ts';
import { compileHeaderFilter, pickHeaders, type HeaderFilter } from '../forward-headers.ts';

export interface ResponsesRouteDeps {
  config: Config;
  authenticate: Authenticate;
  router: Router;
  bus: ReplyBus;
  queue: CompletionQueue;
  metrics: Metrics;
  instanceId: string;
  admission: AdmissionGate;
  /** Default: a store on the queue's own (fail-fast) Redis connection. */
  store?: ResponseStore;
  /** The async jobs' record store and webhook queue: background responses run on them. Absent: `background` is a 400. */
  jobs?: { store: JobStore; webhooks: WebhookQueue };
}

type Params = { id: string };

export function registerResponseRoutes(app: FastifyInstance, deps: ResponsesRouteDeps): void {
  const forward = compileHeaderFilter(deps.config.server.forwardHeaders);
  // The queue's connection is the ingress's command connection: fail-fast, with the request path's command timeout.
  const given = deps.store;
  const store = given === undefined ? lazyStore(deps) : () => given;
  app.post('/v1/responses', async (request, reply) => create(deps, store(), forward, request, reply));
  app.get<{ Params: Params }>('/v1/responses/:id', async (request, reply) => {
    const { stored } = await find(deps, store(), request);
    const query = request.query as Record<string, string | undefined>;
    if (query.stream !== 'true') return stored.response;
    const startingAfter = query.starting_after === undefined ? undefined : Number(query.starting_after);
    if (startingAfter !== undefined && !Number.isInteger(startingAfter)) throw invalidRequest("Invalid value for 'starting_after': expected an integer.", 'starting_after', 'invalid_value');
    reply.hijack();
    reply.raw.writeHead(200, { ...SSE_HEADERS, 'x-request-id': request.id });
    reply.raw.end(replayEvents(stored.response, startingAfter).map((event) => RESPONSES_FRAMING.event(event)).join(''));
    recordRequest(deps.metrics, request, 200, reply.elapsedTime);
    return reply;
  });
  app.get<{ Params: Params }>('/v1/responses/:id/input_items', async (request) => {
    const { stored } = await find(deps, store(), request);
    const query = request.query as Record<string, string | undefined>;
    const limit = query.limit === undefined ? 20 : Number(query.limit);
    if (!Number.isInteger(limit) || limit < 1 || limit > 100) throw invalidRequest("Invalid value for 'limit': expected an integer from 1 to 100.", 'limit', 'invalid_value');
    const order = query.order ?? 'desc';
    if (order !== 'asc' && order !== 'desc') throw invalidRequest("Invalid value for 'order': expected 'asc' or 'desc'.", 'order', 'invalid_value');
    const page = listInputItems(stored.input, request.params.id, { limit, order, after: query.after });
    if (page === undefined) throw invalidRequest(`No input item with id '${query.after ?? ''}' in this response.`, 'after', 'invalid_value');
    return page;
  });
  app.delete<{ Params: Params }>('/v1/responses/:id', async (request) => {
    const tenant = deps.authenticate(request);
    const deleted = await storeCall(request, () => store().delete(tenant.id, request.params.id));
    if (!deleted) throw responseNotFound(request.params.id);
    return { id: request.params.id, object: 'response', deleted: true };
  });
  app.post<{ Params: Params }>('/v1/responses/:id/cancel', async (request) => {
    const { tenant, stored } = await find(deps, store(), request);
    const background = backgroundDeps(deps, store());
    // Only a background response can still be running once its creator has its answer.
    if (background === undefined || stored.response.background !== true) {
      throw invalidRequest('Only responses created with background: true can be cancelled.', null, 'response_not_cancellable');
    }
    return storeCall(request, () => cancelBackground(background, tenant.id, stored));
  });
}

function lazyStore(deps: ResponsesRouteDeps): () => ResponseStore {
  let store: ResponseStore | undefined;
  let redis: Redis | Cluster | undefined;
  // BullMQ hands back the ioredis connection it was given (typed as its own client interface).
  void deps.queue.queue.client.then((client) => (redis = client as unknown as Redis | Cluster));
  return () => {
    if (store !== undefined) return store;
    if (redis === undefined) throw serviceUnavailable('The response store is not connected yet; try again shortly.');
    store = new ResponseStore({ redis, keys: createRedisKeys(deps.config.redis.prefix), ttlSeconds: deps.config.responses.storeTtlSeconds });
    return store;
  };
}

/** The tenant's stored response (a background one brought up to date), or 404: unknown, expired and foreign look alike. */
async function find(deps: ResponsesRouteDeps, store: ResponseStore, request: FastifyRequest<{ Params: Params }>): Promise<{ tenant: TenantConfig; stored: StoredResponse }> {
  const tenant = deps.authenticate(request);
  const stored = await storeCall(request, () => store.get(tenant.id, request.params.id));
  if (stored === undefined) throw responseNotFound(request.params.id);
  const background = backgroundDeps(deps, store);
  if (background === undefined || stored.response.background !== true) return { tenant, stored };
  return { tenant, stored: await storeCall(request, () => refreshBackground(background, tenant.id, stored)) };
}

function backgroundDeps(deps: ResponsesRouteDeps, store: ResponseStore): BackgroundDeps | undefined {
  return deps.jobs === undefined ? undefined : { config: deps.config, queue: deps.queue, admission: deps.admission, jobs: deps.jobs, store };
}

/** A store that does not answer is the broker's outage, answered 503 like any Redis failure on the request path. */
async function storeCall<T>(request: FastifyRequest, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (err) {
    // A refusal the call itself decided (e.g. an item_reference not found) is the client's answer, not an outage.
    if (err instanceof SpillwayError) throw err;
    request.log.warn({ err }, 'response store unavailable');
    throw serviceUnavailable('The response store is unavailable; try again shortly.');
  }
}

async function create(deps: ResponsesRouteDeps, store: ResponseStore, forward: HeaderFilter, request: FastifyRequest, reply: FastifyReply): Promise<unknown> {
  const tenant = deps.authenticate(request);
  const parsed = parseResponsesRequest(request.body);
  const body = parsed.body;
  if (parsed.background && deps.jobs === undefined) {
    throw unsupportedParameter('background', 'background: true needs the broker\'s async jobs, which this deployment does not offer; send it without background.');
  }
  // A background response is polled for, so it is stored: store: false cannot be honoured (OpenAI refuses it too).
  if (parsed.background && !parsed.store) throw invalidRequest('Background mode requires store: true.', 'store', 'invalid_value');
  if (body.conversation !== undefined && body.conversation !== null) {
    throw unsupportedParameter('conversation', 'Conversations are not available through this broker: chain responses with previous_response_id instead.');
  }
  const model = deps.router.model(parsed.model);
  if (model === undefined) throw modelNotFound(parsed.model);
  if (tenant.models !== undefined && !tenant.models.includes(model.name)) throw modelNotAllowed(model.name);
  if (!deps.router.servesEndpoint(model, 'responses')) throw modelWrongEndpoint(model.name, 'responses');

  // The conversation so far: read before admission so that a wrong id costs the tenant nothing.
  const background = backgroundDeps(deps, store);
  let previous: StoredResponse | undefined;
  let history: ResponseItem[] = [];
  if (parsed.previousResponseId !== undefined) {
    const id = parsed.previousResponseId;
    previous = await storeCall(request, () => store.get(tenant.id, id));
    if (previous === undefined) throw previousResponseNotFound(id);
    // A background response's answer is written into the store when it is first read after its job ended: read it now,
    // or the next turn would be built on the empty shell it was stored as.
    if (background !== undefined) {
      const stored = previous;
      previous = await storeCall(request, () => refreshBackground(background, tenant.id, stored));
    }
    if (!TERMINAL.has(String(previous.response.status))) {
      throw invalidRequest(`Previous response with id '${id}' has not finished yet (${String(previous.response.status)}).`, 'previous_response_id', 'previous_response_not_finished');
    }
    const found = previous;
    history = await storeCall(request, () => store.conversation(tenant.id, found));
    // The whole conversation travels in one job: no larger than a request body may be.
    if (JSON.stringify(history).length > deps.config.server.bodyLimitBytes) {
      throw invalidRequest(
        `The conversation before this response is longer than ${deps.config.server.bodyLimitBytes} bytes: start a new one, or send the turns you need as input.`,
        'previous_response_id',
        'conversation_too_long',
      );
    }
  }
  const jobBody = await storeCall(request, () => resolveReferences(store, tenant.id, body));
  const chain = previous === undefined ? [] : [...previous.chain, String(previous.response.id)].slice(-MAX_CHAIN);
  if (parsed.background && background !== undefined) {
    return submitBackground(background, {
      tenant,
      model: model.name,
      jobBody,
      stored: { v: 1, input: inputItemsOf(jobBody.input), chain, native: false },
      context: previous === undefined ? {} : { previous: { id: String(previous.response.id), native: previous.native, items: history } },
      requestId: request.id,
      headers: pickHeaders(request.headers, forward),
      hex: randomUUID().replace(/-/g, ''),
    });
  }

  const admitted = await deps.admission.admit(tenant, 'responses', history.length === 0 ? jobBody : { ...jobBody, input: [...history, ...inputItemsOf(jobBody.input)] });
  for (const [name, value] of Object.entries(admitted.headers)) void reply.header(name, value);

  const now = Date.now();
  const deadline = now + deadlineBudgetMs(deps.config, tenant);
  const jobId = randomUUID();
  const context: ResponsesJobContext = {
    id: responseIdFor(jobId),
    createdAt: Math.floor(now / 1000),
    ...(previous === undefined ? {} : { previous: { id: String(previous.response.id), native: previous.native, items: history } }),
  };
  const job: CompletionJob = {
    v: JOB_SCHEMA_VERSION,
    endpoint: 'responses',
    requestId: request.id,
    tenant: tenant.id,
    model: model.name,
    body: jobBody,
    stream: parsed.stream,
    replyTo: deps.instanceId,
    headers: pickHeaders(request.headers, forward),
    enqueuedAt: now,
    deadline,
    responses: context,
    ...(admitted.tokens > 0 ? { tokens: admitted.tokens } : {}),
  };
  const log = () => request.log.child({ tenant: tenant.id, jobId, model: model.name });
  // What a finished response is stored as: its input (item references resolved: a later bridged turn has no store to
  // look them up in), and the chain of turns before it.
  const save = async (response: Record<string, unknown>): Promise<void> => {
    if (!parsed.store || typeof response.id !== 'string') return;
    const stored: StoredResponse = { v: 1, response, input: inputItemsOf(jobBody.input), chain, native: response.id !== context.id };
    await store.save(tenant.id, stored).catch((err: unknown) => log().warn({ err }, 'storing the response failed'));
  };
  let abandonedFor: string | undefined;
  const pending = new PendingRequest({
    reply,
    stream: parsed.stream,
    deadline,
    requestId: request.id,
    headers: admitted.headers,
    keepAliveMs: deps.config.server.streamKeepAliveMs,
    bufferLimitBytes: deps.config.server.streamBufferBytes,
    framing: RESPONSES_FRAMING,
    onFirstChunk: () => recordFirstToken(deps.metrics, request, reply.elapsedTime),
    onAbandon: (reason) => {
      abandonedFor = reason;
      log().info({ reason }, reason === 'draining' ? 'request cut by the ingress drain: cancelling its job' : 'request abandoned: cancelling its job');
      deps.queue.cancel(jobId).catch((err: unknown) => log().warn({ err }, 'cancelling a job failed'));
    },
    onFinish: () => {
      deps.bus.unregister(jobId);
      deps.metrics.pendingReplies.dec();
    },
  });
  return sendQueuedAnswer(deps, request, reply, {
    jobId,
    job,
    delayMs: admitted.delayMs,
    priority: admitted.priority,
    pending,
    // A stored stream is captured as it passes; a stored JSON answer is saved before it is sent.
    ...(parsed.stream && parsed.store ? { listener: new TerminalCapture(pending, save) } : {}),
    abandonedFor: () => abandonedFor,
    onJson: (status: number, body: string) => (status === 200 ? save(parseObject(body)) : undefined),
    log,
  });
}

/**
 * `item_reference` items naming output items this tenant has stored are replaced by the items themselves: a bridged
 * upstream has no store to look them up in. One this tenant has not stored is refused, also for a native upstream:
 * that upstream holds every tenant's responses under the broker's one key, and would resolve another tenant's item.
 */
async function resolveReferences(store: ResponseStore, tenant: string, body: Record<string, unknown>): Promise<Record<string, unknown>> {
  if (!Array.isArray(body.input)) return body;
  const input = body.input as ResponseItem[];
  const ids = input.filter((item) => item.type === 'item_reference' && typeof item.id === 'string').map((item) => item.id as string);
  if (ids.length === 0) return body;
  const found = await store.resolveItems(tenant, ids);
  const index = input.findIndex((item) => item.type === 'item_reference' && typeof item.id === 'string' && !found.has(item.id));
  if (index !== -1) throw invalidRequest(`Item with id '${String(input[index]!.id)}' not found.`, `input[${index}].id`, 'item_not_found');
  return { ...body, input: input.map((item) => (item.type === 'item_reference' ? (found.get(item.id as string) ?? item) : item)) };
}

function parseObject(text: string): Record<string, unknown> {
  try {
    const value: unknown = JSON.parse(text);
    return value !== null && typeof value === 'object' ? (value as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}

/** Time a request may take in all: its longest queue wait plus the upstream timeout, capped by config. */
function deadlineBudgetMs(config: Config, tenant: TenantConfig): number {
  const wait = tenant.maxQueueWaitMs ?? config.server.maxQueueWaitMs;
  return Math.min(wait + config.server.requestTimeoutMs, config.server.maxDeadlineMs);
}
