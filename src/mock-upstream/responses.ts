// OpenAI's Responses API as the mock speaks it (POST /v1/responses): the request read as the real API reads it, the
// Response object, and its typed SSE events (`event:` + `data:`, sequence numbers, no [DONE]); a function call when
// tools are offered; `incomplete` when max_output_tokens cuts the answer. Pure and deterministic; shares no code with
// Spillway's own responses bridge, so a bug in one is not hidden by the other.
import { BadRequest, wordAt, type RequestBody } from './bodies.ts';
import type { Behaviour } from './behaviour.ts';
import { pump, type Cut, type Exchange } from './pump.ts';
import { argumentPieces, openAIToolCall, type ToolCall } from './tools.ts';

type Json = Record<string, unknown>;

export interface ResponsesGeneration {
  readonly id: string;
  readonly createdAt: number;
  readonly body: RequestBody;
  readonly model: string;
  readonly words: number;
  readonly incomplete: boolean;
  readonly inputTokens: number;
  readonly stream: boolean;
  readonly toolCall: ToolCall | undefined;
}

const SSE_HEADERS = { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache' };
const ROLES = new Set(['user', 'assistant', 'system', 'developer']);

/** Reads a Responses request; `maxWords` is the mock's configured answer length, `uid` unique per request. */
export function readResponsesRequest(body: RequestBody, maxWords: number, uid: string): ResponsesGeneration {
  const input = body['input'];
  if (typeof input !== 'string' && !Array.isArray(input)) throw new BadRequest("Missing required parameter: 'input'.", 'input');
  let text = typeof body['instructions'] === 'string' ? body['instructions'] : '';
  const items = typeof input === 'string' ? [{ role: 'user', content: input }] : (input as unknown[]);
  items.forEach((raw, i) => {
    const item = isRecord(raw) ? raw : {};
    const type = item['type'] ?? 'message';
    if (type === 'message' && !ROLES.has(String(item['role']))) throw new BadRequest(`Invalid value: '${String(item['role'])}'. Supported values are: 'user', 'assistant', 'system', and 'developer'.`, `input[${i}].role`);
    text += textOf(item['content']) + textOf(item['output']) + (typeof item['arguments'] === 'string' ? item['arguments'] : '');
  });
  const max = body['max_output_tokens'];
  if (max !== undefined && max !== null && (typeof max !== 'number' || !Number.isInteger(max) || max < 16)) {
    throw new BadRequest("Invalid 'max_output_tokens': integer below minimum value. Expected a value >= 16.", 'max_output_tokens');
  }
  const words = typeof max === 'number' && max < maxWords ? max : maxWords;
  const last = items.at(-1);
  const answered = isRecord(last) && last['type'] === 'function_call_output';
  return {
    id: `resp_${uid}`,
    createdAt: Math.floor(Date.now() / 1000),
    body,
    model: String(body['model']),
    words,
    incomplete: words < maxWords,
    inputTokens: Math.ceil(text.length / 4),
    stream: body['stream'] === true,
    toolCall: answered ? undefined : toolCallFor(body, `call_${uid}`),
  };
}

/** The JSON answer, or the stream with the behaviour's stream faults applied. */
export function responsesResponder(b: Behaviour, body: RequestBody, uid: string): (ex: Exchange) => void {
  const g = readResponsesRequest(body, b.chunks, uid);
  return (ex) => {
    if (!g.stream) {
      const json = JSON.stringify(finalResponse(g));
      ex.res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(json) });
      return void ex.res.end(json);
    }
    let frames = [...responsesFrames(g)];
    const half = 4 + Math.floor(g.words / 2);
    if (b.fault === 'no-done') frames = frames.slice(0, -1);
    if (b.fault === 'stream-error') frames = [...frames.slice(0, half), frame({ type: 'error', code: 'server_error', message: 'The server had an error while processing your request.', param: null, sequence_number: half })];
    const cut: Cut | undefined =
      b.fault === 'reset-mid-stream' ? { after: half, action: 'reset' } : b.fault === 'stall-mid-stream' ? { after: half, action: 'stall', stallMs: b.stallMs } : undefined;
    const delay = b.fault === 'slow-stream' ? Math.max(200, b.chunkDelayMs * 10) : b.chunkDelayMs;
    pump(ex, 200, SSE_HEADERS, frames[Symbol.iterator](), delay, cut);
  };
}

/** The finished Response: "tok1 tok2 …" in one message, or one function call. */
export function finalResponse(g: ResponsesGeneration): Json {
  return { ...shell(g, g.incomplete ? 'incomplete' : 'completed'), completed_at: g.incomplete ? null : g.createdAt, incomplete_details: g.incomplete ? { reason: 'max_output_tokens' } : null, output: [outputItem(g, g.incomplete ? 'incomplete' : 'completed')], usage: usageOf(g) };
}

