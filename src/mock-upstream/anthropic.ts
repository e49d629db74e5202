// The Anthropic Messages API as the mock speaks it (POST /v1/messages): the request checked as strictly as the real
// API checks it (unknown fields, roles, max_tokens), the message answer, its named SSE events, its error bodies.
// Pure and deterministic; shares no code with Spillway's own adapter, so a bug in one is not hidden by the other.
import { BadRequest, wordAt, type RequestBody } from './bodies.ts';
import { anthropicToolCall, argumentPieces, type ToolCall } from './tools.ts';

export type StopReason = 'end_turn' | 'max_tokens' | 'tool_use';

export interface AnthropicGeneration {
  readonly id: string;
  readonly model: string;
  readonly words: number;
  readonly stopReason: StopReason;
  readonly inputTokens: number;
  readonly stream: boolean;
  readonly toolCall: ToolCall | undefined;
}

/** Top-level fields of a Messages request; the API refuses any other ("Extra inputs are not permitted"). */
const FIELDS = new Set([
  'model',
  'messages',
  'max_tokens',
  'system',
  'temperature',
  'top_p',
  'top_k',
  'stop_sequences',
  'stream',
  'metadata',
  'tools',
  'tool_choice',
  'thinking',
  'service_tier',
]);
const BLOCK_TYPES = new Set(['text', 'image', 'document', 'tool_use', 'tool_result', 'thinking', 'redacted_thinking']);

export function readAnthropicRequest(body: RequestBody, maxWords: number, id: string): AnthropicGeneration {
  for (const key of Object.keys(body)) if (!FIELDS.has(key)) throw new BadRequest(`${key}: Extra inputs are not permitted`, key);
  const maxTokens = body['max_tokens'];
  if (maxTokens === undefined) throw new BadRequest('max_tokens: Field required', 'max_tokens');
  if (typeof maxTokens !== 'number' || !Number.isInteger(maxTokens) || maxTokens < 1) throw new BadRequest('max_tokens: Input should be a positive integer', 'max_tokens');
  const messages = body['messages'];
  if (!Array.isArray(messages) || messages.length === 0) throw new BadRequest('messages: Field required', 'messages');
  let inputTokens = estimate(body['system']);
  messages.forEach((raw, i) => {
    const m = record(raw);
    if (m['role'] !== 'user' && m['role'] !== 'assistant') throw new BadRequest(`messages.${i}.role: Input should be 'user' or 'assistant'`, 'messages');
    const content = m['content'];
    if (Array.isArray(content)) {
      content.forEach((block, j) => {
        const type = record(block)['type'];
        if (typeof type !== 'string' || !BLOCK_TYPES.has(type)) throw new BadRequest(`messages.${i}.content.${j}.type: unknown content block type`, 'messages');
        if (type === 'text' && record(block)['text'] === '') throw new BadRequest(`messages.${i}.content.${j}: text content blocks must be non-empty`, 'messages');
      });
    } else if (typeof content !== 'string') throw new BadRequest(`messages.${i}.content: Input should be a valid string or list`, 'messages');
    inputTokens += estimate(content);
  });
  for (const [i, tool] of (Array.isArray(body['tools']) ? body['tools'] : []).entries()) {
    const t = record(tool);
    if (typeof t['name'] !== 'string' || typeof t['input_schema'] !== 'object') throw new BadRequest(`tools.${i}: name and input_schema are required`, 'tools');
  }
  const words = Math.min(maxTokens, maxWords);
  const toolCall = anthropicToolCall(body, `toolu_${id.slice(4)}`);
  return {
    id,
    model: body['model'] as string,
    words,
    stopReason: toolCall !== undefined ? 'tool_use' : words < maxWords ? 'max_tokens' : 'end_turn',
    inputTokens,
    stream: body['stream'] === true,
    toolCall,
  };
}

