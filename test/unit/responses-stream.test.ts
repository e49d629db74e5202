// The Responses bridge's stream side, pure: chat.completion.chunk payloads in, Responses events out (created,
// in_progress, items and parts, text and argument deltas, completed / incomplete / failed), numbered 0, 1, 2…; a
// stored Response replayed as events; the SSE framing. Every event is validated against OpenAI's OpenAPI description
// (skipped, saying so, when absent), and the whole stream is accumulated by the official openai client's own
// ResponseStream, which refuses an inconsistent one.
import { describe, expect, it } from 'vitest';
import { ResponseStream } from 'openai/lib/responses/ResponseStream';
import { ResponsesStreamTranslator } from '../../src/responses/stream.ts';
import { replayEvents } from '../../src/responses/replay.ts';
import { RESPONSES_FRAMING } from '../../src/responses/sse.ts';
import { conform } from '../support/responses.ts';


type Json = Record<string, unknown>;

const BODY = { model: 'gpt-4o-mini', input: 'hello', instructions: 'Be brief.' };
const chunk = (delta: Json, finish_reason: string | null = null, extra: Json = {}) =>
  JSON.stringify({ id: 'chatcmpl-1', object: 'chat.completion.chunk', created: 1, model: 'upstream-model', choices: [{ index: 0, delta, finish_reason }], ...extra });
const usage = JSON.stringify({ id: 'chatcmpl-1', object: 'chat.completion.chunk', created: 1, model: 'upstream-model', choices: [], usage: { prompt_tokens: 5, completion_tokens: 2, total_tokens: 7 } });

function translate(chunks: string[], end: 'finish' | 'fail' = 'finish'): Json[] {
  const t = new ResponsesStreamTranslator({ body: BODY, id: 'resp_0123', createdAt: 100, now: () => 101 });
  const payloads = chunks.flatMap((c) => t.push(c));
  payloads.push(...(end === 'finish' ? t.finish() : t.fail('The upstream stream was interrupted.')));
  return payloads.map((p) => JSON.parse(p) as Json);
}

/** Each event conforms to ResponseStreamEvent; sequence numbers run 0, 1, 2… */
function expectConforming(events: Json[]): void {
  expect(events.map((e) => e.sequence_number)).toEqual(events.map((_, i) => i));
  for (const event of events) expect(conform('ResponseStreamEvent', event), String(event.type)).toEqual([]);
}

/** The official client's accumulator over the events (it checks item identity between deltas, done events and the final response). */
async function accumulate(events: Json[]) {
  const lines = events.map((e) => `${JSON.stringify(e)}\n`).join('');
  const stream = ResponseStream.fromReadableStream(new Blob([lines]).stream());
  return stream.finalResponse();
}

