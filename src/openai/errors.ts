// Turns anything thrown into OpenAI's `{"error":{message,type,param,code}}` and a status.
// Unknown errors become a generic 500: their message (which may hold internals) never reaches a client.
import { SpillwayError, internalError } from '../errors.ts';

export interface OpenAIErrorBody {
  error: { message: string; type: string; param: string | null; code: string | null };
}

export interface ErrorReply {
  statusCode: number;
  headers: Record<string, string>;
  body: OpenAIErrorBody;
}

export function toOpenAIError(err: unknown): ErrorReply {
  const e = err instanceof SpillwayError ? err : internalError();
  return {
    statusCode: e.statusCode,
    headers: e.headers,
    body: { error: { message: e.message, type: e.type, param: e.param, code: e.code } },
  };
}

/** Rebuilds a SpillwayError from a reply that crossed Redis (worker → ingress). */
export function fromErrorReply(reply: ErrorReply): SpillwayError {
  const { message, type, param, code } = reply.body.error;
  return new SpillwayError(message, {
    statusCode: reply.statusCode,
    type: type as SpillwayError['type'],
    param,
    code,
    headers: reply.headers,
  });
}
