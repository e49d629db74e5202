// The 2xx answers of the mock, per format: OpenAI's generations and embeddings, Azure's (OpenAI's with content-filter
// verdicts), Anthropic's messages; JSON or streamed, with the stream faults of x-mock-fault applied.
// Reads the request when built (a bad body is a BadRequest before any injected failure); writes only when called.
import type { ServerResponse } from 'node:http';
import * as bodies from './bodies.ts';
import type { RequestBody } from './bodies.ts';
import type { Behaviour } from './behaviour.ts';
import { pump, type Cut, type Exchange } from './pump.ts';
import type { LlmRoute } from './formats.ts';
import { withFilterChunk, withFilterResults } from './azure.ts';
import { anthropicBody, anthropicFrames, MESSAGE_STOP, readAnthropicRequest, withStreamError } from './anthropic.ts';
import { responsesResponder } from './responses.ts';

export type Responder = (ex: Exchange) => void;

const SSE_HEADERS = { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache' };

/** `uid` is unique per request; each format prefixes it the way its provider's ids look. */
export function responderFor(llm: LlmRoute, b: Behaviour, body: RequestBody, uid: string): Responder {
  if (llm.format === 'anthropic') return anthropicResponder(b, body, uid);
  if (llm.endpoint === 'responses') return responsesResponder(b, body, uid);
  if (llm.endpoint === 'embeddings') {
    const request = bodies.readEmbeddings(body);
    return (ex) => sendJson(ex.res, bodies.embeddingsBody(request));
  }
  const kind = llm.endpoint;
  const g = bodies.readGeneration(kind, body, b.chunks, `${kind === 'chat' ? 'chatcmpl-' : 'cmpl-'}${uid}`);
  const azure = llm.format === 'azure';
  return (ex) => {
    if (g.stream) {
      if (b.fault === 'huge-event') return pump(ex, 200, SSE_HEADERS, bodies.hugeEventFrames(b.bodyBytes), 0);
      // Half the content chunks of every choice (after the role chunks, for chat): then a reset or a stall.
      const half = Math.max(1, g.choices * ((kind === 'chat' ? 1 : 0) + Math.floor(g.words / 2)));
      const frames = bodies.generationFrames(g);
      const withDone = b.fault === 'no-done' ? bodies.withoutDone(frames) : frames;
      return pump(ex, 200, SSE_HEADERS, azure ? withFilterChunk(withDone) : withDone, delayOf(b), cutOf(b, half));
    }
    const json = bodies.generationBody(g);
    writeJson(ex, azure && kind === 'chat' ? withFilterResults(json) : json, b.fault === 'reset-mid-stream');
  };
}

function anthropicResponder(b: Behaviour, body: RequestBody, uid: string): Responder {
  const g = readAnthropicRequest(body, b.chunks, `msg_${uid}`);
  return (ex) => {
    if (!g.stream) return writeJson(ex, anthropicBody(g), b.fault === 'reset-mid-stream');
    if (b.fault === 'huge-event') return pump(ex, 200, SSE_HEADERS, bodies.hugeEventFrames(b.bodyBytes), 0);
    // message_start, the text block's start and a ping, then half the words: then a reset, a stall or an error event.
    const half = 3 + Math.floor(g.words / 2);
    let frames: Iterable<string> = anthropicFrames(g);
    if (b.fault === 'no-done') frames = withoutMessageStop(frames);
    if (b.fault === 'stream-error') frames = withStreamError(frames, half);
    pump(ex, 200, SSE_HEADERS, frames[Symbol.iterator](), delayOf(b), cutOf(b, half));
  };
}

function* withoutMessageStop(frames: Iterable<string>): Generator<string, void, undefined> {
  for (const frame of frames) if (frame !== MESSAGE_STOP) yield frame;
}

function delayOf(b: Behaviour): number {
  return b.fault === 'slow-stream' ? Math.max(200, b.chunkDelayMs * 10) : b.chunkDelayMs;
}

function cutOf(b: Behaviour, half: number): Cut | undefined {
  if (b.fault === 'reset-mid-stream') return { after: half, action: 'reset' };
  if (b.fault === 'stall-mid-stream') return { after: half, action: 'stall', stallMs: b.stallMs };
  return undefined;
}

/** A JSON answer; `cut`: announce it whole, send half, then drop the connection (reset-mid-stream on a JSON answer). */
function writeJson(ex: Exchange, json: string, cut: boolean): void {
  if (!cut) return sendJson(ex.res, json);
  const bytes = Buffer.from(json);
  ex.res.writeHead(200, { 'content-type': 'application/json', 'content-length': bytes.length });
  ex.res.write(bytes.subarray(0, bytes.length >> 1), () => ex.res.destroy());
}

function sendJson(res: ServerResponse, json: string): void {
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(json) });
  res.end(json);
}
