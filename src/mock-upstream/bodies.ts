// The OpenAI bodies the mock upstream reads and writes: request fields in, JSON answers, SSE frames, embeddings, errors out.
// Pure and deterministic; never imports Spillway's own openai/ or errors modules — a mock sharing code with the broker hides the bugs both have.

import { argumentPieces, openAIToolCall, type ToolCall } from './tools.ts';

export type GenerationKind = 'chat' | 'completions';
export type FinishReason = 'stop' | 'length' | 'tool_calls';
export type RequestBody = Record<string, unknown>;

/** One chat or text completion, decided once per request. */
export interface Generation {
  readonly kind: GenerationKind;
  readonly id: string;
  /** Unix seconds, shared by every chunk of a stream. */
  readonly created: number;
  readonly model: string;
  /** Choices in the answer: `n`, times the number of prompts for text completions. */
  readonly choices: number;
  /** Content words per choice. */
  readonly words: number;
  readonly finishReason: FinishReason;
  readonly promptTokens: number;
  readonly stream: boolean;
  /** `stream_options.include_usage`: non-final chunks then carry `usage: null` and a last chunk carries the usage. */
  readonly includeUsage: boolean;
  /** Chat with tools offered: every choice calls this tool instead of answering in words. */
  readonly toolCall: ToolCall | undefined;
}

export interface EmbeddingsRequest {
  readonly model: string;
  readonly texts: readonly string[];
  readonly promptTokens: number;
  readonly dimensions: number;
  readonly base64: boolean;
}

/** A request the mock answers with an OpenAI-shaped 400. */
export class BadRequest extends Error {
  readonly param: string | null;
  constructor(message: string, param: string | null = null) {
    super(message);
    this.param = param;
  }
}

export const DONE_FRAME = 'data: [DONE]\n\n';
const PAD = 'x'.repeat(64 * 1024);
const PAD_MARK = '<<padding>>';
const SYSTEM_FINGERPRINT = 'fp_spillway_mock';
/** A fixed date (2024-01-01) so that model listings are byte-identical between runs. */
const MODELS_CREATED = 1_704_067_200;
const MODEL_IDS: readonly string[] = ['gpt-4o-mini', 'gpt-4o', 'gpt-3.5-turbo-instruct', 'text-embedding-3-small', 'mock-model'];

/** `defaultModel`: Azure names the deployment in the path, so its bodies may leave `model` out. */
export function parseRequestBody(text: string, defaultModel?: string): RequestBody {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new BadRequest('We could not parse the JSON body of your request. Please send valid JSON.');
  }
  if (!isRecord(parsed)) throw new BadRequest('The request body must be a JSON object.');
  if (parsed['model'] === undefined && defaultModel !== undefined) parsed['model'] = defaultModel;
  const model = parsed['model'];
  if (typeof model !== 'string' || model === '') throw new BadRequest('You must provide a model parameter.', 'model');
  return parsed;
}

/** Reads a chat or text completion request; `maxWords` is the mock's configured answer length. */
export function readGeneration(kind: GenerationKind, body: RequestBody, maxWords: number, id: string): Generation {
  let choices = optionalInt(body, 'n', 1, 128) ?? 1;
  let promptTokens = 0;
  if (kind === 'chat') {
    const messages = body['messages'];
    if (!Array.isArray(messages)) throw new BadRequest("Missing required parameter: 'messages'.", 'messages');
    for (const m of messages) if (isRecord(m)) promptTokens += estimateTokens(textOf(m['content']));
  } else {
    // A prompt is a string, token ids, or an array of either; each prompt of an array gets `n` choices.
    const prompt = body['prompt'];
    const prompts = Array.isArray(prompt) && prompt.length > 0 && typeof prompt[0] !== 'number' ? prompt : [prompt];
    choices *= prompts.length;
    for (const p of prompts) promptTokens += Array.isArray(p) ? p.length : estimateTokens(textOf(p));
  }
  const maxTokens = optionalInt(body, 'max_completion_tokens', 1, 1e9) ?? optionalInt(body, 'max_tokens', 1, 1e9);
  const words = maxTokens !== undefined && maxTokens < maxWords ? maxTokens : maxWords;
  const streamOptions = body['stream_options'];
  const toolCall = kind === 'chat' ? openAIToolCall(body, `call_${id.slice(id.indexOf('-') + 1)}`) : undefined;
  return {
    kind,
    id,
    created: Math.floor(Date.now() / 1000),
    model: body['model'] as string,
    choices,
    words,
    finishReason: toolCall !== undefined ? 'tool_calls' : words < maxWords ? 'length' : 'stop',
    promptTokens,
    stream: body['stream'] === true,
    includeUsage: isRecord(streamOptions) && streamOptions['include_usage'] === true,
    toolCall,
  };
}

/** The i-th word (0-based) as streamed; words after the first carry their space, so the deltas concatenate to the answer. */
export function wordAt(i: number): string {
  return i === 0 ? 'tok1' : ` tok${i + 1}`;
}

