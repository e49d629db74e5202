// Submitting an async job (POST /v1/jobs, or any completion route with `Prefer: respond-async`): validate like the
// synchronous route, check the webhook URL, admit in the async class, record the job, enqueue it. Never waits for
// the upstream; never runs one request twice for one Idempotency-Key.
import { randomBytes } from 'node:crypto';
import type { Config, Endpoint, TenantConfig } from '../../config/schema.ts';
import type { Router } from '../../catalogue/catalogue.ts';
import type { CompletionQueue } from '../../queue/completion-queue.ts';
import type { AdmissionGate } from '../../admission/gate.ts';
import type { JobRecord, JobStore, JobWebhook } from '../../queue/job-store.ts';
import type { WebhookQueue } from '../../webhooks/webhook-queue.ts';
import type { SyncIdempotency } from '../../queue/idempotency.ts';
import { idempotencyKeyHash, requestHash } from '../../queue/idempotency.ts';
import { JOB_SCHEMA_VERSION, type CompletionJob } from '../../queue/jobs.ts';
import { toPublicJob, type PublicJob } from '../../queue/job-object.ts';
import { parseRequestBody } from '../../openai/schemas.ts';
import { checkWebhookUrl, UnsafeWebhookUrl, type ResolveAll } from '../../webhooks/url-safety.ts';
import {
  idempotencyKeyReused,
  invalidRequest,
  invalidWebhookUrl,
  modelNotAllowed,
  modelNotFound,
  modelWrongEndpoint,
  serviceUnavailable,
  SpillwayError,
  webhookNotConfigured,
} from '../../errors.ts';

/** What the ingress needs for async jobs (built in roles/ingress.ts). */
export interface AsyncJobServices {
  store: JobStore;
  webhooks: WebhookQueue;
  idempotency: SyncIdempotency;
  /** DNS used to check a webhook host at submission (tests pin it). */
  resolveAll?: ResolveAll;
}

export interface SubmissionDeps {
  config: Config;
  router: Router;
  queue: CompletionQueue;
  admission: AdmissionGate;
  jobs: AsyncJobServices;
}

export interface JobSubmission {
  tenant: TenantConfig;
  endpoint: Endpoint;
  body: unknown;
  /** The submission's own webhook; absent: the tenant's default URL, if it has one. */
  webhook?: { url: string; metadata?: Record<string, unknown> };
  idempotencyKey?: string;
  requestId: string;
  /** Client headers allowed through to the upstream (`server.forwardHeaders`). */
  headers: Record<string, string>;
}

export interface Submitted {
  job: PublicJob;
  /** The Idempotency-Key named an earlier submission: this is that job, nothing new was run. */
  replayed: boolean;
}

/** `job_` and 32 hex digits: never a ':' (BullMQ refuses it in ids), never only digits. */
export function newJobId(): string {
  return `job_${randomBytes(16).toString('hex')}`;
}

export const JOB_ID_PATTERN = /^job_[0-9a-f]{32}$/;

