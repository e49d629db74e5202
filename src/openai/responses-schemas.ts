// Request validation of POST /v1/responses: only what the broker relies on (model, input and its items, tools,
// tool_choice, text.format, the state and mode flags) is checked; every other field passes through untouched.
import { z } from 'zod';
import { invalidRequest, type SpillwayError } from '../errors.ts';

const nullableBool = z.boolean().nullish();
const text = z.string();

/** Items of `input`. Each type carries the fields a bridge must read; anything else about an item passes. */
const MESSAGE_ROLES = ['user', 'assistant', 'system', 'developer'] as const;
const contentPart = z.looseObject({ type: z.string().min(1) });
const messageItem = z.looseObject({
  type: z.literal('message').optional(),
  role: z.enum(MESSAGE_ROLES),
  content: z.union([text, z.array(contentPart)]),
});
const functionCallItem = z.looseObject({ type: z.literal('function_call'), call_id: text.min(1), name: text.min(1), arguments: text });
const functionOutputItem = z.looseObject({ type: z.literal('function_call_output'), call_id: text.min(1), output: z.union([text, z.array(contentPart)]) });
const itemReference = z.looseObject({ type: z.literal('item_reference'), id: text.min(1) });

/** Which schema an item is checked against: by `type`, a message when it has none (EasyInputMessage). */
function itemSchema(item: unknown): z.ZodType | undefined {
  const type = item !== null && typeof item === 'object' ? (item as { type?: unknown }).type : undefined;
  if (type === undefined || type === 'message') return messageItem;
  if (type === 'function_call') return functionCallItem;
  if (type === 'function_call_output') return functionOutputItem;
  if (type === 'item_reference') return itemReference;
  return undefined; // other item types (reasoning, tool calls of built-in tools) are the upstream's to judge
}

const inputItems = z.array(z.looseObject({ type: z.string().optional() })).superRefine((items, ctx) => {
  items.forEach((item, i) => {
    const result = itemSchema(item)?.safeParse(item);
    if (result === undefined || result.success) return;
    for (const issue of result.error.issues) ctx.addIssue({ code: 'custom', path: [i, ...issue.path], message: issue.message });
  });
});

const functionTool = z.looseObject({ type: z.literal('function'), name: text.min(1), parameters: z.record(z.string(), z.unknown()).nullish() });
const tools = z.array(z.looseObject({ type: text.min(1) })).superRefine((list, ctx) => {
  list.forEach((tool, i) => {
    if (tool.type !== 'function') return;
    const result = functionTool.safeParse(tool);
    if (!result.success) for (const issue of result.error.issues) ctx.addIssue({ code: 'custom', path: [i, ...issue.path], message: issue.message });
  });
});

const toolChoice = z.union([z.enum(['none', 'auto', 'required']), z.looseObject({ type: text.min(1) })]);

const textFormat = z.discriminatedUnion('type', [
  z.looseObject({ type: z.literal('text') }),
  z.looseObject({ type: z.literal('json_object') }),
  z.looseObject({ type: z.literal('json_schema'), name: text.min(1), schema: z.record(z.string(), z.unknown()) }),
]);

export const CreateResponseRequestSchema = z.looseObject({
  model: text.min(1, 'must not be empty'),
  input: z.union([text, inputItems]),
  instructions: text.nullish(),
  stream: nullableBool,
  store: nullableBool,
  background: nullableBool,
  previous_response_id: text.min(1).nullish(),
  conversation: z.union([text, z.looseObject({ id: text })]).nullish(),
  tools: tools.nullish(),
  tool_choice: toolChoice.nullish(),
  text: z.looseObject({ format: textFormat.optional() }).nullish(),
  // OpenAI's own floor: fewer than 16 is refused there, so it is refused here before a job is spent on it.
  max_output_tokens: z.number().int().min(16).nullish(),
  parallel_tool_calls: nullableBool,
});

/** What the broker reads of a validated body; `body` is the client's own object, untouched. */
export interface ParsedResponsesRequest {
  body: Record<string, unknown>;
  model: string;
  stream: boolean;
  /** `store` defaults to true, as OpenAI's. */
  store: boolean;
  background: boolean;
  previousResponseId: string | undefined;
}

export function parseResponsesRequest(body: unknown): ParsedResponsesRequest {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw invalidRequest('The request body must be a JSON object.');
  }
  const result = CreateResponseRequestSchema.safeParse(body);
  if (!result.success) throw toResponsesValidationError(result.error.issues, body);
  const data = result.data;
  return {
    body: body as Record<string, unknown>,
    model: data.model,
    stream: data.stream === true,
    store: data.store !== false,
    background: data.background === true,
    previousResponseId: data.previous_response_id ?? undefined,
  };
}

/** `input[2].content`, `tools[0].name`: OpenAI's way of naming a parameter. */
export function paramName(path: readonly PropertyKey[]): string {
  return path.map((p, i) => (typeof p === 'number' ? `[${p}]` : `${i === 0 ? '' : '.'}${String(p)}`)).join('');
}

function toResponsesValidationError(issues: readonly z.core.$ZodIssue[], body: object): SpillwayError {
  // A union reports its branches' issues nested: the deepest path says the most about what is wrong.
  const issue = deepest(issues);
  if (issue === undefined) return invalidRequest('Invalid request body.');
  const param = paramName(issue.path);
  if (valueAt(body, issue.path) === undefined) {
    return invalidRequest(`Missing required parameter: '${param}'.`, param, 'missing_required_parameter');
  }
  return invalidRequest(`Invalid value for '${param}': ${issue.message}`, param || null, 'invalid_value');
}

function deepest(issues: readonly z.core.$ZodIssue[]): z.core.$ZodIssue | undefined {
  let best: z.core.$ZodIssue | undefined;
  const visit = (list: readonly z.core.$ZodIssue[], prefix: readonly PropertyKey[]) => {
    for (const issue of list) {
      const path = [...prefix, ...issue.path];
      if (issue.code === 'invalid_union' && issue.errors.length > 0) {
        for (const branch of issue.errors) visit(branch, path);
        continue;
      }
      if (best === undefined || path.length > best.path.length) best = { ...issue, path } as z.core.$ZodIssue;
    }
  };
  visit(issues, []);
  return best;
}

function valueAt(value: unknown, path: readonly PropertyKey[]): unknown {
  let current = value;
  for (const key of path) {
    if (current === null || typeof current !== 'object') return undefined;
    current = (current as Record<PropertyKey, unknown>)[key];
  }
  return current;
}
