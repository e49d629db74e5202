// The reply protocol: messages a worker publishes on the waiting ingress's channel, `head` / `chunk`… / `done` | `error`.
// Shared by both sides; a message that does not parse is dropped by the reader, never trusted by its TypeScript type.
import { z } from 'zod';
import { CompletionResultSchema, StoredResultSchema, type StoredResult } from './jobs.ts';

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
  /**
   * The answer is complete: the JSON body, or for a stream the number of chunks sent (to detect a lost message), or
   * the pointer to a body too large for pub/sub (resolved by the reply bus: a sink never sees it).
   */
  z.strictObject({
    k: z.literal('done'),
    ...base,
    result: z.discriminatedUnion('kind', [CompletionResultSchema.options[0], CompletionResultSchema.options[1], StoredResultSchema]),
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

/** A message as it travels over pub/sub: a `done` may point to a stored body. */
export type WireReplyMessage = z.infer<typeof ReplyMessageSchema>;
type WireDoneMessage = Extract<WireReplyMessage, { k: 'done' }>;
export type HeadMessage = Extract<WireReplyMessage, { k: 'head' }>;
export type ChunkMessage = Extract<WireReplyMessage, { k: 'chunk' }>;
export type ErrorMessage = Extract<WireReplyMessage, { k: 'error' }>;
/** `done` as a waiting request receives it: the answer itself. */
export type DoneMessage = Omit<WireDoneMessage, 'result'> & { result: Exclude<WireDoneMessage['result'], StoredResult> };
/** `done` whose body waits under a key: only the reply bus handles it. */
export type StoredDoneMessage = Omit<WireDoneMessage, 'result'> & { result: StoredResult };
/** A message as a ReplySink receives it: never the stored form. */
export type ReplyMessage = HeadMessage | ChunkMessage | DoneMessage | ErrorMessage;

export function isStoredDone(message: WireReplyMessage): message is StoredDoneMessage {
  return message.k === 'done' && message.result.kind === 'stored';
}

/**
 * Chunk messages are the hot path (one per stream event or batch of events), so they have a compact form:
 * a JSON header line, then the SSE payloads one per line, as they came from the upstream. It spares escaping
 * every payload into JSON and parsing it back. A payload with a newline in it (multi-line SSE data) makes
 * the message fall back to plain JSON; JSON.stringify never emits a raw newline, so the two cannot be confused.
 */
export function encodeReply(message: WireReplyMessage): string {
  if (message.k === 'chunk' && message.data.every((d) => !d.includes('\n'))) {
    return `${JSON.stringify({ k: 'chunk', j: message.j, a: message.a, seq: message.seq })}\n${message.data.join('\n')}`;
  }
  return JSON.stringify(message);
}

const ChunkHeaderSchema = ReplyMessageSchema.options[1].omit({ data: true });

/** Returns the message, or undefined for anything that is not a well-formed reply. */
export function decodeReply(raw: string): WireReplyMessage | undefined {
  const newline = raw.indexOf('\n');
  let value: unknown;
  try {
    value = JSON.parse(newline === -1 ? raw : raw.slice(0, newline));
  } catch {
    return undefined;
  }
  if (newline !== -1) {
    const header = ChunkHeaderSchema.safeParse(value);
    return header.success ? { ...header.data, data: raw.slice(newline + 1).split('\n') } : undefined;
  }
  const result = ReplyMessageSchema.safeParse(value);
  return result.success ? result.data : undefined;
}
