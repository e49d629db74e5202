// The mock upstream on plain node:http, for tests, the benchmark and zero-config mode: OpenAI's API, and by path
// Azure OpenAI's and Anthropic's. It must never send traffic anywhere (it only answers) and never keep working for a
// client that has gone away.

import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import * as bodies from './bodies.ts';
import { BadRequest } from './bodies.ts';
import type { RequestBody } from './bodies.ts';
import { header, readBehaviour } from './behaviour.ts';
import { pump, type Exchange } from './pump.ts';
import { credentialOf, errorBodyFor, isModelsPath, llmRoute, type Format, type LlmRoute } from './formats.ts';
import { contentFilterErrorBody } from './azure.ts';
import { responderFor } from './responders.ts';

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
  /** When set, requests must carry it (`Authorization: Bearer`, Azure's `api-key`, Anthropic's `x-api-key`), else 401. */
  apiKey?: string;
  /**
   * Default unlimited: a request whose prompt (its messages, prompt or input, as JSON) is longer than this many
   * characters gets the provider's context-length 400 (OpenAI's `context_length_exceeded`, Anthropic's "prompt is too long").
   */
  maxPromptChars?: number;
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
  /** GET requests to the model listings: health probes. */
  probes: number;
  byTag: Record<string, { received: number; completed: number; aborted: number }>;
}

/** A server-wide outage: every request but /_mock/* answers this status, or has its connection reset. */
export type Outage = { status: number } | 'reset';

export interface MockUpstream {
  /** The OpenAI base URL, e.g. http://127.0.0.1:PORT/v1 (Anthropic's too: it appends /messages). */
  readonly url: string;
  /** http://127.0.0.1:PORT: an Azure OpenAI resource endpoint (deployments under /openai/deployments/). */
  readonly origin: string;
  readonly port: number;
  stats(): MockStats;
  /** Zeroes the counters and fail-times memory; requests still in flight at that moment are no longer counted. */
  reset(): void;
  /** Releases every request held by `x-mock-gate: <name>`, and lets later ones through at once. */
  openGate(name: string): void;
  /** Starts (or, with undefined, ends) a server-wide outage: a dead deployment, health probes included. */
  setOutage(outage: Outage | undefined): void;
  /** Idempotent; ends hanging and streaming responses. */
  close(): Promise<void>;
}

interface TagCounters { received: number; completed: number; aborted: number }

const MAX_BODY_CHARS = 16 * 1024 * 1024; // counted in decoded characters, close enough for a mock
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
  readonly apiKey: string | undefined;
  readonly maxPromptChars: number | undefined;
  /** x-mock-gate: names opened so far, and the requests each closed one holds. */
  readonly openGates: Set<string>;
  readonly gateWaiters: Map<string, Set<() => void>>;
  outage: Outage | undefined;
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
    counters: { received: 0, completed: 0, aborted: 0, rejected: 0, inFlight: 0, maxInFlight: 0, probes: 0 },
    byTag: new Map(),
    failuresServed: new Map(),
    epoch: 0,
    seq: 0,
    idPrefix: randomBytes(6).toString('hex'),
    modelsList: bodies.modelsListBody(),
    apiKey: options.apiKey,
    maxPromptChars: options.maxPromptChars === undefined ? undefined : nonNegative(options.maxPromptChars, 0, 'maxPromptChars'),
    openGates: new Set(),
    gateWaiters: new Map(),
    outage: undefined,
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
  const origin = `http://${urlHost(address)}:${port}`;
  return {
    url: `${origin}/v1`,
    origin,
    port,
    stats: () => snapshot(state),
    reset: () => resetState(state),
    openGate: (name) => {
      state.openGates.add(name);
      const waiters = state.gateWaiters.get(name);
      state.gateWaiters.delete(name);
      for (const release of waiters ?? []) release();
    },
    setOutage: (outage) => {
      state.outage = outage;
    },
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
  c.received = c.completed = c.aborted = c.rejected = c.probes = 0;
  c.maxInFlight = c.inFlight;
  s.byTag = new Map();
  s.failuresServed = new Map();
  s.epoch++;
}

function route(s: State, req: IncomingMessage, res: ServerResponse): void {
  const url = req.url ?? '/';
  const q = url.indexOf('?');
  const path = q === -1 ? url : url.slice(0, q);
  if (req.method === 'GET' && path === '/_mock/stats') return sendJson(res, 200, JSON.stringify(snapshot(s)));
  if (req.method === 'POST' && path === '/_mock/reset') {
    resetState(s);
    return void res.writeHead(204).end();
  }
  const llm = req.method === 'POST' ? llmRoute(path, new URLSearchParams(q === -1 ? '' : url.slice(q + 1))) : undefined;
  // Azure answers a deployment path without api-version as an unknown resource.
  if (llm === 'no-api-version') return sendJson(res, 404, JSON.stringify({ error: { code: '404', message: 'Resource not found' } }));
  if (llm !== undefined) return admit(s, req, res, llm);
  if (req.method === 'GET' && isModelsPath(path)) {
    s.counters.probes++;
    if (s.outage !== undefined) return failAll(s, res, 'openai');
    if (!authorised(s, req, res, 'any')) return;
    if (path === '/v1/models' || path === '/openai/models') return sendJson(res, 200, s.modelsList);
    const id = decodePathSegment(path.slice('/v1/models/'.length));
    const model = bodies.modelBody(id);
    if (model !== undefined) return sendJson(res, 200, model);
    return sendError(res, 404, `The model '${id}' does not exist or you do not have access to it.`, null, 'model_not_found');
  }
  sendError(res, 404, `Invalid URL (${req.method ?? 'GET'} ${path})`);
}

