// Replays a stored Response as the stream of events that produces it (GET /v1/responses/{id}?stream=true): created,
// in_progress, each output item with its parts (whole texts and arguments as single deltas), then the terminal event.
// Pure; items the broker does not know in detail (reasoning, built-in tools) are replayed as added and done.
import type { ResponseItem } from './context.ts';
import { record } from './request.ts';

type Json = Record<string, unknown>;

const TERMINAL: Record<string, string> = {
  completed: 'response.completed',
  incomplete: 'response.incomplete',
  failed: 'response.failed',
  cancelled: 'response.failed',
};

/** Event payloads, `type` first; `startingAfter` drops events up to and including that sequence number. */
export function replayEvents(response: Json, startingAfter?: number): string[] {
  const events: Json[] = [];
  const { usage: _usage, ...rest } = response;
  const inProgress = { ...rest, status: 'in_progress', output: [], completed_at: null, error: null, incomplete_details: null };
  events.push({ type: 'response.created', response: inProgress });
  const status = String(response.status);
  if (status === 'queued') {
    events[0] = { type: 'response.queued', response: { ...inProgress, status: 'queued' } };
    return number(events, startingAfter);
  }
  events.push({ type: 'response.in_progress', response: inProgress });
  const output = Array.isArray(response.output) ? (response.output as ResponseItem[]) : [];
  output.forEach((item, index) => events.push(...itemEvents(item, index)));
  const terminal = TERMINAL[status];
  if (terminal !== undefined) events.push({ type: terminal, response });
  return number(events, startingAfter);
}

function itemEvents(item: ResponseItem, outputIndex: number): Json[] {
  const events: Json[] = [];
  const id = String(item.id ?? '');
  if (item.type === 'message') {
    events.push({ type: 'response.output_item.added', output_index: outputIndex, item: { ...item, status: 'in_progress', content: [] } });
    const content = Array.isArray(item.content) ? item.content.map(record) : [];
    content.forEach((part, contentIndex) => {
      const at = { item_id: id, output_index: outputIndex, content_index: contentIndex };
      if (part.type === 'output_text') {
        events.push({ type: 'response.content_part.added', ...at, part: { ...part, text: '' } });
        events.push({ type: 'response.output_text.delta', ...at, delta: part.text, logprobs: [] });
        events.push({ type: 'response.output_text.done', ...at, text: part.text, logprobs: [] });
      } else if (part.type === 'refusal') {
        events.push({ type: 'response.content_part.added', ...at, part: { ...part, refusal: '' } });
        events.push({ type: 'response.refusal.delta', ...at, delta: part.refusal });
        events.push({ type: 'response.refusal.done', ...at, refusal: part.refusal });
      } else {
        events.push({ type: 'response.content_part.added', ...at, part });
      }
      events.push({ type: 'response.content_part.done', ...at, part });
    });
  } else if (item.type === 'function_call') {
    events.push({ type: 'response.output_item.added', output_index: outputIndex, item: { ...item, status: 'in_progress', arguments: '' } });
    events.push({ type: 'response.function_call_arguments.delta', item_id: id, output_index: outputIndex, delta: item.arguments });
    events.push({ type: 'response.function_call_arguments.done', item_id: id, name: item.name, output_index: outputIndex, arguments: item.arguments });
  } else {
    events.push({ type: 'response.output_item.added', output_index: outputIndex, item });
  }
  events.push({ type: 'response.output_item.done', output_index: outputIndex, item });
  return events;
}

function number(events: Json[], startingAfter: number | undefined): string[] {
  return events
    .map(({ type, ...rest }, i) => ({ type, sequence_number: i, ...rest }))
    .filter((e) => startingAfter === undefined || e.sequence_number > startingAfter)
    .map((e) => JSON.stringify(e));
}
