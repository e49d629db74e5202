// Reads an OpenAI-style SSE body event by event (eventsource-parser) and hands each event's data on as it arrives.
// Never holds more than maxEventBytes of one unfinished event: a provider that never ends an event is cut off.
import { createParser } from 'eventsource-parser';
import type { Dispatcher } from 'undici';
import { dropBody } from './response.ts';

/** `done`: [DONE] arrived. `ended`: the body ended cleanly without it. `too_large`: one event outgrew the cap (body destroyed). */
export type SseOutcome = 'done' | 'ended' | 'too_large';

/**
 * Calls `onData` with the data of each event until `[DONE]`, and keeps reading to the body's end so the
 * connection can be reused. Transport errors (idle timeout, reset, abort) reject.
 */
export async function readSseEvents(body: Dispatcher.ResponseData['body'], maxEventBytes: number, onData: (data: string) => void): Promise<SseOutcome> {
  let finished = false;
  // Bytes fed since the last complete event: what the parser may be holding. Reset on each event, so a long
  // stream of normal-sized events is never limited, only one event that grows without end.
  let pending = 0;
  const parser = createParser({
    onEvent(event) {
      pending = 0;
      if (finished) return;
      if (event.data === '[DONE]') {
        finished = true;
        return;
      }
      onData(event.data);
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
  return finished ? 'done' : 'ended';
}
