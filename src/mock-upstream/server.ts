// The mock OpenAI-compatible upstream on plain node:http, for tests, the benchmark and zero-config mode.
// It must never send traffic anywhere (it only answers) and never keep working for a client that has gone away.

import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import * as bodies from './bodies.ts';
import { BadRequest } from './bodies.ts';
import type { GenerationKind, RequestBody } from './bodies.ts';
import { header, readBehaviour, type Behaviour } from './behaviour.ts';
import { pump, type Cut, type Exchange } from './pump.ts';

export interface MockUpstreamOptions {
  /** Default '127.0.0.1'. */
  host?: string;
  /** Default 0: an ephemeral port. */
  port?: number;
  /** Default 0: delay before the response (non-stream) or before the first chunk (stream). */
  latencyMs?: number;
  /** Default 8: content chunks of a stream, and words of a non-stream answer. */
  chunks?: number;
  /** Default 0: delay between stream chunks. */
  chunkDelayMs?: number;
  /** Default unlimited: requests beyond this many in flight get 429 + Retry-After, like a provider's rate limit. */
  maxConcurrency?: number;
  /** Default 1: the Retry-After of those 429s. */
  retryAfterSeconds?: number;
  /** When set, /v1 requests must carry `Authorization: Bearer <apiKey>`, else 401. */
  apiKey?: string;
}

/**
 * Counts of the POST LLM endpoints only. Every received request ends up completed (a response fully written,
 * error statuses included), aborted (the connection closed first: a client that left, or an injected reset)
 * or rejected (the maxConcurrency 429), or is still in flight.
 */
export interface MockStats {
  received: number;
  completed: number;
  aborted: number;
  rejected: number;
  inFlight: number;
  maxInFlight: number;
  byTag: Record<string, { received: number; completed: number; aborted: number }>;
}

export interface MockUpstream {
  /** The OpenAI base URL, e.g. http://127.0.0.1:PORT/v1. */
  readonly url: string;
  readonly port: number;
  stats(): MockStats;
  /** Zeroes the counters and fail-times memory; requests still in flight at that moment are no longer counted. */
  reset(): void;
  /** Idempotent; ends hanging and streaming responses. */
  close(): Promise<void>;
}

type Endpoint = GenerationKind | 'embeddings';
interface TagCounters { received: number; completed: number; aborted: number }

const ENDPOINTS = new Map<string, Endpoint>([
  ['/v1/chat/completions', 'chat'],
  ['/v1/completions', 'completions'],
  ['/v1/embeddings', 'embeddings'],
]);
const MAX_BODY_CHARS = 16 * 1024 * 1024; // counted in decoded characters, close enough for a mock
const SSE_HEADERS = { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache' };
const JSON_HEADERS = { 'content-type': 'application/json' };
const HTML_HEADERS = { 'content-type': 'text/html; charset=utf-8' };

type Settings = Required<Pick<MockUpstreamOptions, 'latencyMs' | 'chunks' | 'chunkDelayMs' | 'maxConcurrency' | 'retryAfterSeconds'>>;

interface State {
  readonly settings: Settings;
  readonly counters: Omit<MockStats, 'byTag'>;
  byTag: Map<string, TagCounters>;
  failuresServed: Map<string, number>;
  /** Bumped by reset(): a request admitted in an older epoch is no longer counted when it ends. */
  epoch: number;
  seq: number;
  readonly idPrefix: string;
  readonly modelsList: string;
  readonly expectedAuth: string | undefined;
}

export async function startMockUpstream(options: MockUpstreamOptions = {}): Promise<MockUpstream> {
  const state: State = {
    settings: {
      latencyMs: nonNegative(options.latencyMs, 0, 'latencyMs'),
      chunks: nonNegative(options.chunks, 8, 'chunks'),
      chunkDelayMs: nonNegative(options.chunkDelayMs, 0, 'chunkDelayMs'),
      maxConcurrency: nonNegative(options.maxConcurrency, Number.POSITIVE_INFINITY, 'maxConcurrency'),
      retryAfterSeconds: nonNegative(options.retryAfterSeconds, 1, 'retryAfterSeconds'),
    },
    counters: { received: 0, completed: 0, aborted: 0, rejected: 0, inFlight: 0, maxInFlight: 0 },
    byTag: new Map(),
    failuresServed: new Map(),
    epoch: 0,
    seq: 0,
    idPrefix: randomBytes(6).toString('hex'),
    modelsList: bodies.modelsListBody(),
    expectedAuth: options.apiKey === undefined ? undefined : `Bearer ${options.apiKey}`,
  };
  const server = createServer({ noDelay: true }, (req, res) => route(state, req, res));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { address, port } = server.address() as AddressInfo;
  let closing: Promise<void> | undefined;
  return {
    url: `http://${urlHost(address)}:${port}/v1`,
    port,
    stats: () => snapshot(state),
    reset: () => resetState(state),
    close: () => {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        // Destroys idle keep-alive sockets and hanging or streaming responses, whose 'close' clears their timers.
        server.closeAllConnections();
      });
      return closing;
    },
  };
}

