// Estimates a request's tokens before the call, for the tpm budget: the prompt counted with a real tokenizer
// (o200k_base), plus the answer budget. Bounded cost on huge bodies; never throws on a client's odd body.
import { countTokens } from 'gpt-tokenizer/encoding/o200k_base';
import type { Endpoint } from '../config/schema.ts';

export interface EstimateDefaults {
  /** Answer tokens assumed per choice when the body sets neither max_completion_tokens nor max_tokens. */
  completionTokens: number;
  /** Characters tokenized exactly per request; the rest is extrapolated from them. Default EXACT_CHARS. */
  exactChars?: number;
}

/**
 * Characters counted exactly per request. Tokenizing costs about 0.1 µs per character of prose and up to 1 µs per
 * character of adversarial text (random letters, base64): past this budget the rest of the text is extrapolated at
 * the tokens-per-character ratio measured on the part counted, so a 10 MB prompt costs the ingress a few ms, not seconds.
 */
export const EXACT_CHARS = 8192;

/** OpenAI's chat framing (tiktoken cookbook): each message costs 3 tokens around its fields, a name 1 more, and
 * the reply is primed with 3. Non-text content parts (images, audio, files) count a flat IMAGE_PART_TOKENS each:
 * a 1024×1024 image at high detail (85 + 4 × 170); the settlement from usage corrects the difference. */
const TOKENS_PER_MESSAGE = 3;
/** The chat roles, each one token in o200k_base. */
const ROLES = new Set(['system', 'developer', 'user', 'assistant', 'tool', 'function']);
const TOKENS_PER_NAME = 1;
const REPLY_PRIMING = 3;
export const IMAGE_PART_TOKENS = 765;

// Special-token markers in a client's text are counted as text (never rejected: this only estimates).
const COUNT_OPTIONS = { disallowedSpecial: new Set<string>() };

/**
 * Token counts of texts seen recently, in two generations of at most CACHE_ENTRIES texts and CACHE_CHARS characters
 * each (a few MB at most): system prompts, tool definitions and role names repeat from request to request, and a
 * 4 KB system prompt costs hundreds of µs to tokenize each time. When the newer generation is full it becomes the
 * older one and the oldest is dropped; a text found in the older one moves back to the newer.
 */
const CACHE_ENTRIES = 2_048;
const CACHE_CHARS = 2_000_000;
let recentCounts = new Map<string, number>();
let olderCounts = new Map<string, number>();
let recentChars = 0;

function countText(text: string): number {
  let tokens = recentCounts.get(text);
  if (tokens !== undefined) return tokens;
  tokens = olderCounts.get(text) ?? countTokens(text, COUNT_OPTIONS);
  if (recentCounts.size >= CACHE_ENTRIES || recentChars + text.length > CACHE_CHARS) {
    olderCounts = recentCounts;
    recentCounts = new Map();
    recentChars = 0;
  }
  recentCounts.set(text, tokens);
  recentChars += text.length;
  return tokens;
}

/** The token-count cache's size now (for tests: it stays bounded). */
export function tokenCountCacheSize(): { entries: number; chars: number } {
  let chars = recentChars;
  for (const text of olderCounts.keys()) chars += text.length;
  return { entries: recentCounts.size + olderCounts.size, chars };
}

/**
 * Texts up to this many characters are charged an upper bound instead of being tokenized: a short message costs a
 * tokenizer call (µs) for a few tokens, and the settlement from `usage` refunds the difference after the call.
 */
export const SHORT_TEXT_CHARS = 256;

/** Counts text against one request's budget of exact characters, then extrapolates. */
class TokenCounter {
  private exactLeft: number;
  private countedChars = 0;
  private countedTokens = 0;
  private extraChars = 0;
  fixed = 0;

  constructor(exactChars: number) {
    this.exactLeft = exactChars;
  }

  text(value: unknown): void {
    if (typeof value !== 'string' || value.length === 0) return;
    if (value.length <= SHORT_TEXT_CHARS) {
      // Its UTF-8 length bounds its tokens from above (every token is at least one byte) and costs nothing to learn.
      this.fixed += Buffer.byteLength(value, 'utf8');
      return;
    }
    if (this.exactLeft <= 0) {
      this.extraChars += value.length;
      return;
    }
    const exact = value.length <= this.exactLeft ? value : value.slice(0, this.exactLeft);
    this.exactLeft -= exact.length;
    this.countedChars += exact.length;
    this.countedTokens += countText(exact);
    this.extraChars += value.length - exact.length;
  }

  /** A JSON value counted as its serialized text (tool definitions, tool call arguments, schemas). */
  json(value: unknown): void {
    if (value === undefined || value === null) return;
    if (typeof value === 'string') return this.text(value);
    try {
      this.text(JSON.stringify(value));
    } catch {
      // A body from JSON.parse always serializes; anything else is not worth failing a request over.
    }
  }

