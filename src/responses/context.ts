// What a `responses` job carries besides the client's body: the id a bridged answer gets, its creation time, and the
// conversation the ingress rebuilt from `previous_response_id`. Pure data and lookups: no I/O.
import { z } from 'zod';

/** An item of a conversation (input or output), as the Responses API shapes it. */
export type ResponseItem = Record<string, unknown>;

export const ResponsesJobContextSchema = z.strictObject({
  /** The response's id when the bridge builds it (a native upstream names its own). */
  id: z.string().min(1),
  /** Epoch seconds: the response's `created_at`. */
  createdAt: z.number().int().nonnegative(),
  /** The conversation so far, when the request named a `previous_response_id` the broker holds. */
  previous: z
    .strictObject({
      id: z.string().min(1),
      /** Whether the previous response came from a native upstream (which holds it under that id). */
      native: z.boolean(),
      /** Every earlier turn's input and output items, oldest first. */
      items: z.array(z.record(z.string(), z.unknown())),
    })
    .optional(),
});

export type ResponsesJobContext = z.infer<typeof ResponsesJobContextSchema>;

/**
 * The context rides on the job body handed to the adapter under a symbol: invisible to JSON.stringify, so it can
 * never reach an upstream, and present wherever the adapter sees the body (request, stream, JSON answer).
 */
const CONTEXT = Symbol('spillway.responses.context');

export function withResponsesContext(body: Record<string, unknown>, context: ResponsesJobContext): Record<string, unknown> {
  return Object.defineProperty({ ...body }, CONTEXT, { value: context, enumerable: false });
}

export function responsesContextOf(body: Record<string, unknown>): ResponsesJobContext | undefined {
  return (body as { [CONTEXT]?: ResponsesJobContext })[CONTEXT];
}

/** `resp_` and 32 hex digits from the job id (a UUID): the ingress knows the id before any worker runs. */
export function responseIdFor(jobId: string): string {
  return `resp_${jobId.replace(/-/g, '')}`;
}

/** Ids of a bridged response's output items, derived from the response's: `msg_<hex><index>`, `fc_<hex><index>`. */
export function outputItemId(kind: 'msg' | 'fc', responseId: string, index: number): string {
  return `${kind}_${responseId.replace(/^resp_/, '')}${index.toString(16).padStart(2, '0')}`;
}
