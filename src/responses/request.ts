// The bridge's request side: a Responses API body (instructions, input items, the conversation before it, tools,
// tool_choice, text.format) as a chat completions body. Pure; refuses what chat cannot express instead of dropping it.
import type { ResponseItem } from './context.ts';

type Json = Record<string, unknown>;

/** A request the bridge cannot carry to a chat upstream: a 400 naming the parameter. */
export interface BridgeRefusal {
  refused: true;
  message: string;
  param: string;
}

export const isRefusal = (value: unknown): value is BridgeRefusal => typeof value === 'object' && value !== null && (value as BridgeRefusal).refused === true;

const refuse = (message: string, param: string): BridgeRefusal => ({ refused: true, message, param });

/** Fields that mean the same in both APIs and travel as they are. */
const SAME_FIELDS = ['temperature', 'top_p', 'user', 'safety_identifier', 'prompt_cache_key', 'service_tier', 'top_logprobs'] as const;

/**
 * The chat body for a Responses request. `history` is the conversation before it (rebuilt from previous_response_id),
 * oldest first. Instructions are not carried over from earlier turns (OpenAI's rule): only this request's.
 */
export function toChatRequest(body: Json, history: readonly ResponseItem[] = []): Json | BridgeRefusal {
  const messages: Json[] = [];
  if (typeof body.instructions === 'string' && body.instructions !== '') messages.push({ role: 'system', content: body.instructions });
  const earlier = appendItems(messages, history, 'previous_response_id');
  if (isRefusal(earlier)) return earlier;
  const input = typeof body.input === 'string' ? [{ role: 'user', content: body.input }] : Array.isArray(body.input) ? (body.input as ResponseItem[]) : [];
  const current = appendItems(messages, input, 'input');
  if (isRefusal(current)) return current;

  const chat: Json = { model: body.model, messages };
  for (const field of SAME_FIELDS) if (body[field] !== undefined && body[field] !== null) chat[field] = body[field];
  if (typeof body.max_output_tokens === 'number') chat.max_completion_tokens = body.max_output_tokens;
  const reasoning = record(body.reasoning);
  if (typeof reasoning.effort === 'string') chat.reasoning_effort = reasoning.effort;

  const tools = toChatTools(body.tools);
  if (isRefusal(tools)) return tools;
  if (tools.length > 0) {
    chat.tools = tools;
    if (typeof body.parallel_tool_calls === 'boolean') chat.parallel_tool_calls = body.parallel_tool_calls;
  }
  if (body.tool_choice !== undefined && body.tool_choice !== null) {
    const choice = toChatToolChoice(body.tool_choice);
    if (isRefusal(choice)) return choice;
    chat.tool_choice = choice;
  }
  const text = record(body.text);
  const format = toResponseFormat(text.format);
  if (isRefusal(format)) return format;
  if (format !== undefined) chat.response_format = format;
  if (typeof text.verbosity === 'string') chat.verbosity = text.verbosity;
  if (body.stream === true) {
    chat.stream = true;
    // The Response's usage comes from the last chunk: always ask for it.
    chat.stream_options = { include_usage: true };
  }
  return chat;
}

/** Appends the chat messages for `items`; a function_call joins the assistant message right before it (parallel calls). */
function appendItems(messages: Json[], items: readonly ResponseItem[], param: string): BridgeRefusal | undefined {
  for (const [i, item] of items.entries()) {
    const type = item.type ?? 'message';
    const at = `${param}[${i}]`;
    switch (type) {
      case 'message': {
        const message = toChatMessage(item, at);
        if (isRefusal(message)) return message;
        messages.push(message);
        break;
      }
      case 'function_call': {
        const call = { id: item.call_id, type: 'function', function: { name: item.name, arguments: item.arguments } };
        const last = messages.at(-1);
        if (last?.role === 'assistant' && last.tool_calls !== undefined) (last.tool_calls as Json[]).push(call);
        else if (last?.role === 'assistant' && last.tool_calls === undefined && !last.refusal) last.tool_calls = [call];
        else messages.push({ role: 'assistant', content: null, tool_calls: [call] });
        break;
      }
      case 'function_call_output':
        messages.push({ role: 'tool', tool_call_id: item.call_id, content: typeof item.output === 'string' ? item.output : joinText(item.output) });
        break;
      case 'reasoning':
        // Chat has no place for a reasoning item; the model's visible answer carries the turn.
        break;
      case 'item_reference':
        return refuse(`Item reference '${String(item.id)}' was not found among this tenant's stored responses.`, `${at}.id`);
      default:
        return refuse(`Input items of type '${String(type)}' cannot be carried to this model's upstream (it speaks chat completions).`, `${at}.type`);
    }
  }
  return undefined;
}

