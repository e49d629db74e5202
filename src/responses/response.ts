// The bridge's answer side for JSON: a chat completion as a Response object (output items, status, usage), with the
// request's settings echoed as OpenAI echoes them. Pure; never invents content the upstream did not produce.
import { outputItemId, type ResponseItem } from './context.ts';
import { record } from './request.ts';

type Json = Record<string, unknown>;

export type ResponseStatus = 'completed' | 'incomplete' | 'failed' | 'in_progress' | 'queued' | 'cancelled';

export interface ResponseShellOptions {
  id: string;
  /** Epoch seconds. */
  createdAt: number;
  /** The model the answer names (the upstream's), else the one asked for. */
  model: string;
  status: ResponseStatus;
}

/**
 * A Response with every field OpenAI's carries, the request's settings echoed (instructions, tools, tool_choice,
 * text, temperature…); output empty and usage null until the answer fills them.
 */
export function responseShell(body: Json, options: ResponseShellOptions): Json {
  const reasoning = record(body.reasoning);
  return {
    id: options.id,
    object: 'response',
    created_at: options.createdAt,
    status: options.status,
    background: body.background === true,
    completed_at: null,
    error: null,
    incomplete_details: null,
    instructions: typeof body.instructions === 'string' ? body.instructions : null,
    max_output_tokens: typeof body.max_output_tokens === 'number' ? body.max_output_tokens : null,
    max_tool_calls: typeof body.max_tool_calls === 'number' ? body.max_tool_calls : null,
    model: options.model,
    output: [],
    parallel_tool_calls: body.parallel_tool_calls !== false,
    previous_response_id: typeof body.previous_response_id === 'string' ? body.previous_response_id : null,
    reasoning: { effort: typeof reasoning.effort === 'string' ? reasoning.effort : null, summary: null },
    service_tier: typeof body.service_tier === 'string' ? body.service_tier : 'default',
    store: body.store !== false,
    temperature: typeof body.temperature === 'number' ? body.temperature : 1,
    text: { format: { type: 'text' }, ...record(body.text) },
    tool_choice: body.tool_choice ?? 'auto',
    tools: Array.isArray(body.tools) ? body.tools.map(echoTool) : [],
    top_p: typeof body.top_p === 'number' ? body.top_p : 1,
    truncation: body.truncation === 'auto' ? 'auto' : 'disabled',
    // No `usage` until it is known: the description types it as an object, never null.
    // The description types `user` as a string (deprecated): present only when the client sent one.
    ...(typeof body.user === 'string' ? { user: body.user } : {}),
    metadata: body.metadata !== null && typeof body.metadata === 'object' ? body.metadata : {},
  };
}

/** A function tool as a Response echoes it: parameters and strict always present (null when the client set none). */
function echoTool(tool: unknown): unknown {
  const t = record(tool);
  if (t.type !== 'function') return tool;
  return { ...t, description: t.description ?? null, parameters: t.parameters ?? null, strict: t.strict ?? null };
}

/** ResponseUsage from a chat completion's usage (prompt/completion tokens and their details). */
export function usageFromChat(usage: unknown): Json | null {
  const u = record(usage);
  if (typeof u.prompt_tokens !== 'number' || typeof u.completion_tokens !== 'number') return null;
  const cached = record(u.prompt_tokens_details).cached_tokens;
  const reasoning = record(u.completion_tokens_details).reasoning_tokens;
  return {
    input_tokens: u.prompt_tokens,
    input_tokens_details: { cached_tokens: typeof cached === 'number' ? cached : 0, cache_write_tokens: 0 },
    output_tokens: u.completion_tokens,
    output_tokens_details: { reasoning_tokens: typeof reasoning === 'number' ? reasoning : 0 },
    total_tokens: typeof u.total_tokens === 'number' ? u.total_tokens : u.prompt_tokens + u.completion_tokens,
  };
}

/** `{ usage }` when known, else nothing (a Response's usage is an object or absent, never null). */
export function withUsage(usage: Json | null): { usage?: Json } {
  return usage === null ? {} : { usage };
}

/** Why a chat answer stopped, as a Response's status and incomplete_details. */
export function outcomeOf(finishReason: unknown): { status: 'completed' | 'incomplete'; incomplete: Json | null } {
  if (finishReason === 'length') return { status: 'incomplete', incomplete: { reason: 'max_output_tokens' } };
  if (finishReason === 'content_filter') return { status: 'incomplete', incomplete: { reason: 'content_filter' } };
  return { status: 'completed', incomplete: null };
}

export function messageItem(id: string, status: string, content: Json[]): ResponseItem {
  return { id, type: 'message', status, role: 'assistant', content };
}

export function textPart(text: string): Json {
  return { type: 'output_text', text, annotations: [], logprobs: [] };
}

export function functionCallItem(id: string, status: string, callId: string, name: string, args: string): ResponseItem {
  return { id, type: 'function_call', status, call_id: callId, name, arguments: args };
}

/** A whole chat completion (its first choice) as a finished Response. */
export function responseFromChatCompletion(chat: Json, body: Json, id: string, createdAt: number, nowSeconds: number): Json {
  const choice = record(Array.isArray(chat.choices) ? chat.choices[0] : undefined);
  const message = record(choice.message);
  const { status, incomplete } = outcomeOf(choice.finish_reason);
  const output: ResponseItem[] = [];
  const content: Json[] = [];
  if (typeof message.content === 'string' && message.content !== '') content.push(textPart(message.content));
  if (typeof message.refusal === 'string' && message.refusal !== '') content.push({ type: 'refusal', refusal: message.refusal });
  if (content.length > 0) output.push(messageItem(outputItemId('msg', id, 0), status, content));
  for (const [i, raw] of (Array.isArray(message.tool_calls) ? message.tool_calls : []).entries()) {
    const call = record(raw);
    const fn = record(call.function);
    output.push(functionCallItem(outputItemId('fc', id, i + 1), 'completed', String(call.id ?? ''), String(fn.name ?? ''), String(fn.arguments ?? '')));
  }
  const model = typeof chat.model === 'string' && chat.model !== '' ? chat.model : String(body.model);
  return {
    ...responseShell(body, { id, createdAt, model, status }),
    completed_at: status === 'completed' ? nowSeconds : null,
    incomplete_details: incomplete,
    output,
    ...withUsage(usageFromChat(chat.usage)),
  };
}
