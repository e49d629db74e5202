// The contract between ingress and workers: the versioned completion job, parsed with the same schema on both sides.
// Job data is stored in clear text in Redis: it must never carry a secret (workers resolve provider keys themselves).
import { z } from 'zod';
import { EndpointSchema } from '../config/schema.ts';
import { ResponsesJobContextSchema } from '../responses/context.ts';
import { CacheDirectiveSchema } from '../cache/directive.ts';

/**
 * v2 adds `tokens` (the admission's token estimate, settled from usage by the worker). v3 adds `chargeAtRun` (async
 * jobs). Workers read v1 to v3, so a rolling deploy updates workers first; an ingress writes v3.
 */
export const JOB_SCHEMA_VERSION = 3;

export const CompletionJobSchema = z.strictObject({
  v: z.union([z.literal(1), z.literal(2), z.literal(JOB_SCHEMA_VERSION)]),
  endpoint: EndpointSchema,
  requestId: z.string().min(1),
  tenant: z.string().min(1),
  /** The public model name the client asked for; the worker resolves the route. */
  model: z.string().min(1),
  /** The validated request body as the client sent it (the worker swaps in the provider's model name). */
  body: z.record(z.string(), z.unknown()),
  stream: z.boolean(),
  /** The ingress instance waiting for the answer; null for async jobs (answered by polling or webhook). */
  replyTo: z.string().min(1).nullable(),
  /** Client headers allowed through to the upstream by `server.forwardHeaders`. */
  headers: z.record(z.string(), z.string()),
  /** Epoch ms. */
  enqueuedAt: z.number().int(),
  /** Epoch ms after which nobody waits for the answer: an expired job is never sent upstream. */
  deadline: z.number().int(),
  /** Tokens the admission charged to the tenant's tpm (v2); the worker corrects the budget from the upstream's usage. */
  tokens: z.number().int().nonnegative().optional(),
  /**
   * v3, async jobs: the tenant's rpm/tpm budgets are charged when a worker takes the job, not at admission, so a batch
   * of async work never reserves budget ahead of the tenant's synchronous requests; over budget, the job waits delayed.
   */
  chargeAtRun: z.literal(true).optional(),
  /**
   * `responses` jobs only (with the `responses` endpoint, so only workers that know both ever see it): the id a
   * bridged answer gets, its creation time, and the conversation rebuilt from `previous_response_id`.
   */
  responses: ResponsesJobContextSchema.optional(),
  /**
   * Response cache (src/cache/directive.ts): the request's cache key and settings, decided at the ingress. The worker
   * stores the answer under it, releases the single flight it holds, and may answer from it when every deployment fails.
   */
  cache: CacheDirectiveSchema.optional(),
  /**
   * Batch lines only (src/batches; always with `replyTo: null` and `chargeAtRun`): the batch, the line's number in its
   * input file and its custom_id. The worker records the answer into the batch (src/batches/batch-lines.ts), not into a
   * job record. A worker that predates the field refuses such a job as malformed: deploy workers before the drivers
   * (which run in the workers too) start batches.
   */
  batch: z.strictObject({ id: z.string().min(1), line: z.number().int().positive(), customId: z.string().min(1) }).optional(),
});

export type CompletionJob = z.infer<typeof CompletionJobSchema>;

/** What a completion job returns (stored by BullMQ as the job's return value, read back on reconciliation; see JobResultSchema). */
export const CompletionResultSchema = z.discriminatedUnion('kind', [
  /** A JSON answer: the upstream's body as text, relayed without a parse/serialise round trip. */
  z.strictObject({
    kind: z.literal('body'),
    status: z.number().int(),
    body: z.string(),
    /** Response headers for the client (x-spillway-deployment, x-spillway-attempts, x-spillway-cache). */
    headers: z.record(z.string(), z.string()).optional(),
  }),
  /** A streamed answer: the chunks went over pub/sub, only their count and the usage are kept. */
  z.strictObject({ kind: z.literal('stream'), chunks: z.number().int(), usage: z.unknown().optional() }),
  z.strictObject({
    kind: z.literal('error'),
    status: z.number().int(),
    headers: z.record(z.string(), z.string()),
    error: z.strictObject({ message: z.string(), type: z.string(), param: z.string().nullable(), code: z.string().nullable() }),
  }),
]);

/** What a worker produces for a job and a waiting request receives: never the stored form below. */
export type CompletionResult = z.infer<typeof CompletionResultSchema>;

/**
 * A JSON answer too large for pub/sub (Redis closes a subscriber past its output buffer limit, and every answer on
 * that connection dies with it): the body is stored under `key` with a short TTL, and only this pointer travels in
 * the `done` message and stays as the job's return value. The ingress reads the key and hands its request a `body`.
 */
export const StoredResultSchema = z.strictObject({
  kind: z.literal('stored'),
  status: z.number().int(),
  key: z.string().min(1),
  /** Size of the stored body in bytes (for logs). */
  bytes: z.number().int().nonnegative(),
});

export type StoredResult = z.infer<typeof StoredResultSchema>;

/** A completion job's return value, as BullMQ stores it: a result, or the pointer to a stored body. */
export const JobResultSchema = z.discriminatedUnion('kind', [...CompletionResultSchema.options, StoredResultSchema]);

export type JobResult = z.infer<typeof JobResultSchema>;