/** Every event of the stream, each an `event:` + `data:` frame; the terminal one last. */
export function* responsesFrames(g: ResponsesGeneration): Generator<string, void, undefined> {
  let seq = 0;
  const next = (event: Json) => frame({ ...event, sequence_number: seq++ });
  yield next({ type: 'response.created', response: shell(g, 'in_progress') });
  yield next({ type: 'response.in_progress', response: shell(g, 'in_progress') });
  const call = g.toolCall;
  const itemId = call === undefined ? `msg_${g.id.slice(5)}` : `fc_${g.id.slice(5)}`;
  if (call !== undefined) {
    yield next({ type: 'response.output_item.added', output_index: 0, item: { id: itemId, type: 'function_call', status: 'in_progress', call_id: call.id, name: call.name, arguments: '' } });
    for (const piece of argumentPieces(call.arguments)) yield next({ type: 'response.function_call_arguments.delta', item_id: itemId, output_index: 0, delta: piece });
    yield next({ type: 'response.function_call_arguments.done', item_id: itemId, name: call.name, output_index: 0, arguments: call.arguments });
  } else {
    const at = { item_id: itemId, output_index: 0, content_index: 0 };
    yield next({ type: 'response.output_item.added', output_index: 0, item: { id: itemId, type: 'message', status: 'in_progress', role: 'assistant', content: [] } });
    yield next({ type: 'response.content_part.added', ...at, part: { type: 'output_text', text: '', annotations: [], logprobs: [] } });
    for (let w = 0; w < g.words; w++) yield next({ type: 'response.output_text.delta', ...at, delta: wordAt(w), logprobs: [] });
    yield next({ type: 'response.output_text.done', ...at, text: answerText(g), logprobs: [] });
    yield next({ type: 'response.content_part.done', ...at, part: { type: 'output_text', text: answerText(g), annotations: [], logprobs: [] } });
  }
  const status = g.incomplete ? 'incomplete' : 'completed';
  yield next({ type: 'response.output_item.done', output_index: 0, item: outputItem(g, status) });
  yield next({ type: g.incomplete ? 'response.incomplete' : 'response.completed', response: finalResponse(g) });
}

function frame(event: Json): string {
  return `event: ${String(event['type'])}\ndata: ${JSON.stringify(event)}\n\n`;
}

function outputItem(g: ResponsesGeneration, status: string): Json {
  const call = g.toolCall;
  if (call !== undefined) return { id: `fc_${g.id.slice(5)}`, type: 'function_call', status, call_id: call.id, name: call.name, arguments: call.arguments };
  return { id: `msg_${g.id.slice(5)}`, type: 'message', status, role: 'assistant', content: [{ type: 'output_text', text: answerText(g), annotations: [], logprobs: [] }] };
}

function answerText(g: ResponsesGeneration): string {
  let text = '';
  for (let i = 0; i < g.words; i++) text += wordAt(i);
  return text;
}

function shell(g: ResponsesGeneration, status: string): Json {
  const b = g.body;
  return {
    id: g.id,
    object: 'response',
    created_at: g.createdAt,
    status,
    background: false,
    completed_at: null,
    error: null,
    incomplete_details: null,
    instructions: b['instructions'] ?? null,
    max_output_tokens: b['max_output_tokens'] ?? null,
    model: g.model,
    output: [],
    parallel_tool_calls: b['parallel_tool_calls'] !== false,
    previous_response_id: b['previous_response_id'] ?? null,
    reasoning: { effort: null, summary: null },
    store: b['store'] !== false,
    temperature: typeof b['temperature'] === 'number' ? b['temperature'] : 1,
    text: isRecord(b['text']) ? b['text'] : { format: { type: 'text' } },
    tool_choice: b['tool_choice'] ?? 'auto',
    // OpenAI echoes a function tool with its defaults filled in (strict: true).
    tools: (Array.isArray(b['tools']) ? b['tools'] : []).map((t) => (isRecord(t) && t['type'] === 'function' ? { description: null, parameters: null, strict: true, ...t } : t)),
    top_p: typeof b['top_p'] === 'number' ? b['top_p'] : 1,
    truncation: 'disabled',
    metadata: isRecord(b['metadata']) ? b['metadata'] : {},
  };
}

function usageOf(g: ResponsesGeneration): Json {
  const output = g.toolCall === undefined ? g.words : Math.ceil(g.toolCall.arguments.length / 4);
  return {
    input_tokens: g.inputTokens,
    input_tokens_details: { cached_tokens: 0, cache_write_tokens: 0 },
    output_tokens: output,
    output_tokens_details: { reasoning_tokens: 0 },
    total_tokens: g.inputTokens + output,
  };
}

/** Responses tools (`{type: 'function', name, parameters}`) through the shared chat-shaped tool picker. */
function toolCallFor(body: RequestBody, id: string): ToolCall | undefined {
  const tools = (Array.isArray(body['tools']) ? body['tools'] : []).filter(isRecord).filter((t) => t['type'] === 'function');
  const choice = body['tool_choice'];
  const named = isRecord(choice) && choice['type'] === 'function' ? { type: 'function', function: { name: choice['name'] } } : choice;
  return openAIToolCall({ tools: tools.map((t) => ({ type: 'function', function: { name: t['name'], parameters: t['parameters'] } })), tool_choice: named, messages: [] }, id);
}

function textOf(content: unknown): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return '';
  return content.map((p) => (isRecord(p) && typeof p['text'] === 'string' ? p['text'] : '')).join('');
}

function isRecord(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
