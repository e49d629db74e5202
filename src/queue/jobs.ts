// The contract between ingress and workers: the versioned completion job, parsed with the same schema on both sides.
// Job data is stored in clear text in Redis: it must never carry a secret (workers resolve provider keys themselves).
import { z } from 'zod';
import { EndpointSchema } from '../config/schema.ts';

export const JOB_SCHEMA_VERSION = 1;

export const CompletionJobSchema = z.strictObject({
  v: z.literal(JOB_SCHEMA_VERSION),
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
});

export type CompletionJob = z.infer<typeof CompletionJobSchema>;

/** What a completion job returns (stored by BullMQ as the job's return value, read back on reconciliation). */
export const CompletionResultSchema = z.discriminatedUnion('kind', [
  /** A JSON answer: the upstream's body as text, relayed without a parse/serialise round trip. */
  z.strictObject({ kind: z.literal('body'), status: z.number().int(), body: z.string() }),
  /** A streamed answer: the chunks went over pub/sub, only their count and the usage are kept. */
  z.strictObject({ kind: z.literal('stream'), chunks: z.number().int(), usage: z.unknown().optional() }),
  z.strictObject({
    kind: z.literal('error'),
    status: z.number().int(),
    headers: z.record(z.string(), z.string()),
    error: z.strictObject({ message: z.string(), type: z.string(), param: z.string().nullable(), code: z.string().nullable() }),
  }),
]);

export type CompletionResult = z.infer<typeof CompletionResultSchema>;
