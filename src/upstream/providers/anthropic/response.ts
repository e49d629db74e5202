// Turns a Messages API answer into an OpenAI chat.completion: text blocks joined into the message content, tool_use
// blocks into tool_calls (arguments as a JSON string), stop_reason into finish_reason, usage into OpenAI's counts.
// Never invents content: blocks it does not know (thinking, server tools) are left out, not guessed at.
import { z } from 'zod';
import type { Endpoint } from '../../../config/schema.ts';
import { protocolFailure, type UpstreamFailure } from '../openai/errors.ts';

export const AnthropicUsageSchema = z.looseObject({
  input_tokens: z.number().nullish(),
  output_tokens: z.number().nullish(),
  cache_creation_input_tokens: z.number().nullish(),
  cache_read_input_tokens: z.number().nullish(),
});
export type AnthropicUsage = z.infer<typeof AnthropicUsageSchema>;

const BlockSchema = z.looseObject({ type: z.string(), text: z.string().optional(), id: z.string().optional(), name: z.string().optional(), input: z.unknown().optional() });

const MessageSchema = z.looseObject({
  type: z.literal('message'),
  id: z.string(),
  model: z.string().optional(),
  content: z.array(BlockSchema),
  stop_reason: z.string().nullish(),
  usage: AnthropicUsageSchema.optional(),
});

export type FinishReason = 'stop' | 'length' | 'tool_calls' | 'content_filter';

/** end_turn, stop_sequence and pause_turn end a turn normally; refusal is the model's own safety stop. */
export function finishReasonOf(stopReason: string | null | undefined): FinishReason {
  switch (stopReason) {
    case 'max_tokens':
    case 'model_context_window_exceeded':
      return 'length';
    case 'tool_use':
      return 'tool_calls';
    case 'refusal':
      return 'content_filter';
    default:
      return 'stop';
  }
}

/** OpenAI counts cached prompt tokens inside prompt_tokens; Anthropic counts them apart. */
export function openAIUsage(usage: AnthropicUsage | undefined): { prompt_tokens: number; completion_tokens: number; total_tokens: number; prompt_tokens_details?: { cached_tokens: number } } {
  const cached = usage?.cache_read_input_tokens ?? 0;
  const prompt = (usage?.input_tokens ?? 0) + (usage?.cache_creation_input_tokens ?? 0) + cached;
  const completion = usage?.output_tokens ?? 0;
  const out = { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
  return cached > 0 ? { ...out, prompt_tokens_details: { cached_tokens: cached } } : out;
}

export function translateAnthropicJson(text: string, _endpoint: Endpoint, model: string): string | UpstreamFailure {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return protocolFailure(200, true, 'anthropic answered 200 with a body that is not JSON');
  }
  const message = MessageSchema.safeParse(parsed);
  if (!message.success) return protocolFailure(200, false, 'anthropic answered 200 with a body that is not a message');
  const m = message.data;
  let content = '';
  const toolCalls: unknown[] = [];
  for (const block of m.content) {
    if (block.type === 'text' && block.text !== undefined) content += block.text;
    else if (block.type === 'tool_use' && block.id !== undefined && block.name !== undefined) {
      toolCalls.push({ id: block.id, type: 'function', function: { name: block.name, arguments: JSON.stringify(block.input ?? {}) } });
    }
  }
  const reply: Record<string, unknown> = { role: 'assistant', content: content === '' && toolCalls.length > 0 ? null : content, refusal: null, annotations: [] };
  if (toolCalls.length > 0) reply.tool_calls = toolCalls;
  return JSON.stringify({
    id: m.id,
    object: 'chat.completion',
    created: Math.floor(Date.now() / 1000),
    model: m.model ?? model,
    choices: [{ index: 0, message: reply, logprobs: null, finish_reason: finishReasonOf(m.stop_reason) }],
    usage: openAIUsage(m.usage),
  });
}
