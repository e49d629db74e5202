// Builds a Messages API request (POST {baseUrl}/messages) from an OpenAI chat completion body: system prompt apart,
// user/assistant turns, tool calls as tool_use blocks, tool answers as tool_result blocks, max_tokens always set.
// Never sends a field the Messages API does not know (it refuses unknown fields); never logs or returns the key.
import type { Endpoint } from '../../../config/schema.ts';
import type { ProviderRuntime } from '../../dispatcher.ts';
import type { UpstreamRequest } from '../openai/request.ts';
import { clientFailure, type UpstreamFailure } from '../openai/errors.ts';

export const DEFAULT_ANTHROPIC_VERSION = '2023-06-01';
export const DEFAULT_MAX_TOKENS = 4096;

type Json = Record<string, unknown>;
type Block = Json;
interface Turn {
  role: 'user' | 'assistant';
  content: Block[];
}

/** A client body this provider cannot carry out as asked: a 400 naming the field, never a silent change of meaning. */
class Untranslatable extends Error {
  readonly param: string;
  constructor(message: string, param: string) {
    super(message);
    this.param = param;
  }
}

export function buildAnthropicRequest(
  provider: ProviderRuntime,
  endpoint: Endpoint,
  body: Record<string, unknown>,
  model: string,
  extraHeaders: Record<string, string>,
): UpstreamRequest | UpstreamFailure {
  if (endpoint !== 'chat.completions') {
    return clientFailure(`This model's provider (anthropic) does not serve ${endpoint}.`, 'model', `anthropic cannot serve ${endpoint}`);
  }
  let payload: Json;
  try {
    payload = messagesBody(body, model, provider.defaultMaxTokens);
  } catch (err) {
    if (!(err instanceof Untranslatable)) throw err;
    return clientFailure(err.message, err.param, `request not translatable for anthropic: ${err.message}`);
  }
  const headers: Record<string, string> = {
    ...extraHeaders,
    ...provider.headers,
    'content-type': 'application/json',
    accept: body.stream === true ? 'text/event-stream' : 'application/json',
    'anthropic-version': provider.anthropicVersion,
  };
  if (provider.apiKey !== undefined) headers['x-api-key'] = provider.apiKey;
  return { path: `${provider.basePath}/messages`, headers, body: JSON.stringify(payload) };
}

/** The Messages API body. Sampling fields it lacks (seed, penalties, logprobs, response_format) are not sent. */
export function messagesBody(body: Record<string, unknown>, model: string, defaultMaxTokens: number): Json {
  const n = body.n;
  if (typeof n === 'number' && n > 1) throw new Untranslatable('n greater than 1 is not supported by this model.', 'n');
  const { system, turns } = conversation(body.messages);
  const out: Json = { model, messages: turns, max_tokens: positive(body.max_completion_tokens) ?? positive(body.max_tokens) ?? defaultMaxTokens };
  if (system.length > 0) out.system = system.join('\n\n');
  if (typeof body.temperature === 'number') out.temperature = body.temperature;
  if (typeof body.top_p === 'number') out.top_p = body.top_p;
  if (typeof body.stop === 'string') out.stop_sequences = [body.stop];
  else if (Array.isArray(body.stop) && body.stop.length > 0) out.stop_sequences = body.stop;
  if (body.stream === true) out.stream = true;
  if (typeof body.user === 'string') out.metadata = { user_id: body.user };
  const tools = toolsOf(body.tools);
  if (tools !== undefined && tools.length > 0) out.tools = tools;
  const choice = toolChoiceOf(body.tool_choice, body.parallel_tool_calls);
  if (choice !== undefined && (tools?.length ?? 0) > 0) out.tool_choice = choice;
  return out;
}

/** System and developer messages go to `system`; tool answers become tool_result blocks of a user turn; turns of one role merge. */
function conversation(messages: unknown): { system: string[]; turns: Turn[] } {
  const system: string[] = [];
  const turns: Turn[] = [];
  const push = (role: Turn['role'], content: Block[]) => {
    if (content.length === 0) return;
    const last = turns.at(-1);
    // The Messages API wants user and assistant turns to alternate, and every tool_result of one assistant turn in
    // the single user turn that follows it: consecutive messages of one role become one turn.
    if (last?.role === role) last.content.push(...content);
    else turns.push({ role, content });
  };
  (Array.isArray(messages) ? messages : []).forEach((raw, i) => {
    const m = record(raw);
    const param = `messages[${i}]`;
    switch (m.role) {
      case 'system':
      case 'developer': {
        const text = textOf(m.content, `${param}.content`);
        if (text !== '') system.push(text);
        return;
      }
      case 'user':
        return push('user', userBlocks(m.content, `${param}.content`));
      case 'assistant':
        return push('assistant', assistantBlocks(m, param));
      case 'tool': {
        if (typeof m.tool_call_id !== 'string') throw new Untranslatable('A tool message needs a tool_call_id.', `${param}.tool_call_id`);
        return push('user', [{ type: 'tool_result', tool_use_id: m.tool_call_id, content: textOf(m.content, `${param}.content`) }]);
      }
      default:
        throw new Untranslatable(`Messages with role "${String(m.role)}" are not supported by this model.`, `${param}.role`);
    }
  });
  return { system, turns };
}