describe('a chat stream as Responses events', () => {
  const text = [chunk({ role: 'assistant', content: '' }), chunk({ content: 'tok1' }), chunk({ content: ' tok2' }), chunk({}, 'stop'), usage];

  it('text: created, in_progress, the message item and its part, deltas, dones, completed with usage', async () => {
    const events = translate(text);
    expect(events.map((e) => e.type)).toEqual([
      'response.created',
      'response.in_progress',
      'response.output_item.added',
      'response.content_part.added',
      'response.output_text.delta',
      'response.output_text.delta',
      'response.output_text.done',
      'response.content_part.done',
      'response.output_item.done',
      'response.completed',
    ]);
    expectConforming(events);
    const completed = events.at(-1)!.response as Json;
    expect(completed).toMatchObject({ id: 'resp_0123', status: 'completed', completed_at: 101, model: 'upstream-model', instructions: 'Be brief.', usage: { input_tokens: 5, output_tokens: 2, total_tokens: 7 } });
    expect(events[6]).toMatchObject({ text: 'tok1 tok2' });
    const final = await accumulate(events);
    expect(final.output_text).toBe('tok1 tok2');
    expect(final.status).toBe('completed');
  });

  it('tool calls: a function_call item per call with argument deltas and done, completed', async () => {
    const events = translate([
      chunk({ role: 'assistant', content: null }),
      chunk({ tool_calls: [{ index: 0, id: 'call_a', type: 'function', function: { name: 'weather', arguments: '' } }] }),
      chunk({ tool_calls: [{ index: 0, function: { arguments: '{"city":' } }] }),
      chunk({ tool_calls: [{ index: 0, function: { arguments: '"tok1"}' } }] }),
      chunk({ tool_calls: [{ index: 1, id: 'call_b', type: 'function', function: { name: 'time', arguments: '{}' } }] }),
      chunk({}, 'tool_calls'),
      usage,
    ]);
    expectConforming(events);
    expect(events.filter((e) => e.type === 'response.function_call_arguments.done')).toEqual([
      expect.objectContaining({ name: 'weather', arguments: '{"city":"tok1"}', output_index: 0 }),
      expect.objectContaining({ name: 'time', arguments: '{}', output_index: 1 }),
    ]);
    const final = await accumulate(events);
    expect(final.output).toEqual([
      expect.objectContaining({ type: 'function_call', call_id: 'call_a', name: 'weather', arguments: '{"city":"tok1"}', status: 'completed' }),
      expect.objectContaining({ type: 'function_call', call_id: 'call_b', name: 'time', arguments: '{}' }),
    ]);
  });

  it('text then a tool call: the message is done before the call starts', async () => {
    const events = translate([chunk({ content: 'Let me check.' }), chunk({ tool_calls: [{ index: 0, id: 'c', function: { name: 'f', arguments: '{}' } }] }), chunk({}, 'tool_calls')]);
    expectConforming(events);
    const types = events.map((e) => e.type);
    expect(types.indexOf('response.output_item.done')).toBeLessThan(types.lastIndexOf('response.output_item.added'));
    const final = await accumulate(events);
    expect(final.output.map((item) => item.type)).toEqual(['message', 'function_call']);
  });

  it('a length stop ends with response.incomplete and incomplete_details, the item incomplete', async () => {
    const events = translate([chunk({ content: 'tok1' }), chunk({}, 'length')]);
    expectConforming(events);
    expect(events.at(-1)).toMatchObject({ type: 'response.incomplete', response: { status: 'incomplete', incomplete_details: { reason: 'max_output_tokens' } } });
    expect(events.at(-2)).toMatchObject({ type: 'response.output_item.done', item: { status: 'incomplete' } });
    expect((await accumulate(events)).status).toBe('incomplete');
  });

  it('a refusal streams as a refusal part', async () => {
    const events = translate([chunk({ refusal: 'I cannot' }), chunk({ refusal: ' help.' }), chunk({}, 'stop')]);
    expectConforming(events);
    expect(events.find((e) => e.type === 'response.refusal.done')).toMatchObject({ refusal: 'I cannot help.' });
  });

  it('a stream broken after it started ends with response.failed carrying the error', () => {
    const events = translate([chunk({ content: 'tok1' })], 'fail');
    expectConforming(events);
    expect(events.at(-1)).toMatchObject({ type: 'response.failed', response: { status: 'failed', error: { code: 'server_error', message: 'The upstream stream was interrupted.' } } });
  });

  it('a stream that broke before any chunk produces nothing (the call may still be retried)', () => {
    const t = new ResponsesStreamTranslator({ body: BODY, id: 'resp_0123', createdAt: 100 });
    expect(t.fail('x')).toEqual([]);
    expect(t.hasStarted).toBe(false);
  });

  it('every payload leads with its type, so the SSE event name is read without a parse', () => {
    const t = new ResponsesStreamTranslator({ body: BODY, id: 'resp_0123', createdAt: 100 });
    for (const payload of [...t.push(chunk({ content: 'x' })), ...t.finish()]) expect(payload.startsWith('{"type":"')).toBe(true);
  });
});

describe('replay of a stored response', () => {
  it('replays text and function calls as a conforming stream the client accumulates to the same response', async () => {
    const stored = (translate([chunk({ content: 'tok1 tok2' }), chunk({ tool_calls: [{ index: 0, id: 'c', function: { name: 'f', arguments: '{"a":1}' } }] }), chunk({}, 'tool_calls'), usage]).at(-1)!.response) as Json;
    const events = replayEvents(stored).map((p) => JSON.parse(p) as Json);
    expectConforming(events);
    const final = await accumulate(events);
    expect(final.output).toMatchObject(stored.output as object);
    expect(final.usage).toEqual(stored.usage);
  });

  it('starting_after drops the events up to that sequence number', () => {
    const stored = (translate([chunk({ content: 'tok1' }), chunk({}, 'stop')]).at(-1)!.response) as Json;
    const all = replayEvents(stored);
    const later = replayEvents(stored, 3).map((p) => JSON.parse(p) as Json);
    expect(later.map((e) => e.sequence_number)).toEqual(all.slice(4).map((p) => (JSON.parse(p) as Json).sequence_number));
  });
});

describe('SSE framing', () => {
  it('names each event by its type and sends no [DONE]', () => {
    expect(RESPONSES_FRAMING.event('{"type":"response.created","sequence_number":0}')).toBe('event: response.created\ndata: {"type":"response.created","sequence_number":0}\n\n');
    expect(RESPONSES_FRAMING.end).toBe('');
  });

  it('a broker error after the head is a conforming error event numbered after the last event', () => {
    const frame = RESPONSES_FRAMING.error({ error: { message: 'stalled', type: 'api_error', param: null, code: 'stream_interrupted' } }, 7);
    expect(frame.startsWith('event: error\ndata: ')).toBe(true);
    const event = JSON.parse(frame.slice('event: error\ndata: '.length)) as Json;
    expect(event).toEqual({ type: 'error', code: 'stream_interrupted', message: 'stalled', param: null, sequence_number: 7 });
    expect(conform('ResponseStreamEvent', event)).toEqual([]);
  });
});
