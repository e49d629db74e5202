// The reply protocol: messages a worker publishes on the waiting ingress's channel, `head` / `chunk`… / `done` | `error`.
// Shared by both sides; a message that does not parse is dropped by the reader, never trusted by its TypeScript type.
import { z } from 'zod';
import { CompletionResultSchema } from './jobs.ts';

const base = {
  /** Job id. */
  j: z.string().min(1),
  /** The job's attempt (BullMQ attemptsStarted): a stalled job re-run by another worker has a higher one. */
  a: z.number().int().nonnegative(),
};

export const OpenAIErrorObjectSchema = z.strictObject({
  message: z.string(),
  type: z.string(),
  param: z.string().nullable(),
  code: z.string().nullable(),
});

export const ReplyMessageSchema = z.discriminatedUnion('k', [
  /** A stream starts: status and the headers to relay. Sent before the first chunk. */
  z.strictObject({ k: z.literal('head'), ...base, status: z.number().int(), headers: z.record(z.string(), z.string()) }),
  /** One or more SSE `data:` payloads, in order; `seq` numbers the first of them (0-based, contiguous across messages). */
  z.strictObject({ k: z.literal('chunk'), ...base, seq: z.number().int().nonnegative(), data: z.array(z.string()).min(1) }),
  /** The answer is complete: the JSON body, or for a stream the number of chunks sent (to detect a lost message). */
  z.strictObject({
    k: z.literal('done'),
    ...base,
    result: CompletionResultSchema.options[0].or(CompletionResultSchema.options[1]),
  }),
  /** The call failed: status, headers (Retry-After) and the OpenAI error object. */
  z.strictObject({
    k: z.literal('error'),
    ...base,
    status: z.number().int(),
    headers: z.record(z.string(), z.string()),
    error: OpenAIErrorObjectSchema,
  }),
]);

export type ReplyMessage = z.infer<typeof ReplyMessageSchema>;
export type HeadMessage = Extract<ReplyMessage, { k: 'head' }>;
export type ChunkMessage = Extract<ReplyMessage, { k: 'chunk' }>;
export type DoneMessage = Extract<ReplyMessage, { k: 'done' }>;
export type ErrorMessage = Extract<ReplyMessage, { k: 'error' }>;

export function encodeReply(message: ReplyMessage): string {
  return JSON.stringify(message);
}

/** Returns the message, or undefined for anything that is not a well-formed reply. */
export function decodeReply(raw: string): ReplyMessage | undefined {
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch {
    return undefined;
  }
  const result = ReplyMessageSchema.safeParse(value);
  return result.success ? result.data : undefined;
}