  total(): number {
    // Text past the budget at the measured ratio; with nothing measured, OpenAI's rule of thumb of 4 characters a token.
    const ratio = this.countedChars > 0 ? this.countedTokens / this.countedChars : 0.25;
    return this.fixed + this.countedTokens + Math.ceil(this.extraChars * ratio);
  }
}

const isRecord = (value: unknown): value is Record<string, unknown> => value !== null && typeof value === 'object' && !Array.isArray(value);
const positiveInt = (value: unknown): number | undefined => (typeof value === 'number' && Number.isInteger(value) && value > 0 ? value : undefined);

function countChat(counter: TokenCounter, body: Record<string, unknown>): void {
  const messages = Array.isArray(body.messages) ? body.messages : [];
  for (const message of messages) {
    if (!isRecord(message)) continue;
    counter.fixed += TOKENS_PER_MESSAGE;
    if (typeof message.role === 'string' && ROLES.has(message.role)) counter.fixed += 1;
    else counter.text(message.role);
    if (typeof message.name === 'string') {
      counter.fixed += TOKENS_PER_NAME;
      counter.text(message.name);
    }
    countContent(counter, message.content);
    counter.json(message.tool_calls);
    counter.json(message.function_call);
  }
  counter.fixed += REPLY_PRIMING;
  counter.json(body.tools);
  counter.json(body.functions);
  if (isRecord(body.response_format)) counter.json(body.response_format.json_schema);
}

function countContent(counter: TokenCounter, content: unknown): void {
  if (typeof content === 'string') return counter.text(content);
  if (!Array.isArray(content)) return;
  for (const part of content) {
    if (!isRecord(part)) continue;
    if (typeof part.text === 'string') counter.text(part.text);
    else if (typeof part.refusal === 'string') counter.text(part.refusal);
    else counter.fixed += IMAGE_PART_TOKENS;
  }
}

/** A prompt or input: a string, strings, token ids, or lists of token ids (counted exactly: one id, one token). */
function countPromptLike(counter: TokenCounter, value: unknown): number {
  if (typeof value === 'string') {
    counter.text(value);
    return 1;
  }
  if (!Array.isArray(value) || value.length === 0) return 1;
  if (typeof value[0] === 'number') {
    counter.fixed += value.length;
    return 1;
  }
  for (const item of value) {
    if (typeof item === 'string') counter.text(item);
    else if (Array.isArray(item)) counter.fixed += item.length;
  }
  return value.length;
}

/**
 * Tokens a request will use at most, as far as can be known before the call: prompt + answer budget
 * (max_completion_tokens, else max_tokens, else `defaults.completionTokens`) × n choices × prompts.
 * Embeddings have no answer. The estimate is settled against the upstream's `usage` after the call.
 */
export function estimateTokens(endpoint: Endpoint, body: unknown, defaults: EstimateDefaults): number {
  if (!isRecord(body)) return 0;
  const counter = new TokenCounter(defaults.exactChars ?? EXACT_CHARS);
  const answer = positiveInt(body.max_completion_tokens) ?? positiveInt(body.max_tokens) ?? defaults.completionTokens;
  const choices = positiveInt(body.n) ?? 1;
  switch (endpoint) {
    case 'chat.completions':
      countChat(counter, body);
      return counter.total() + answer * choices;
    case 'completions': {
      const prompts = countPromptLike(counter, body.prompt);
      counter.text(body.suffix);
      return counter.total() + answer * choices * prompts;
    }
    case 'embeddings':
      countPromptLike(counter, body.input);
      return counter.total();
    case 'responses':
      countResponses(counter, body);
      return counter.total() + (positiveInt(body.max_output_tokens) ?? defaults.completionTokens);
  }
}

/** A Responses request: instructions, input (a string or items: messages, function calls and their outputs), tools. */
function countResponses(counter: TokenCounter, body: Record<string, unknown>): void {
  counter.text(body.instructions);
  const items = typeof body.input === 'string' ? [{ role: 'user', content: body.input }] : Array.isArray(body.input) ? body.input : [];
  for (const item of items) {
    if (!isRecord(item)) continue;
    counter.fixed += TOKENS_PER_MESSAGE;
    countContent(counter, item.content);
    counter.text(item.arguments);
    if (typeof item.output === 'string') counter.text(item.output);
    else countContent(counter, item.output);
  }
  counter.fixed += REPLY_PRIMING;
  counter.json(body.tools);
  if (isRecord(body.text) && isRecord(body.text.format)) counter.json(body.text.format.schema);
}
