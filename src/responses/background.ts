// Background responses (`background: true`) on the async jobs' machinery: the response is answered at once as
// `queued`, runs as an async job (its record, the tenant's async budgets, its webhook), and its stored entry is brought
// up to date from the job's record when read. Never waits for the upstream; never runs one response twice.
import type { Config, TenantConfig } from '../config/schema.ts';
import type { CompletionQueue } from '../queue/completion-queue.ts';
import type { JobRecord, JobStore } from '../queue/job-store.ts';
import type { WebhookQueue } from '../webhooks/webhook-queue.ts';
import { requestHash } from '../queue/idempotency.ts';
import type { AdmissionGate } from '../admission/gate.ts';
import { JOB_SCHEMA_VERSION, type CompletionJob } from '../queue/jobs.ts';
import { invalidRequest, serviceUnavailable } from '../errors.ts';
import type { ResponsesJobContext } from './context.ts';
import { responseShell } from './response.ts';
import { record as asRecord } from './request.ts';
import type { ResponseStore, StoredResponse } from './store.ts';

type Json = Record<string, unknown>;

export interface BackgroundDeps {
  config: Config;
  queue: CompletionQueue;
  admission: AdmissionGate;
  jobs: { store: JobStore; webhooks: WebhookQueue };
  store: ResponseStore;
}

export interface BackgroundSubmission {
  tenant: TenantConfig;
  /** The public model name. */
  model: string;
  /** The job body (item references resolved) and the client's own body (stored as the input). */
  jobBody: Json;
  stored: Omit<StoredResponse, 'response'>;
  context: Omit<ResponsesJobContext, 'id' | 'createdAt'>;
  requestId: string;
  headers: Record<string, string>;
  /** 32 hex digits: the job is `job_<hex>`, the response `resp_<hex>`. */
  hex: string;
}

/** The job behind a background response: the same hex digits. */
export const jobIdOf = (responseId: string) => `job_${responseId.replace(/^resp_/, '')}`;

/** The statuses a response ends in: one in any other (queued, in_progress) is a background response still running. */
export const TERMINAL = new Set(['completed', 'incomplete', 'failed', 'cancelled']);

/** Records, stores and enqueues the response; answers the queued Response. */
export async function submitBackground(deps: BackgroundDeps, s: BackgroundSubmission): Promise<Json> {
  const { config, jobs } = deps;
  if (s.jobBody.stream === true) throw invalidRequest('Streaming a background response is not available here: poll GET /v1/responses/{id} instead.', 'stream', 'unsupported_parameter');
  const admitted = await deps.admission.admit(s.tenant, 'responses', s.jobBody, {
    priorityClass: config.jobs.asyncPriority,
    maxQueueWaitMs: config.jobs.asyncMaxQueueWaitMs,
    chargeAtRun: true,
  });
  const now = Date.now();
  const jobId = `job_${s.hex}`;
  const responseId = `resp_${s.hex}`;
  const deadline = now + config.jobs.asyncMaxQueueWaitMs + config.server.requestTimeoutMs;
  // OpenAI has no per-request webhook for responses: the tenant's configured endpoint gets the events.
  const webhook = s.tenant.webhook?.url === undefined ? undefined : { url: s.tenant.webhook.url };
  const record = {
    id: jobId,
    tenant: s.tenant.id,
    endpoint: 'responses' as const,
    model: s.model,
    requestId: s.requestId,
    bodyHash: requestHash({ mode: 'async', endpoint: 'responses', body: s.jobBody }),
    createdAt: now,
    deadline,
    ...(webhook === undefined ? {} : { webhook }),
  };
  const queued = { ...responseShell(s.jobBody, { id: responseId, createdAt: Math.floor(now / 1000), model: s.model, status: 'queued' }), background: true };
  const job: CompletionJob = {
    v: JOB_SCHEMA_VERSION,
    endpoint: 'responses',
    requestId: s.requestId,
    tenant: s.tenant.id,
    model: s.model,
    // The broker runs it in the background: the upstream gets an ordinary, synchronous request.
    body: { ...s.jobBody, background: false, stream: false },
    stream: false,
    replyTo: null,
    headers: s.headers,
    enqueuedAt: now,
    deadline,
    chargeAtRun: true,
    responses: { ...s.context, id: responseId, createdAt: Math.floor(now / 1000) },
  };
  try {
    await jobs.store.create(record);
    await deps.store.save(s.tenant.id, { ...s.stored, response: queued });
  } catch {
    await jobs.store.discard(s.tenant.id, jobId).catch(() => undefined);
    throw serviceUnavailable('The response store is unavailable; try again shortly.');
  }
  try {
    await deps.queue.enqueue(jobId, job, admitted.priority === undefined ? {} : { priority: admitted.priority });
  } catch {
    await jobs.store.discard(s.tenant.id, jobId).catch(() => undefined);
    await deps.store.delete(s.tenant.id, responseId).catch(() => undefined);
    void deps.queue.discard(jobId, deadline);
    throw serviceUnavailable('The request queue is unavailable; try again shortly.');
  }
  return queued;
}

