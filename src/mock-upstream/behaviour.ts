// Reads the per-request behaviour of the mock upstream from its x-mock-* headers (fault injection, latency).
// A malformed header is a 400 (BadRequest), never silently ignored.

import type { IncomingHttpHeaders } from 'node:http';
import { BadRequest } from './bodies.ts';

export type Fault =
  | 'hang'
  | 'reset'
  | 'reset-mid-stream'
  | 'slow-stream'
  | 'stall-mid-stream'
  | 'no-done'
  | 'huge-error'
  | 'non-json'
  | 'huge-event'
  | 'stream-error'
  | 'content-filter';

/** The server-wide settings a request's headers may override. */
export interface BehaviourDefaults {
  latencyMs: number;
  chunks: number;
  chunkDelayMs: number;
}

const FAULTS: ReadonlySet<string> = new Set<Fault>([
  'hang',
  'reset',
  'reset-mid-stream',
  'slow-stream',
  'stall-mid-stream',
  'no-done',
  'huge-error',
  'non-json',
  'huge-event',
  'stream-error',
  'content-filter',
]);
/** Default size of the bodies of huge-error, non-json and huge-event. */
export const DEFAULT_BODY_BYTES = 1024 * 1024;
const MAX_CHUNKS = 100_000;
const DIGITS = /^\d{1,9}$/;

/** Per-request behaviour: the settings, overridden by the request's x-mock-* headers. */
export interface Behaviour extends BehaviourDefaults {
  status: number | undefined;
  retryAfter: number | undefined;
  failTimes: number | undefined;
  fault: Fault | undefined;
  /** stall-mid-stream: how long the stream stays silent; undefined: until the client leaves. */
  stallMs: number | undefined;
  /** Size of the body of huge-error, non-json and huge-event. */
  bodyBytes: number;
}

/**
 * x-mock-latency-ms, x-mock-chunks and x-mock-chunk-delay-ms override the options for one request. x-mock-status
 * (400-599) answers that error; x-mock-retry-after adds a Retry-After. x-mock-fail-times N with x-mock-tag T fails
 * only the first N requests of T (with x-mock-status, default 500). x-mock-fault: hang, reset, reset-mid-stream,
 * slow-stream (streams only); stall-mid-stream (streams: silent after half the content chunks for x-mock-stall-ms,
 * default until the client leaves, then the rest); no-done (streams: end cleanly without `[DONE]`); huge-error (the
 * error of x-mock-status, default 500, with a JSON body of x-mock-body-bytes, default 1 MiB); non-json (a 200
 * text/html body of x-mock-body-bytes); huge-event (streams: one event of x-mock-body-bytes, then `[DONE]`);
 * stream-error (Anthropic streams: half the answer, then an `event: error` overloaded_error); content-filter (the
 * 400 Azure answers when its content filter refuses a prompt; Anthropic's own 400 on the Messages path).
 * x-mock-gate G holds the answer until the test calls openGate(G).
 * A malformed value is a 400, never silently ignored: a typo must not pass a test.
 */
export function readBehaviour(h: IncomingHttpHeaders, d: BehaviourDefaults): Behaviour {
  const status = intHeader(h, 'x-mock-status', 0);
  if (status !== 0 && (status < 400 || status > 599)) throw new BadRequest('x-mock-status must be an error status, 400 to 599.');
  const fault = header(h, 'x-mock-fault');
  if (fault !== undefined && !FAULTS.has(fault)) throw new BadRequest(`x-mock-fault must be one of ${[...FAULTS].join(', ')}.`);
  const retryAfter = intHeader(h, 'x-mock-retry-after', -1);
  const failTimes = intHeader(h, 'x-mock-fail-times', -1);
  const stallMs = intHeader(h, 'x-mock-stall-ms', -1);
  return {
    latencyMs: intHeader(h, 'x-mock-latency-ms', d.latencyMs),
    chunks: intHeader(h, 'x-mock-chunks', d.chunks, MAX_CHUNKS),
    chunkDelayMs: intHeader(h, 'x-mock-chunk-delay-ms', d.chunkDelayMs),
    status: status === 0 ? undefined : status,
    retryAfter: retryAfter < 0 ? undefined : retryAfter,
    failTimes: failTimes < 0 ? undefined : failTimes,
    fault: fault as Fault | undefined,
    stallMs: stallMs < 0 ? undefined : stallMs,
    bodyBytes: intHeader(h, 'x-mock-body-bytes', DEFAULT_BODY_BYTES),
  };
}

export function header(h: IncomingHttpHeaders, name: string): string | undefined {
  const value = h[name];
  return Array.isArray(value) ? value[0] : value;
}

function intHeader(h: IncomingHttpHeaders, name: string, fallback: number, max = 1e9): number {
  const raw = header(h, name);
  if (raw === undefined) return fallback;
  if (!DIGITS.test(raw) || Number(raw) > max) throw new BadRequest(`${name} must be an integer from 0 to ${max}.`);
  return Number(raw);
}