export async function submitJob(deps: SubmissionDeps, submission: JobSubmission): Promise<Submitted> {
  const { config, jobs } = deps;
  const { tenant, endpoint } = submission;
  const parsed = parseRequestBody(endpoint, submission.body);
  if (parsed.stream) throw invalidRequest('An async job returns the whole answer: `stream` must be false or absent.', 'stream', 'invalid_value');
  const model = deps.router.model(parsed.model);
  if (model === undefined) throw modelNotFound(parsed.model);
  if (tenant.models !== undefined && !tenant.models.includes(model.name)) throw modelNotAllowed(model.name);
  if (!deps.router.servesEndpoint(model, endpoint)) throw modelWrongEndpoint(model.name, endpoint);
  const webhook = await resolveWebhook(config, tenant, submission.webhook, jobs.resolveAll);

  const admitted = await deps.admission.admit(tenant, endpoint, parsed.body, {
    priorityClass: config.jobs.asyncPriority,
    maxQueueWaitMs: config.jobs.asyncMaxQueueWaitMs,
    chargeAtRun: true,
  });
  const now = Date.now();
  const jobId = newJobId();
  const bodyHash = requestHash({ mode: 'async', endpoint, body: parsed.body, webhook: submission.webhook });
  const keyHash = submission.idempotencyKey === undefined ? undefined : idempotencyKeyHash(submission.idempotencyKey);
  const job: CompletionJob = {
    v: JOB_SCHEMA_VERSION,
    endpoint,
    requestId: submission.requestId,
    tenant: tenant.id,
    model: model.name,
    body: parsed.body,
    stream: false,
    replyTo: null,
    headers: submission.headers,
    enqueuedAt: now,
    deadline: now + config.jobs.asyncMaxQueueWaitMs + config.server.requestTimeoutMs,
    chargeAtRun: true,
  };
  const record: JobRecord = {
    id: jobId,
    tenant: tenant.id,
    status: 'queued',
    endpoint,
    model: model.name,
    requestId: submission.requestId,
    bodyHash,
    createdAt: now,
    deadline: job.deadline,
    attempts: 0,
    ...(webhook === undefined ? {} : { webhook }),
  };
  let takeOver: { jobId: string; bodyHash: string } | undefined;
  // At most two turns: the second only when the key's earlier job has expired (its claim is then taken over).
  for (;;) {
    let created;
    try {
      created = await jobs.store.create(record, keyHash, takeOver);
    } catch {
      throw serviceUnavailable('The job store is unavailable; try again shortly.');
    }
    if (created.created) break;
    if (created.bodyHash !== bodyHash) throw idempotencyKeyReused();
    let replayed: Submitted | undefined;
    try {
      replayed = await replay(deps, tenant.id, created.jobId, job, admitted.priority);
    } catch (err) {
      if (err instanceof SpillwayError) throw err;
      throw serviceUnavailable('The job store is unavailable; try again shortly.');
    }
    if (replayed !== undefined) return replayed;
    // The earlier job's record has expired (its retention is over) while its claim lives on: the key is free again.
    if (takeOver !== undefined) throw serviceUnavailable('The job store is unavailable; try again shortly.');
    takeOver = { jobId: created.jobId, bodyHash: created.bodyHash };
  }
  try {
    await deps.queue.enqueue(jobId, job, admitted.priority === undefined ? {} : { priority: admitted.priority });
  } catch {
    // Not accepted: nothing may stay behind that a retry with the same key would mistake for an accepted job.
    await jobs.store.discard(tenant.id, jobId, keyHash).catch(() => undefined);
    void deps.queue.discard(jobId, job.deadline);
    throw serviceUnavailable('The request queue is unavailable; try again shortly.');
  }
  return { job: toPublicJob(record), replayed: false };
}

/**
 * The job an Idempotency-Key named earlier. One still `queued` is enqueued again under its own id (a no-op when it is
 * in the queue): its first submission may have died between recording it and enqueuing it. Undefined when its record
 * has expired: nothing is left to replay.
 */
async function replay(deps: SubmissionDeps, tenantId: string, jobId: string, job: CompletionJob, priority: number | undefined): Promise<Submitted | undefined> {
  const record = await deps.jobs.store.get(tenantId, jobId);
  if (record === undefined) return undefined;
  if (record.status === 'queued') {
    await deps.queue.enqueue(jobId, { ...job, deadline: record.deadline, enqueuedAt: record.createdAt }, priority === undefined ? {} : { priority });
  }
  return { job: toPublicJob(record), replayed: true };
}

/** The webhook a job gets: its own, else its tenant's default; checked (scheme, DNS) and signable, or a 400. */
async function resolveWebhook(
  config: Config,
  tenant: TenantConfig,
  given: JobSubmission['webhook'],
  resolveAll: ResolveAll | undefined,
): Promise<JobWebhook | undefined> {
  const url = given?.url ?? tenant.webhook?.url;
  if (url === undefined) return undefined;
  if (tenant.webhook === undefined || tenant.webhook.secrets.length === 0) throw webhookNotConfigured();
  try {
    await checkWebhookUrl(url, { allowHttp: config.webhooks.allowHttp, allowHosts: config.webhooks.allowHosts }, resolveAll);
  } catch (err) {
    if (err instanceof UnsafeWebhookUrl) throw invalidWebhookUrl(err.message);
    throw err;
  }
  return given?.metadata === undefined ? { url } : { url, metadata: given.metadata };
}