/** CreateChatCompletionResponse or CreateCompletionResponse: "tok1 tok2 …" in every choice. */
export function generationBody(g: Generation): string {
  let text = '';
  for (let i = 0; i < g.words; i++) text += wordAt(i);
  const chat = g.kind === 'chat';
  const choices = [];
  for (let index = 0; index < g.choices; index++) {
    const finish_reason = g.finishReason;
    const call = g.toolCall;
    const message =
      call === undefined
        ? { role: 'assistant', content: text, refusal: null, annotations: [] }
        : { role: 'assistant', content: null, refusal: null, annotations: [], tool_calls: [{ id: call.id, type: 'function', function: { name: call.name, arguments: call.arguments } }] };
    choices.push(chat ? { index, message, logprobs: null, finish_reason } : { text, index, logprobs: null, finish_reason });
  }
  return JSON.stringify({
    id: g.id,
    object: chat ? 'chat.completion' : 'text_completion',
    created: g.created,
    model: g.model,
    choices,
    usage: usageOf(g),
    service_tier: chat ? 'default' : undefined,
    system_fingerprint: SYSTEM_FINGERPRINT,
  });
}

/**
 * The SSE frames of a stream, built lazily so that nothing more is built once the client is gone: for chat a role
 * chunk per choice first; a chunk per word and choice; a finish chunk per choice; the usage chunk (`choices: []`)
 * when include_usage asked for it; `[DONE]`. Text completions reuse the `text_completion` object per chunk.
 */
export function* generationFrames(g: Generation): Generator<string, void, undefined> {
  const chat = g.kind === 'chat';
  const object = chat ? 'chat.completion.chunk' : 'text_completion';
  // JSON.stringify drops `undefined`: without include_usage the chunks carry no `usage` key at all.
  const usage = g.includeUsage ? null : undefined;
  const frame = (choices: unknown[], usageField: unknown): string =>
    `data: ${JSON.stringify({ id: g.id, object, created: g.created, model: g.model, system_fingerprint: SYSTEM_FINGERPRINT, choices, usage: usageField })}\n\n`;
  const choice = (index: number, text: string, finish_reason: FinishReason | null): unknown =>
    chat
      ? { index, delta: finish_reason === null ? { content: text } : {}, logprobs: null, finish_reason }
      : { text, index, logprobs: null, finish_reason };
  if (chat) {
    for (let index = 0; index < g.choices; index++) {
      yield frame([{ index, delta: { role: 'assistant', content: '', refusal: null }, logprobs: null, finish_reason: null }], usage);
    }
  }
  const call = g.toolCall;
  if (call !== undefined) {
    // A tool call streams as OpenAI's do: id, type and name first with empty arguments, then argument fragments.
    const delta = (index: number, d: unknown) => frame([{ index, delta: { tool_calls: [d] }, logprobs: null, finish_reason: null }], usage);
    for (let index = 0; index < g.choices; index++) {
      yield delta(index, { index: 0, id: call.id, type: 'function', function: { name: call.name, arguments: '' } });
      for (const piece of argumentPieces(call.arguments)) yield delta(index, { index: 0, function: { arguments: piece } });
    }
  }
  for (let w = 0; call === undefined && w < g.words; w++) {
    const text = wordAt(w);
    for (let index = 0; index < g.choices; index++) yield frame([choice(index, text, null)], usage);
  }
  for (let index = 0; index < g.choices; index++) yield frame([choice(index, '', g.finishReason)], usage);
  if (g.includeUsage) yield frame([], usageOf(g));
  yield DONE_FRAME;
}

/** Pieces of at most 64 KiB (a writer can honour backpressure between them): `prefix`, padding, `suffix`, `totalBytes` long in all (never shorter than prefix and suffix). */
export function* paddedPieces(prefix: string, suffix: string, totalBytes: number): Generator<string, void, undefined> {
  yield prefix;
  for (let left = totalBytes - prefix.length - suffix.length; left > 0; left -= PAD.length) yield left >= PAD.length ? PAD : PAD.slice(0, left);
  yield suffix;
}

/** An OpenAI error body of `totalBytes`, its message padded: a provider (or a proxy) answering an enormous error. */
export function hugeErrorPieces(status: number, totalBytes: number): Generator<string, void, undefined> {
  const kind = errorKindFor(status);
  const [prefix = '', suffix = ''] = errorBody(`Mock upstream error ${status}, padded: ${PAD_MARK}`, kind.type, kind.code, null).split(PAD_MARK);
  return paddedPieces(prefix, suffix, totalBytes);
}

/** One SSE event `totalBytes` long (its data valid JSON), then `[DONE]`: an event far larger than any real chunk. */
export function* hugeEventFrames(totalBytes: number): Generator<string, void, undefined> {
  yield* paddedPieces('data: {"pad":"', '"}\n\n', totalBytes);
  yield DONE_FRAME;
}

/** The frames of a stream without its `[DONE]`: a stream that ends cleanly but early. */
export function* withoutDone(frames: Iterable<string>): Generator<string, void, undefined> {
  for (const frame of frames) if (frame !== DONE_FRAME) yield frame;
}

