// Translates a Messages API stream into chat.completion.chunk payloads as events arrive: message_start → the role
// chunk; text_delta → content; a tool_use block → a tool call (id and name first, then its input_json_delta pieces
// as argument fragments); message_delta → the finish reason; message_stop → the usage chunk (include_usage) and the end.
// Never buffers a whole answer, and never holds more than maxEventBytes of one unfinished event.
import { createParser } from 'eventsource-parser';
import type { Dispatcher } from 'undici';
import { z } from 'zod';
import { dropBody } from '../openai/response.ts';
import { protocolFailure } from '../openai/errors.ts';
import type { StreamContext, StreamEnd } from '../adapter.ts';
import { AnthropicUsageSchema, finishReasonOf, openAIUsage, type AnthropicUsage, type FinishReason } from './response.ts';
import { failureFromStreamError } from './errors.ts';

const EventSchema = z.discriminatedUnion('type', [
  z.looseObject({ type: z.literal('message_start'), message: z.looseObject({ id: z.string(), model: z.string().optional(), usage: AnthropicUsageSchema.optional() }) }),
  z.looseObject({
    type: z.literal('content_block_start'),
    index: z.number(),
    content_block: z.looseObject({ type: z.string(), text: z.string().optional(), id: z.string().optional(), name: z.string().optional() }),
  }),
  z.looseObject({
    type: z.literal('content_block_delta'),
    index: z.number(),
    delta: z.looseObject({ type: z.string(), text: z.string().optional(), partial_json: z.string().optional() }),
  }),
  z.looseObject({ type: z.literal('message_delta'), delta: z.looseObject({ stop_reason: z.string().nullish() }), usage: AnthropicUsageSchema.optional() }),
  z.looseObject({ type: z.literal('message_stop') }),
]);
type AnthropicEvent = z.infer<typeof EventSchema>;

/** One stream's translation state: the message's id and model, which content blocks are tool calls, the usage so far. */
class ChunkTranslator {
  private id = '';
  private model: string;
  private readonly created = Math.floor(Date.now() / 1000);
  /** Content block index → tool call index (OpenAI numbers tool calls from 0, Anthropic numbers all blocks). */
  private readonly toolCalls = new Map<number, number>();
  private usage: AnthropicUsage = {};
  private readonly includeUsage: boolean;

  constructor(context: StreamContext) {
    this.model = context.model;
    const options = context.body.stream_options;
    this.includeUsage = typeof options === 'object' && options !== null && (options as { include_usage?: unknown }).include_usage === true;
  }

  /** The chunk payloads one event turns into (often none), and whether the message is complete. */
  translate(event: AnthropicEvent): { chunks: string[]; done: boolean } {
    switch (event.type) {
      case 'message_start':
        this.id = event.message.id;
        this.model = event.message.model ?? this.model;
        this.usage = { ...event.message.usage };
        return { chunks: [this.chunk({ role: 'assistant', content: '' }, null)], done: false };
      case 'content_block_start': {
        const block = event.content_block;
        if (block.type === 'text') return { chunks: block.text ? [this.chunk({ content: block.text }, null)] : [], done: false };
        if (block.type !== 'tool_use') return { chunks: [], done: false };
        const index = this.toolCalls.size;
        this.toolCalls.set(event.index, index);
        return { chunks: [this.chunk({ tool_calls: [{ index, id: block.id, type: 'function', function: { name: block.name, arguments: '' } }] }, null)], done: false };
      }
      case 'content_block_delta': {
        const delta = event.delta;
        if (delta.type === 'text_delta' && delta.text) return { chunks: [this.chunk({ content: delta.text }, null)], done: false };
        const index = this.toolCalls.get(event.index);
        if (delta.type === 'input_json_delta' && delta.partial_json && index !== undefined) {
          return { chunks: [this.chunk({ tool_calls: [{ index, function: { arguments: delta.partial_json } }] }, null)], done: false };
        }
        return { chunks: [], done: false };
      }
      case 'message_delta':
        // Usage counts in message_delta are cumulative: they replace, not add to, what message_start said.
        this.usage = { ...this.usage, ...stripNulls(event.usage) };
        return { chunks: [this.chunk({}, finishReasonOf(event.delta.stop_reason))], done: false };
      case 'message_stop':
        return { chunks: this.includeUsage ? [this.frame([], openAIUsage(this.usage))] : [], done: true };
    }
  }

  private chunk(delta: Record<string, unknown>, finishReason: FinishReason | null): string {
    return this.frame([{ index: 0, delta, logprobs: null, finish_reason: finishReason }], undefined);
  }

  private frame(choices: unknown[], usage: unknown): string {
    return JSON.stringify({ id: this.id, object: 'chat.completion.chunk', created: this.created, model: this.model, choices, usage });
  }
}

function stripNulls(usage: AnthropicUsage | undefined): AnthropicUsage {
  const out: AnthropicUsage = {};
  for (const [key, value] of Object.entries(usage ?? {})) if (typeof value === 'number') (out as Record<string, number>)[key] = value;
  return out;
}

/**
 * Reads the stream to its end (so the connection can be reused), handing on chunk payloads until message_stop.
 * `done` once message_stop arrived; `ended` when the body ended without it; a failure for an `error` event or an
 * event that is not what the Messages API sends. Transport errors (idle timeout, reset, abort) reject.
 */
export async function readAnthropicStream(
  body: Dispatcher.ResponseData['body'],
  maxEventBytes: number,
  context: StreamContext,
  onData: (data: string) => void,
): Promise<StreamEnd> {
  const translator = new ChunkTranslator(context);
  let end: StreamEnd | undefined;
  let pending = 0;
  const parser = createParser({
    onEvent(event) {
      pending = 0;
      if (end !== undefined || event.event === 'ping') return;
      if (event.event === 'error') {
        end = failureFromStreamError(event.data);
        return;
      }
      let parsed: unknown;
      try {
        parsed = JSON.parse(event.data);
      } catch {
        end = protocolFailure(200, true, `anthropic stream event "${event.event ?? 'message'}" is not JSON`);
        return;
      }
      const known = EventSchema.safeParse(parsed);
      // Event types added after this adapter was written (and ping, content_block_stop) carry nothing to relay.
      if (!known.success) return;
      const { chunks, done } = translator.translate(known.data);
      for (const chunk of chunks) onData(chunk);
      if (done) end = 'done';
    },
  });
  const decoder = new TextDecoder('utf-8');
  for await (const part of body as AsyncIterable<Buffer>) {
    pending += part.length;
    parser.feed(decoder.decode(part, { stream: true }));
    if (pending > maxEventBytes) {
      dropBody(body);
      return 'too_large';
    }
  }
  parser.feed(decoder.decode());
  return end ?? 'ended';
}
