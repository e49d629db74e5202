// /v1/jobs: submit an async job, read its status and result, list a tenant's jobs, cancel one, read and retry its
// webhook deliveries. A tenant only ever sees its own jobs (another's answers 404, never 403); nothing here calls
// an upstream or waits for one.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { Endpoint } from '../../config/schema.ts';
import type { Authenticate } from '../plugins/auth.ts';
import { compileHeaderFilter, pickHeaders } from '../forward-headers.ts';
import { invalidRequest, jobNotFound, serviceUnavailable, SpillwayError, webhookNotDeliverable } from '../../errors.ts';
import { isTerminal, JobStatusSchema, type JobRecord } from '../../queue/job-store.ts';
import { ENDPOINT_PATHS, toPublicJob } from '../../queue/job-object.ts';
import { JOB_ID_PATTERN, submitJob, type SubmissionDeps, type Submitted } from './job-submission.ts';
import { validIdempotencyKey } from './idempotent-requests.ts';

export interface JobRouteDeps extends SubmissionDeps {
  authenticate: Authenticate;
}

const ENDPOINT_BY_PATH = new Map(Object.entries(ENDPOINT_PATHS).map(([endpoint, path]) => [path, endpoint as Endpoint]));
const MAX_METADATA_CHARS = 4_096;

const SubmitJobSchema = z.strictObject({
  endpoint: z.enum(Object.values(ENDPOINT_PATHS) as [string, ...string[]], { error: `must be one of ${Object.values(ENDPOINT_PATHS).join(', ')}` }),
  body: z.record(z.string(), z.unknown(), { error: 'must be the JSON object the endpoint takes' }),
  webhook: z
    .strictObject({
      url: z.string().min(1).max(2_048),
      metadata: z.record(z.string(), z.unknown()).optional(),
    })
    .optional(),
});

const ListQuerySchema = z.strictObject({
  status: JobStatusSchema.optional(),
  limit: z.coerce.number().int().min(1).max(100).default(20),
  after: z.string().min(1).max(64).optional(),
});

export function registerJobRoutes(app: FastifyInstance, deps: JobRouteDeps): void {
  const forward = compileHeaderFilter(deps.config.server.forwardHeaders);

  app.post('/v1/jobs', async (request, reply) => {
    const tenant = deps.authenticate(request);
    const input = parseInput(SubmitJobSchema, request.body);
    if (input.webhook?.metadata !== undefined && JSON.stringify(input.webhook.metadata).length > MAX_METADATA_CHARS) {
      throw invalidRequest(`Invalid value for 'webhook.metadata': at most ${MAX_METADATA_CHARS} characters of JSON.`, 'webhook.metadata', 'invalid_value');
    }
    const idempotencyKey = validIdempotencyKey(request.headers['idempotency-key']);
    const submitted = await submitJob(deps, {
      tenant,
      endpoint: ENDPOINT_BY_PATH.get(input.endpoint)!,
      body: input.body,
      ...(input.webhook === undefined ? {} : { webhook: input.webhook }),
      ...(idempotencyKey === undefined ? {} : { idempotencyKey }),
      requestId: request.id,
      headers: pickHeaders(request.headers, forward),
    });
    return sendAccepted(reply, submitted);
  });

  app.get('/v1/jobs', async (request) => {
    const tenant = deps.authenticate(request);
    const query = parseInput(ListQuerySchema, request.query);
    const page = await withStore(() =>
      deps.jobs.store.list(tenant.id, { limit: query.limit, ...(query.after === undefined ? {} : { after: query.after }), ...(query.status === undefined ? {} : { status: query.status }) }),
    );
    const data = page.records.map((record) => toPublicJob(record));
    return { object: 'list', data, first_id: data[0]?.id ?? null, last_id: data.at(-1)?.id ?? null, has_more: page.hasMore };
  });

  app.get<{ Params: { id: string } }>('/v1/jobs/:id', async (request) => {
    const tenant = deps.authenticate(request);
    const record = await findJob(deps, tenant.id, request.params.id);
    const position = record.status === 'queued' ? await deps.jobs.store.queuePosition(record.id).catch(() => undefined) : undefined;
    return toPublicJob(record, position);
  });

  const cancel = async (request: FastifyRequest<{ Params: { id: string } }>) => {
    const tenant = deps.authenticate(request);
    return toPublicJob(await cancelJob(deps, tenant.id, request.params.id));
  };
  app.delete<{ Params: { id: string } }>('/v1/jobs/:id', cancel);
  app.post<{ Params: { id: string } }>('/v1/jobs/:id/cancel', cancel);

  app.get<{ Params: { id: string } }>('/v1/jobs/:id/deliveries', async (request) => {
    const tenant = deps.authenticate(request);
    const record = await findJob(deps, tenant.id, request.params.id);
    const data = await withStore(() => deps.jobs.store.deliveries(tenant.id, record.id));
    return { object: 'list', data, has_more: false };
  });

  app.post<{ Params: { id: string } }>('/v1/jobs/:id/deliveries/retry', async (request, reply) => {
    const tenant = deps.authenticate(request);
    const record = await findJob(deps, tenant.id, request.params.id);
    if (!isTerminal(record.status)) throw webhookNotDeliverable('the job has not finished');
    if (record.webhook === undefined) throw webhookNotDeliverable('the job has no webhook');
    // A delivery still under way (first send or its retries) is not doubled: one retry at a time, after it has ended.
    if (record.webhookState === 'pending') throw webhookNotDeliverable('a delivery of its event is still under way');
    const status = record.status;
    await withStore(async () => {
      await deps.jobs.store.setWebhookState(tenant.id, record.id, 'pending', 0);
      await deps.jobs.webhooks.retry(tenant.id, record.id, status);
    });
    return reply.code(202).send(toPublicJob({ ...record, webhookState: 'pending', webhookAttempts: 0 }));
  });
}

