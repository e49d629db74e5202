// Request bodies of the OpenAI endpoints Spillway serves: only the fields the broker relies on are checked,
// every other field passes through to the upstream untouched (loose objects). Never rewrites a client's body.
import { z } from 'zod';
import { invalidRequest, type SpillwayError } from '../errors.ts';
import type { Endpoint } from '../config/schema.ts';
import { CreateResponseRequestSchema } from './responses-schemas.ts';

const model = z.string().min(1, 'must not be empty');
const stream = z.boolean().nullish();
const streamOptions = z.looseObject({ include_usage: z.boolean().nullish() }).nullish();
const maxTokens = z.number().int().positive().nullish();
const tokenArray = z.array(z.number().int().nonnegative());

const message = z.looseObject({
  role: z.string().min(1),
});

export const ChatCompletionRequestSchema = z.looseObject({
  model,
  messages: z.array(message).min(1, 'must contain at least one message'),
  stream,
  stream_options: streamOptions,
  max_tokens: maxTokens,
  max_completion_tokens: maxTokens,
  n: z.number().int().min(1).max(128).nullish(),
});

export const CompletionRequestSchema = z.looseObject({
  model,
  prompt: z.union([z.string(), z.array(z.string()), tokenArray, z.array(tokenArray)]),
  stream,
  stream_options: streamOptions,
  max_tokens: maxTokens,
  n: z.number().int().min(1).max(128).nullish(),
});

export const EmbeddingRequestSchema = z.looseObject({
  model,
  input: z.union([
    z.string(),
    z.array(z.string()).min(1, 'must not be empty'),
    tokenArray.min(1, 'must not be empty'),
    z.array(tokenArray).min(1, 'must not be empty'),
  ]),
  encoding_format: z.enum(['float', 'base64']).optional(),
  dimensions: z.number().int().positive().optional(),
});

const schemas = {
  'chat.completions': ChatCompletionRequestSchema,
  completions: CompletionRequestSchema,
  embeddings: EmbeddingRequestSchema,
  responses: CreateResponseRequestSchema,
} as const satisfies Record<Endpoint, z.ZodType>;

/** What the broker needs to know about a validated body; the body itself travels as the client sent it. */
export interface ParsedRequest {
  body: Record<string, unknown>;
  model: string;
  stream: boolean;
}

export function parseRequestBody(endpoint: Endpoint, body: unknown): ParsedRequest {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw invalidRequest('The request body must be a JSON object.');
  }
  const result = schemas[endpoint].safeParse(body);
  if (!result.success) throw toValidationError(result.error.issues, body);
  const parsed = result.data as { model: string; stream?: boolean | null };
  // Validation only: forward the client's own object so unknown fields and their order survive untouched.
  return { body: body as Record<string, unknown>, model: parsed.model, stream: parsed.stream === true };
}

function toValidationError(issues: readonly z.core.$ZodIssue[], body: object): SpillwayError {
  const issue = issues[0];
  if (issue === undefined) return invalidRequest('Invalid request body.');
  const param = issue.path.map((p, i) => (typeof p === 'number' ? `[${p}]` : `${i === 0 ? '' : '.'}${String(p)}`)).join('');
  // zod does not keep the input on an issue: look in the client's body to tell "missing" from "wrong".
  if (valueAt(body, issue.path) === undefined) {
    return invalidRequest(`Missing required parameter: '${param}'.`, param, 'missing_required_parameter');
  }
  return invalidRequest(`Invalid value for '${param}': ${issue.message}`, param || null, 'invalid_value');
}

function valueAt(value: unknown, path: readonly PropertyKey[]): unknown {
  let current = value;
  for (const key of path) {
    if (current === null || typeof current !== 'object') return undefined;
    current = (current as Record<PropertyKey, unknown>)[key];
  }
  return current;
}
