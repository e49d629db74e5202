// Open-loop burst on undici: N requests sent at once, each on its own connection, every outcome counted
// (status, the caller's label for a refusal, timeouts, socket errors). Each request is bounded by its own timeout.
import { Pool } from 'undici';
import { summarize, type Summary } from './stats.ts';
import type { PreparedRequest } from './targets.ts';

export interface Refusal {
  status: number;
  retryAfter: string | undefined;
  body: string;
}

export interface BurstResult {
  sent: number;
  /** From the first request sent to the last one settled. */
  durationMs: number;
  ok: number;
  /** Non-200 answers, by the caller's label (default: the status). */
  refusals: Record<string, number>;
  /** Connect, headers or body timeouts. */
  timeouts: number;
  /** Other socket errors, by code. */
  errors: Record<string, number>;
  /** Latency of the 200s, ms. */
  latency: Summary;
}

export interface Burst {
  /** Requests settled so far (answered, timed out or failed). */
  settled(): number;
  done: Promise<BurstResult>;
}

const TIMEOUT_CODES = new Set(['UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT']);

export function startBurst(request: PreparedRequest, count: number, timeoutMs: number, label: (r: Refusal) => string = (r) => String(r.status)): Burst {
  const pool = new Pool(request.origin, {
    connections: count,
    pipelining: 1,
    connectTimeout: timeoutMs,
    headersTimeout: timeoutMs,
    bodyTimeout: timeoutMs,
  });
  const latencies: number[] = [];
  const refusals: Record<string, number> = {};
  const errors: Record<string, number> = {};
  let timeouts = 0;
  let settled = 0;
  let lastSettled = 0;
  const started = performance.now();

  const one = async (): Promise<void> => {
    const sentAt = performance.now();
    try {
      const res = await pool.request({ path: request.path, method: request.method, headers: request.headers, body: request.body });
      const body = await res.body.text();
      if (res.statusCode === 200) {
        latencies.push(performance.now() - sentAt);
      } else {
        const retryAfter = res.headers['retry-after'];
        const key = label({ status: res.statusCode, retryAfter: Array.isArray(retryAfter) ? retryAfter[0] : retryAfter, body });
        refusals[key] = (refusals[key] ?? 0) + 1;
      }
    } catch (err) {
      const code = String((err as { code?: unknown }).code ?? (err as Error).name);
      if (TIMEOUT_CODES.has(code)) timeouts++;
      else errors[code] = (errors[code] ?? 0) + 1;
    } finally {
      settled++;
      lastSettled = performance.now();
    }
  };

  const all: Promise<void>[] = [];
  for (let i = 0; i < count; i++) all.push(one());
  const done = Promise.all(all).then(async () => {
    await pool.destroy();
    return {
      sent: count,
      durationMs: lastSettled - started,
      ok: latencies.length,
      refusals,
      timeouts,
      errors,
      latency: summarize(latencies),
    };
  });
  return { settled: () => settled, done };
}