/** 202 with the job and where to poll it; `Idempotent-Replayed` when the key named an earlier submission. */
export function sendAccepted(reply: FastifyReply, submitted: Submitted): FastifyReply {
  void reply.code(202).header('location', `/v1/jobs/${submitted.job.id}`);
  if (submitted.replayed) void reply.header('idempotent-replayed', 'true');
  return reply.send(submitted.job);
}

/**
 * Cancels a job of this tenant: the record moves to `cancelled` (the one move that wins sends the event), then the
 * queue drops a waiting job or the worker holding a running one aborts its upstream call. A finished job is left as is.
 */
async function cancelJob(deps: JobRouteDeps, tenantId: string, jobId: string): Promise<JobRecord> {
  const record = await findJob(deps, tenantId, jobId);
  if (isTerminal(record.status)) return record;
  await withStore(async () => {
    const update = await deps.jobs.store.finish(tenantId, jobId, 'cancelled', {
      error: { message: 'The job was cancelled.', type: 'invalid_request_error', param: null, code: 'job_cancelled' },
    });
    if (!update.changed) return;
    // The event first: if this process dies before the queue is told, the worker that takes the job finds it
    // cancelled and drops it; the other order could lose the event.
    if (update.hasWebhook) await deps.jobs.webhooks.enqueue(tenantId, jobId, 'cancelled');
    await deps.queue.cancel(jobId);
  });
  return (await deps.jobs.store.get(tenantId, jobId)) ?? { ...record, status: 'cancelled' };
}

/** The tenant's job, or 404: an unknown id, an expired job and another tenant's job look the same. */
async function findJob(deps: JobRouteDeps, tenantId: string, jobId: string): Promise<JobRecord> {
  if (!JOB_ID_PATTERN.test(jobId)) throw jobNotFound(jobId.slice(0, 64));
  const record = await withStore(() => deps.jobs.store.get(tenantId, jobId));
  if (record === undefined) throw jobNotFound(jobId);
  return record;
}

async function withStore<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (err) {
    if (err instanceof SpillwayError) throw err;
    throw serviceUnavailable('The job store is unavailable; try again shortly.');
  }
}

function parseInput<T extends z.ZodType>(schema: T, value: unknown): z.infer<T> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw invalidRequest('The request body must be a JSON object.');
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const issue = result.error.issues[0]!;
  const param = issue.path.map(String).join('.');
  if (issue.code === 'unrecognized_keys') {
    throw invalidRequest(`Unrecognized request argument supplied: ${issue.keys.join(', ')}.`, issue.keys[0] ?? null, 'unknown_parameter');
  }
  const given = issue.path.reduce<unknown>((at, key) => (at !== null && typeof at === 'object' ? (at as Record<PropertyKey, unknown>)[key] : undefined), value);
  if (given === undefined) throw invalidRequest(`Missing required parameter: '${param}'.`, param || null, 'missing_required_parameter');
  throw invalidRequest(`Invalid value for '${param}': ${issue.message}.`, param || null, 'invalid_value');
}