/** The Message: one text block of the words, then the tool_use block when a tool is called. */
export function anthropicBody(g: AnthropicGeneration): string {
  const content: unknown[] = [{ type: 'text', text: textOf(g.words) }];
  if (g.toolCall !== undefined) content.push({ type: 'tool_use', id: g.toolCall.id, name: g.toolCall.name, input: JSON.parse(g.toolCall.arguments) });
  return JSON.stringify({
    id: g.id,
    type: 'message',
    role: 'assistant',
    model: g.model,
    content,
    stop_reason: g.stopReason,
    stop_sequence: null,
    usage: { input_tokens: g.inputTokens, cache_creation_input_tokens: 0, cache_read_input_tokens: 0, output_tokens: g.words },
  });
}

/** The stream's named events, as the API sends them; `message_stop` last (no [DONE] in this protocol). */
export function* anthropicFrames(g: AnthropicGeneration): Generator<string, void, undefined> {
  yield event('message_start', {
    type: 'message_start',
    message: { id: g.id, type: 'message', role: 'assistant', model: g.model, content: [], stop_reason: null, stop_sequence: null, usage: { input_tokens: g.inputTokens, output_tokens: 1 } },
  });
  yield event('content_block_start', { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } });
  yield event('ping', { type: 'ping' });
  for (let w = 0; w < g.words; w++) yield event('content_block_delta', { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: wordAt(w) } });
  yield event('content_block_stop', { type: 'content_block_stop', index: 0 });
  const call = g.toolCall;
  if (call !== undefined) {
    yield event('content_block_start', { type: 'content_block_start', index: 1, content_block: { type: 'tool_use', id: call.id, name: call.name, input: {} } });
    for (const partial_json of ['', ...argumentPieces(call.arguments)]) {
      yield event('content_block_delta', { type: 'content_block_delta', index: 1, delta: { type: 'input_json_delta', partial_json } });
    }
    yield event('content_block_stop', { type: 'content_block_stop', index: 1 });
  }
  yield event('message_delta', { type: 'message_delta', delta: { stop_reason: g.stopReason, stop_sequence: null }, usage: { output_tokens: g.words } });
  yield MESSAGE_STOP;
}

export const MESSAGE_STOP = event('message_stop', { type: 'message_stop' });

/** The frames cut after `after` of them by an `event: error` (overloaded_error), as the API does when it fails mid-answer. */
export function* withStreamError(frames: Iterable<string>, after: number): Generator<string, void, undefined> {
  let n = 0;
  for (const frame of frames) {
    if (n++ === after) break;
    yield frame;
  }
  yield event('error', { type: 'error', error: { type: 'overloaded_error', message: 'Overloaded' } });
}

/** ErrorResponse of the Messages API; its `type` follows the status as Anthropic documents it. */
export function anthropicErrorBody(status: number, message: string): string {
  return JSON.stringify({ type: 'error', error: { type: anthropicErrorType(status), message } });
}

function anthropicErrorType(status: number): string {
  const types: Record<number, string> = {
    400: 'invalid_request_error',
    401: 'authentication_error',
    403: 'permission_error',
    404: 'not_found_error',
    413: 'request_too_large',
    429: 'rate_limit_error',
    529: 'overloaded_error',
  };
  return types[status] ?? (status >= 500 ? 'api_error' : 'invalid_request_error');
}

function event(name: string, data: unknown): string {
  return `event: ${name}\ndata: ${JSON.stringify(data)}\n\n`;
}

function textOf(words: number): string {
  let text = '';
  for (let i = 0; i < words; i++) text += wordAt(i);
  return text;
}

/** A rough count (4 characters a token) over strings and text blocks. */
function estimate(content: unknown): number {
  if (typeof content === 'string') return Math.ceil(content.length / 4);
  if (!Array.isArray(content)) return 0;
  return content.reduce((n: number, block) => n + estimate(record(block)['text'] ?? record(block)['content']), 0);
}

function record(value: unknown): Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : {};
}