function toChatMessage(item: ResponseItem, at: string): Json | BridgeRefusal {
  const role = item.role === 'developer' ? 'system' : item.role;
  if (typeof item.content === 'string') return { role, content: item.content };
  if (!Array.isArray(item.content)) return refuse('A message needs a string or a list of content parts.', `${at}.content`);
  if (role !== 'user') {
    // System and assistant messages are text in chat: output_text, input_text and refusal parts join into one.
    const refusal = item.content.map(record).find((p) => p.type === 'refusal');
    if (role === 'assistant' && refusal !== undefined) return { role, content: null, refusal: String(refusal.refusal ?? '') };
    return { role, content: joinText(item.content) };
  }
  const parts: Json[] = [];
  for (const [j, raw] of item.content.entries()) {
    const part = record(raw);
    if (part.type === 'input_text' || part.type === 'output_text') parts.push({ type: 'text', text: part.text });
    else if (part.type === 'input_image' && typeof part.image_url === 'string') {
      parts.push({ type: 'image_url', image_url: { url: part.image_url, ...(typeof part.detail === 'string' ? { detail: part.detail } : {}) } });
    } else if (part.type === 'input_file' && (typeof part.file_data === 'string' || typeof part.file_id === 'string')) {
      const file: Json = {};
      for (const key of ['file_data', 'file_id', 'filename'] as const) if (typeof part[key] === 'string') file[key] = part[key];
      parts.push({ type: 'file', file });
    } else return refuse(`Content parts of type '${String(part.type)}' cannot be carried to this model's upstream.`, `${at}.content[${j}]`);
  }
  return { role, content: parts };
}

function toChatTools(tools: unknown): Json[] | BridgeRefusal {
  if (!Array.isArray(tools)) return [];
  const out: Json[] = [];
  for (const [i, raw] of tools.entries()) {
    const tool = record(raw);
    if (tool.type !== 'function') return refuse(`Tools of type '${String(tool.type)}' are not available on this model's upstream: only function tools.`, `tools[${i}].type`);
    const fn: Json = { name: tool.name };
    if (typeof tool.description === 'string') fn.description = tool.description;
    if (tool.parameters !== undefined && tool.parameters !== null) fn.parameters = tool.parameters;
    if (typeof tool.strict === 'boolean') fn.strict = tool.strict;
    out.push({ type: 'function', function: fn });
  }
  return out;
}

function toChatToolChoice(choice: unknown): unknown {
  if (typeof choice === 'string') return choice;
  const c = record(choice);
  if (c.type === 'function' && typeof c.name === 'string') return { type: 'function', function: { name: c.name } };
  if (c.type === 'allowed_tools' && Array.isArray(c.tools)) {
    const names = c.tools.map(record).filter((t) => t.type === 'function' && typeof t.name === 'string');
    if (names.length !== c.tools.length) return refuse('allowed_tools may only name function tools on this model.', 'tool_choice.tools');
    return { type: 'allowed_tools', allowed_tools: { mode: c.mode ?? 'auto', tools: names.map((t) => ({ type: 'function', function: { name: t.name } })) } };
  }
  return refuse(`tool_choice of type '${String(c.type)}' is not available on this model's upstream.`, 'tool_choice.type');
}

function toResponseFormat(format: unknown): Json | undefined | BridgeRefusal {
  if (format === undefined || format === null) return undefined;
  const f = record(format);
  if (f.type === 'text') return undefined;
  if (f.type === 'json_object') return { type: 'json_object' };
  if (f.type === 'json_schema') {
    const schema: Json = { name: f.name, schema: f.schema };
    if (typeof f.description === 'string') schema.description = f.description;
    if (typeof f.strict === 'boolean') schema.strict = f.strict;
    return { type: 'json_schema', json_schema: schema };
  }
  return refuse(`text.format of type '${String(f.type)}' is not available on this model's upstream.`, 'text.format.type');
}

/** The text of content parts (input_text, output_text, text), joined. */
export function joinText(parts: unknown): string {
  if (typeof parts === 'string') return parts;
  if (!Array.isArray(parts)) return '';
  return parts.map(record).map((p) => (typeof p.text === 'string' ? p.text : '')).join('');
}

export function record(value: unknown): Json {
  return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Json) : {};
}