function snapshot(s: State): MockStats {
  const byTag: MockStats['byTag'] = {};
  for (const [tag, c] of s.byTag) byTag[tag] = { ...c };
  return { ...s.counters, byTag };
}

function resetState(s: State): void {
  const c = s.counters;
  c.received = c.completed = c.aborted = c.rejected = 0;
  c.maxInFlight = c.inFlight;
  s.byTag = new Map();
  s.failuresServed = new Map();
  s.epoch++;
}

function route(s: State, req: IncomingMessage, res: ServerResponse): void {
  const url = req.url ?? '/';
  const q = url.indexOf('?');
  const path = q === -1 ? url : url.slice(0, q);
  const endpoint = ENDPOINTS.get(path);
  if (endpoint !== undefined && req.method === 'POST') return admit(s, req, res, endpoint);
  if (req.method === 'GET' && (path === '/v1/models' || path.startsWith('/v1/models/'))) {
    if (!authorised(s, req, res)) return;
    if (path === '/v1/models') return sendJson(res, 200, s.modelsList);
    const id = decodePathSegment(path.slice('/v1/models/'.length));
    const model = bodies.modelBody(id);
    if (model !== undefined) return sendJson(res, 200, model);
    return sendError(res, 404, `The model '${id}' does not exist or you do not have access to it.`, null, 'model_not_found');
  }
  if (req.method === 'GET' && path === '/_mock/stats') return sendJson(res, 200, JSON.stringify(snapshot(s)));
  if (req.method === 'POST' && path === '/_mock/reset') {
    resetState(s);
    return void res.writeHead(204).end();
  }
  sendError(res, 404, `Invalid URL (${req.method ?? 'GET'} ${path})`);
}

/** Counts the request, applies maxConcurrency, then reads and answers it. */
function admit(s: State, req: IncomingMessage, res: ServerResponse, endpoint: Endpoint): void {
  const c = s.counters;
  c.received++;
  const tag = header(req.headers, 'x-mock-tag');
  let tagged: TagCounters | undefined;
  if (tag !== undefined) {
    tagged = s.byTag.get(tag);
    if (tagged === undefined) s.byTag.set(tag, (tagged = { received: 0, completed: 0, aborted: 0 }));
    tagged.received++;
  }
  if (c.inFlight >= s.settings.maxConcurrency) {
    c.rejected++;
    res.setHeader('retry-after', String(s.settings.retryAfterSeconds));
    return sendError(res, 429, 'Rate limit reached for requests (mock upstream maxConcurrency).');
  }
  c.inFlight++;
  if (c.inFlight > c.maxInFlight) c.maxInFlight = c.inFlight;
  const ex: Exchange = { res, timer: undefined, closed: false };
  const epoch = s.epoch;
  res.on('close', () => {
    ex.closed = true;
    if (ex.timer !== undefined) clearTimeout(ex.timer);
    c.inFlight--;
    if (epoch !== s.epoch) return;
    const finished = res.writableFinished;
    if (finished) c.completed++;
    else c.aborted++;
    if (tagged !== undefined) {
      if (finished) tagged.completed++;
      else tagged.aborted++;
    }
  });
  if (!authorised(s, req, res)) return;
  let text = '';
  let size = 0;
  req.setEncoding('utf8');
  req.on('data', (part: string) => {
    size += part.length;
    if (size <= MAX_BODY_CHARS) text += part;
  });
  req.on('end', () => {
    if (ex.closed) return;
    if (size > MAX_BODY_CHARS) return sendError(res, 413, 'Request body too large.');
    try {
      answer(s, ex, req.headers, endpoint, bodies.parseRequestBody(text), tag);
    } catch (err) {
      if (!(err instanceof BadRequest)) throw err;
      sendError(res, 400, err.message, err.param);
    }
  });
  // An aborted upload: the response's 'close' counts it.
  req.on('error', () => undefined);
}