/** Reads an embeddings request: `input` is a string, strings, token ids, or arrays of token ids. */
export function readEmbeddings(body: RequestBody): EmbeddingsRequest {
  const input = body['input'];
  const items = Array.isArray(input) && input.length > 0 && typeof input[0] !== 'number' ? input : [input];
  const texts: string[] = [];
  let promptTokens = 0;
  for (const item of items) {
    if (typeof item === 'string') {
      texts.push(item);
      promptTokens += estimateTokens(item);
    } else if (Array.isArray(item) && item.length > 0 && item.every((t) => Number.isInteger(t))) {
      texts.push(item.join(','));
      promptTokens += item.length;
    } else {
      throw new BadRequest("'input' must be a string, an array of strings, of token ids or of token-id arrays.", 'input');
    }
  }
  const format = body['encoding_format'] ?? 'float';
  if (format !== 'float' && format !== 'base64') throw new BadRequest("'encoding_format' must be 'float' or 'base64'.", 'encoding_format');
  const dimensions = optionalInt(body, 'dimensions', 1, 65_536) ?? 16;
  return { model: body['model'] as string, texts, promptTokens, dimensions, base64: format === 'base64' };
}

/** CreateEmbeddingResponse: one embedding per input text, in input order. */
export function embeddingsBody(r: EmbeddingsRequest): string {
  const data = r.texts.map((text, index) => {
    const vector = embeddingVector(text, r.dimensions);
    return { object: 'embedding', index, embedding: r.base64 ? float32ToBase64(vector) : Array.from(vector) };
  });
  return JSON.stringify({ object: 'list', data, model: r.model, usage: { prompt_tokens: r.promptTokens, total_tokens: r.promptTokens } });
}

/**
 * A unit-length vector seeded by an FNV-1a hash of the text: equal texts give equal vectors, different texts
 * (almost always) different ones. Values are float32, so the float and base64 encodings carry the same numbers.
 */
export function embeddingVector(text: string, dimensions: number): Float32Array {
  let seed = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) seed = Math.imul(seed ^ text.charCodeAt(i), 0x01000193);
  const vector = new Float32Array(dimensions);
  let norm = 0;
  for (let i = 0; i < dimensions; i++) {
    // mulberry32: a tiny PRNG, spread enough for a fake embedding.
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), seed | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    const value = ((t ^ (t >>> 14)) >>> 0) / 2 ** 31 - 1;
    vector[i] = value;
    norm += value * value;
  }
  const scale = norm > 0 ? 1 / Math.sqrt(norm) : 0;
  for (let i = 0; i < dimensions; i++) vector[i] = (vector[i] ?? 0) * scale;
  return vector;
}

/** Little-endian float32 bytes in base64: what `encoding_format: 'base64'` (the openai npm client's default) expects. */
export function float32ToBase64(vector: Float32Array): string {
  const bytes = Buffer.allocUnsafe(vector.length * 4);
  for (let i = 0; i < vector.length; i++) bytes.writeFloatLE(vector[i] ?? 0, i * 4);
  return bytes.toString('base64');
}

function modelObject(id: string): { id: string; object: 'model'; created: number; owned_by: string } {
  return { id, object: 'model', created: MODELS_CREATED, owned_by: 'spillway-mock' };
}

/** ListModelsResponse. */
export function modelsListBody(): string {
  return JSON.stringify({ object: 'list', data: MODEL_IDS.map(modelObject) });
}

/** Model, or undefined for an id the mock does not list. */
export function modelBody(id: string): string | undefined {
  return MODEL_IDS.includes(id) ? JSON.stringify(modelObject(id)) : undefined;
}

/** The `type` and `code` OpenAI gives an error of this status. */
export function errorKindFor(status: number): { type: string; code: string | null } {
  if (status === 401) return { type: 'authentication_error', code: 'invalid_api_key' };
  if (status === 403) return { type: 'permission_error', code: null };
  if (status === 429) return { type: 'requests', code: 'rate_limit_exceeded' };
  if (status >= 500) return { type: 'server_error', code: null };
  return { type: 'invalid_request_error', code: null };
}

/** ErrorResponse. */
export function errorBody(message: string, type: string, code: string | null, param: string | null): string {
  return JSON.stringify({ error: { message, type, param, code } });
}

function usageOf(g: Generation): { prompt_tokens: number; completion_tokens: number; total_tokens: number } {
  const completion = g.words * g.choices;
  return { prompt_tokens: g.promptTokens, completion_tokens: completion, total_tokens: g.promptTokens + completion };
}

/** A rough count (4 characters a token): stable, and growing with the input. */
function estimateTokens(text: string): number {
  return Math.ceil(text.length / 4);
}

/** The text of a message content or prompt: a string, or the `text` of content parts. */
function textOf(content: unknown): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return '';
  let text = '';
  for (const part of content) if (isRecord(part) && typeof part['text'] === 'string') text += part['text'];
  return text;
}

function optionalInt(body: RequestBody, key: string, min: number, max: number): number | undefined {
  const value = body[key];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new BadRequest(`Invalid '${key}': expected an integer from ${min} to ${max}.`, key);
  }
  return value;
}

function isRecord(value: unknown): value is RequestBody {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