/** Counts the request, applies maxConcurrency, then reads and answers it. */
function admit(s: State, req: IncomingMessage, res: ServerResponse, llm: LlmRoute): void {
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
    return sendError(res, 429, 'Rate limit reached for requests (mock upstream maxConcurrency).', null, undefined, llm.format);
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
  if (!authorised(s, req, res, llm.format)) return;
  if (llm.format === 'anthropic' && req.headers['anthropic-version'] === undefined) {
    return sendError(res, 400, 'anthropic-version: header is required', null, undefined, 'anthropic');
  }
  let text = '';
  let size = 0;
  req.setEncoding('utf8');
  req.on('data', (part: string) => {
    size += part.length;
    if (size <= MAX_BODY_CHARS) text += part;
  });
  req.on('end', () => {
    if (ex.closed) return;
    if (size > MAX_BODY_CHARS) return sendError(res, 413, 'Request body too large.', null, undefined, llm.format);
    try {
      answer(s, ex, req.headers, llm, bodies.parseRequestBody(text, llm.deployment), tag);
    } catch (err) {
      if (!(err instanceof BadRequest)) throw err;
      sendError(res, 400, err.message, err.param, undefined, llm.format);
    }
  });
  // An aborted upload: the response's 'close' counts it.
  req.on('error', () => undefined);
}

function answer(s: State, ex: Exchange, headers: IncomingHttpHeaders, llm: LlmRoute, body: RequestBody, tag: string | undefined): void {
  const b = readBehaviour(headers, s.settings);
  // The whole body is validated before any injected failure, as a provider would.
  const respond = responderFor(llm, b, body, `${s.idPrefix}${(s.seq++).toString(36)}`);
  if (s.maxPromptChars !== undefined && promptChars(body) > s.maxPromptChars) return sendContextLengthError(ex.res, llm.format, s.maxPromptChars);
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
    if (s.outage !== undefined) return failAll(s, ex.res, llm.format);
    if (status !== undefined) {
      if (b.retryAfter !== undefined) ex.res.setHeader('retry-after', String(b.retryAfter));
      // No content-length: the reader finds out the size only by reading.
      if (b.fault === 'huge-error') return pump(ex, status, JSON_HEADERS, bodies.hugeErrorPieces(status, b.bodyBytes), 0);
      return sendError(ex.res, status, `Mock upstream error ${status} (injected by x-mock headers).`, null, undefined, llm.format);
    }
    if (b.fault === 'reset') return void ex.res.destroy();
    if (b.fault === 'non-json') return pump(ex, 200, HTML_HEADERS, bodies.paddedPieces('<html><body>', '</body></html>', b.bodyBytes), 0);
    if (b.fault === 'content-filter') {
      if (llm.format === 'anthropic') return sendError(ex.res, 400, 'Output blocked by content filtering policy', null, undefined, 'anthropic');
      return sendJson(ex.res, 400, contentFilterErrorBody());
    }
    respond(ex);
  };
  const go = (): void => {
    if (ex.closed) return;
    if (b.latencyMs > 0) ex.timer = setTimeout(act, b.latencyMs);
    else act();
  };
  // x-mock-gate holds the answer until the test opens the gate: a call kept in flight for exactly as long as needed.
  const gate = header(headers, 'x-mock-gate');
  if (gate === undefined || s.openGates.has(gate)) return go();
  let waiters = s.gateWaiters.get(gate);
  if (waiters === undefined) s.gateWaiters.set(gate, (waiters = new Set()));
  waiters.add(go);
  ex.res.on('close', () => waiters.delete(go));
}

/** The outage answer: the configured status in the request's format, or a reset connection. */
function failAll(s: State, res: ServerResponse, format: Format): void {
  const outage = s.outage;
  if (outage === 'reset' || outage === undefined) return void res.destroy();
  sendError(res, outage.status, `Mock upstream outage (${outage.status}).`, null, undefined, format);
}

function authorised(s: State, req: IncomingMessage, res: ServerResponse, format: Format | 'any'): boolean {
  if (s.apiKey === undefined || credentialOf(format, req.headers) === s.apiKey) return true;
  const missing = credentialOf(format, req.headers) === undefined;
  const message = missing ? "You didn't provide an API key." : 'Incorrect API key provided.';
  sendError(res, 401, message, null, 'invalid_api_key', format === 'any' ? 'openai' : format);
  return false;
}

/** The size a context window is checked against: the prompt's JSON, in characters. */
function promptChars(body: RequestBody): number {
  return JSON.stringify(body.messages ?? body.prompt ?? body.input ?? '').length;
}

/** What each provider answers to a prompt longer than the model's context window: a 400 the client could act on. */
function sendContextLengthError(res: ServerResponse, format: Format, max: number): void {
  if (format === 'anthropic') return sendError(res, 400, `prompt is too long: more than ${max} characters > ${max} maximum`, null, undefined, 'anthropic');
  sendError(res, 400, `This model's maximum context length is ${max} characters. Please reduce the length of the messages.`, 'messages', 'context_length_exceeded', format);
}

function sendJson(res: ServerResponse, status: number, json: string): void {
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(json) });
  res.end(json);
}

function sendError(res: ServerResponse, status: number, message: string, param: string | null = null, code?: string | null, format: Format = 'openai'): void {
  sendJson(res, status, errorBodyFor(format, status, message, param, code));
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