function userBlocks(content: unknown, param: string): Block[] {
  if (typeof content === 'string') return content === '' ? [] : [{ type: 'text', text: content }];
  if (!Array.isArray(content)) throw new Untranslatable('Message content must be a string or an array of parts.', param);
  return content.map((raw, j) => {
    const part = record(raw);
    if (part.type === 'text' && typeof part.text === 'string') return { type: 'text', text: part.text };
    if (part.type === 'image_url') return imageBlock(record(part.image_url).url, `${param}[${j}].image_url.url`);
    throw new Untranslatable(`Content parts of type "${String(part.type)}" are not supported by this model.`, `${param}[${j}].type`);
  });
}

/** A data: URL becomes a base64 image source, any other URL a url source. */
function imageBlock(url: unknown, param: string): Block {
  if (typeof url !== 'string') throw new Untranslatable('An image_url part needs a url.', param);
  const data = /^data:(image\/[a-z+.-]+);base64,(.*)$/s.exec(url);
  if (data !== null) return { type: 'image', source: { type: 'base64', media_type: data[1], data: data[2] } };
  return { type: 'image', source: { type: 'url', url } };
}

function assistantBlocks(m: Json, param: string): Block[] {
  const blocks: Block[] = [];
  const text = m.content === null || m.content === undefined ? '' : textOf(m.content, `${param}.content`);
  // The Messages API refuses empty text blocks: an assistant turn that only called tools has none.
  if (text !== '') blocks.push({ type: 'text', text });
  if (m.tool_calls !== undefined && m.tool_calls !== null) {
    if (!Array.isArray(m.tool_calls)) throw new Untranslatable('tool_calls must be an array.', `${param}.tool_calls`);
    m.tool_calls.forEach((raw, j) => {
      const call = record(raw);
      const fn = record(call.function);
      if (typeof call.id !== 'string' || typeof fn.name !== 'string') throw new Untranslatable('A tool call needs an id and a function name.', `${param}.tool_calls[${j}]`);
      blocks.push({ type: 'tool_use', id: call.id, name: fn.name, input: toolInput(fn.arguments, `${param}.tool_calls[${j}].function.arguments`) });
    });
  }
  return blocks;
}

/** tool_use input is a JSON object; OpenAI carries it as a JSON string. */
function toolInput(args: unknown, param: string): Json {
  if (args === undefined || args === null || args === '') return {};
  if (typeof args !== 'string') throw new Untranslatable('Tool call arguments must be a JSON string.', param);
  try {
    const parsed: unknown = JSON.parse(args);
    if (parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed)) return parsed as Json;
  } catch {
    // fall through to the refusal below
  }
  throw new Untranslatable('Tool call arguments must be a JSON object.', param);
}

function toolsOf(tools: unknown): Block[] | undefined {
  if (!Array.isArray(tools)) return undefined;
  return tools.map((raw, i) => {
    const tool = record(raw);
    const fn = record(tool.function);
    if (tool.type !== 'function' || typeof fn.name !== 'string') throw new Untranslatable('Only function tools are supported by this model.', `tools[${i}]`);
    const out: Block = { name: fn.name, input_schema: fn.parameters ?? { type: 'object', properties: {} } };
    if (typeof fn.description === 'string') out.description = fn.description;
    return out;
  });
}

function toolChoiceOf(choice: unknown, parallel: unknown): Block | undefined {
  let out: Block | undefined;
  if (choice === 'auto') out = { type: 'auto' };
  else if (choice === 'required') out = { type: 'any' };
  else if (choice === 'none') out = { type: 'none' };
  else if (choice !== undefined && choice !== null) {
    const name = record(record(choice).function).name;
    if (typeof name !== 'string') throw new Untranslatable('tool_choice must be auto, required, none or name a function.', 'tool_choice');
    out = { type: 'tool', name };
  }
  if (parallel === false && out?.type !== 'none') out = { ...(out ?? { type: 'auto' }), disable_parallel_tool_use: true };
  return out;
}

/** A string, or the text of text (and refusal) parts. */
function textOf(content: unknown, param: string): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) throw new Untranslatable('Message content must be a string or an array of parts.', param);
  let text = '';
  for (const raw of content) {
    const part = record(raw);
    if (part.type === 'text' && typeof part.text === 'string') text += part.text;
    else if (part.type === 'refusal' && typeof part.refusal === 'string') text += part.refusal;
    else throw new Untranslatable(`Content parts of type "${String(part.type)}" are not supported in this message.`, param);
  }
  return text;
}

function positive(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isInteger(value) && value > 0 ? value : undefined;
}

function record(value: unknown): Json {
  return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Json) : {};
}
