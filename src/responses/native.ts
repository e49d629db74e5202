// The native way to the upstream: the client's Responses body forwarded (the conversation inlined when the upstream
// cannot hold it), and the upstream's typed events relayed as they arrive. A Responses stream has no [DONE]: it ends
// with its terminal event. Never parses an event it only relays, except to tell the end of the stream.
import type { Dispatcher } from 'undici';
import { readSseEvents } from '../upstream/providers/openai/stream.ts';
import { protocolFailure, type UpstreamFailure } from '../upstream/providers/openai/errors.ts';
import type { StreamEnd } from '../upstream/providers/adapter.ts';
import type { ResponsesJobContext } from './context.ts';

type Json = Record<string, unknown>;

/**
 * The body a native upstream gets. A previous response the upstream served itself is referred to by its id (the
 * upstream holds its state); one that another route or the bridge served is inlined as input items.
 */
export function nativeRequestBody(body: Json, context: ResponsesJobContext | undefined): Json {
  const previous = context?.previous;
  if (previous === undefined || previous.native) return body;
  const input = typeof body.input === 'string' ? [{ role: 'user', content: body.input }] : Array.isArray(body.input) ? body.input : [];
  const { previous_response_id: _dropped, ...rest } = body;
  return { ...rest, input: [...previous.items, ...input] };
}

const TERMINAL_EVENTS = ['"type":"response.completed"', '"type":"response.incomplete"', '"type":"response.failed"'];

/** Relays a native Responses stream event by event; it is complete once a terminal event has gone by. */
export async function readNativeStream(body: Dispatcher.ResponseData['body'], maxEventBytes: number, onData: (data: string) => void): Promise<StreamEnd> {
  let terminal = false;
  let error: UpstreamFailure | undefined;
  const outcome = await readSseEvents(body, maxEventBytes, (data) => {
    if (terminal || error !== undefined) return;
    onData(data);
    // Substring checks, no parse: a quote inside model text is escaped, so a delta can never match them.
    if (TERMINAL_EVENTS.some((marker) => data.includes(marker))) terminal = true;
    else if (data.includes('"type":"error"')) error = protocolFailure(200, false, `upstream stream error event: ${data.slice(0, 200)}`);
  });
  if (error !== undefined) return error;
  if (outcome === 'too_large') return outcome;
  // A proxy in front of the upstream may still end the stream with [DONE]: the terminal event decides either way.
  return terminal ? 'done' : 'ended';
}