/** A background response as it stands now: its job's outcome written into the stored entry once the job has ended. */
export async function refreshBackground(deps: BackgroundDeps, tenant: string, stored: StoredResponse): Promise<StoredResponse> {
  const response = stored.response;
  if (response.background !== true || TERMINAL.has(String(response.status))) return stored;
  const record = await deps.jobs.store.get(tenant, jobIdOf(String(response.id)));
  if (record === undefined) {
    // The job's record outlived by the stored response (async retention is shorter than the store's): its outcome is
    // gone for good, and the response would stay queued for ever. It is failed, once, and stays so.
    const lost = { ...response, status: 'failed', error: { code: 'server_error', message: 'The background job expired before its result was read.' } };
    await deps.store.update(tenant, String(response.id), lost);
    return { ...stored, response: lost };
  }
  if (record.status === 'queued') return stored;
  if (record.status === 'running') return { ...stored, response: { ...response, status: 'in_progress' } };
  const final = finalResponse(response, record);
  await deps.store.update(tenant, String(response.id), final);
  return { ...stored, response: final };
}

/** Cancels a background response still queued or running; one that has ended is answered as it is. */
export async function cancelBackground(deps: BackgroundDeps, tenant: string, stored: StoredResponse): Promise<Json> {
  const current = await refreshBackground(deps, tenant, stored);
  if (TERMINAL.has(String(current.response.status))) return current.response;
  const jobId = jobIdOf(String(stored.response.id));
  const update = await deps.jobs.store.finish(tenant, jobId, 'cancelled', {
    error: { message: 'The response was cancelled.', type: 'invalid_request_error', param: null, code: 'response_cancelled' },
  });
  // The event first, then the queue: a worker that takes the job meanwhile finds it cancelled and drops it.
  if (update.changed && update.hasWebhook) await deps.jobs.webhooks.enqueue(tenant, jobId, 'cancelled');
  if (update.changed) await deps.queue.cancel(jobId);
  return (await refreshBackground(deps, tenant, stored)).response;
}

/** The Response a finished job stands for: its answer (under the broker's id), or a failed or cancelled shell. */
function finalResponse(queued: Json, record: JobRecord): Json {
  if (record.status === 'succeeded' && record.result !== undefined) {
    try {
      // A native upstream named the response itself: the client knows it by the broker's id.
      return { ...asRecord(JSON.parse(record.result)), id: queued.id, background: true };
    } catch {
      // fall through: an unreadable result is a failure
    }
  }
  if (record.status === 'cancelled') return { ...queued, status: 'cancelled' };
  const message = record.error?.message ?? 'The response failed.';
  return { ...queued, status: 'failed', error: { code: 'server_error', message } };
}