function answer(s: State, ex: Exchange, headers: IncomingHttpHeaders, endpoint: Endpoint, body: RequestBody, tag: string | undefined): void {
  const b = readBehaviour(headers, s.settings);
  // The whole body is validated before any injected failure, as a provider would.
  const respond = endpoint === 'embeddings' ? embeddingsResponder(body) : generationResponder(s, b, endpoint, body);
  let status = b.status;
  if (b.failTimes !== undefined) {
    if (tag === undefined) throw new BadRequest('x-mock-fail-times needs an x-mock-tag to count by.');
    const served = s.failuresServed.get(tag) ?? 0;
    if (served < b.failTimes) s.failuresServed.set(tag, served + 1);
    status = served < b.failTimes ? (status ?? 500) : undefined;
  } else if (b.fault === 'huge-error') {
    status ??= 500;
  }
  if (status === undefined && b.fault === 'hang') return;
  const act = (): void => {
    ex.timer = undefined;
    if (ex.closed) return;
    if (status !== undefined) {
      if (b.retryAfter !== undefined) ex.res.setHeader('retry-after', String(b.retryAfter));
      // No content-length: the reader finds out the size only by reading.
      if (b.fault === 'huge-error') return pump(ex, status, JSON_HEADERS, bodies.hugeErrorPieces(status, b.bodyBytes), 0);
      return sendError(ex.res, status, `Mock upstream error ${status} (injected by x-mock headers).`);
    }
    if (b.fault === 'reset') return void ex.res.destroy();
    if (b.fault === 'non-json') return pump(ex, 200, HTML_HEADERS, bodies.paddedPieces('<html><body>', '</body></html>', b.bodyBytes), 0);
    respond(ex);
  };
  if (b.latencyMs > 0) ex.timer = setTimeout(act, b.latencyMs);
  else act();
}

type Responder = (ex: Exchange) => void;

function generationResponder(s: State, b: Behaviour, kind: GenerationKind, body: RequestBody): Responder {
  const id = `${kind === 'chat' ? 'chatcmpl-' : 'cmpl-'}${s.idPrefix}${(s.seq++).toString(36)}`;
  const g = bodies.readGeneration(kind, body, b.chunks, id);
  return (ex) => {
    if (g.stream) {
      if (b.fault === 'huge-event') return pump(ex, 200, SSE_HEADERS, bodies.hugeEventFrames(b.bodyBytes), 0);
      const delay = b.fault === 'slow-stream' ? Math.max(200, b.chunkDelayMs * 10) : b.chunkDelayMs;
      // Half the content chunks of every choice (after the role chunks, for chat): then a reset or a stall.
      const half = Math.max(1, g.choices * ((kind === 'chat' ? 1 : 0) + Math.floor(g.words / 2)));
      let cut: Cut | undefined;
      if (b.fault === 'reset-mid-stream') cut = { after: half, action: 'reset' };
      if (b.fault === 'stall-mid-stream') cut = { after: half, action: 'stall', stallMs: b.stallMs };
      const frames = bodies.generationFrames(g);
      return pump(ex, 200, SSE_HEADERS, b.fault === 'no-done' ? bodies.withoutDone(frames) : frames, delay, cut);
    }
    const json = bodies.generationBody(g);
    if (b.fault !== 'reset-mid-stream') return sendJson(ex.res, 200, json);
    const bytes = Buffer.from(json);
    ex.res.writeHead(200, { 'content-type': 'application/json', 'content-length': bytes.length });
    ex.res.write(bytes.subarray(0, bytes.length >> 1), () => ex.res.destroy());
  };
}

function embeddingsResponder(body: RequestBody): Responder {
  const request = bodies.readEmbeddings(body);
  return (ex) => sendJson(ex.res, 200, bodies.embeddingsBody(request));
}

function authorised(s: State, req: IncomingMessage, res: ServerResponse): boolean {
  if (s.expectedAuth === undefined || req.headers.authorization === s.expectedAuth) return true;
  const missing = req.headers.authorization === undefined;
  sendError(res, 401, missing ? "You didn't provide an API key." : 'Incorrect API key provided.', null, 'invalid_api_key');
  return false;
}

function sendJson(res: ServerResponse, status: number, json: string): void {
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(json) });
  res.end(json);
}

function sendError(res: ServerResponse, status: number, message: string, param: string | null = null, code?: string | null): void {
  const kind = bodies.errorKindFor(status);
  sendJson(res, status, bodies.errorBody(message, kind.type, code === undefined ? kind.code : code, param));
}

function decodePathSegment(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}

function nonNegative(value: number | undefined, fallback: number, name: string): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value < 0) throw new RangeError(`mock upstream: ${name} must be a non-negative integer`);
  return value;
}

function urlHost(address: string): string {
  if (address === '0.0.0.0') return '127.0.0.1';
  if (address === '::') return '[::1]';
  return address.includes(':') ? `[${address}]` : address;
}
