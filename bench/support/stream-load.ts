// Closed-loop SSE load on undici: C clients each open one stream after another for a fixed time, timing the first
// byte of the first data event (TTFT) and the whole stream, and counting the events relayed. Never parses JSON.
import { Pool } from 'undici';
import { summarize, type Summary } from './stats.ts';
import { sleep } from './processes.ts';
import type { PreparedRequest } from './targets.ts';

export interface StreamLoadResult {
  /** From the first request to the end of the last stream. */
  durationS: number;
  /** Streams that ended with `data: [DONE]`. */
  completed: number;
  /** Streams that failed: a non-200, a socket error, or an end without [DONE]. */
  failed: number;
  /** Data events other than [DONE], from every stream. */
  chunks: number;
  chunksPerSecond: number;
  /** Time to the first byte of the first data event, ms (completed streams). */
  ttft: Summary;
  /** Time to the end of the stream, ms (completed streams). */
  total: Summary;
  statuses: Record<string, number>;
  errors: Record<string, number>;
}

const DONE = 'data: [DONE]\n\n';

export async function runStreamLoad(request: PreparedRequest, clients: number, durationMs: number, timeoutMs = 60_000): Promise<StreamLoadResult> {
  const pool = new Pool(request.origin, {
    connections: clients,
    pipelining: 1,
    connectTimeout: timeoutMs,
    headersTimeout: timeoutMs,
    bodyTimeout: timeoutMs,
    keepAliveTimeout: 30_000,
  });
  const ttfts: number[] = [];
  const totals: number[] = [];
  const statuses: Record<string, number> = {};
  const errors: Record<string, number> = {};
  let chunks = 0;
  let failed = 0;

  const oneStream = async (): Promise<void> => {
    const started = performance.now();
    try {
      const res = await pool.request({ path: request.path, method: request.method, headers: request.headers, body: request.body });
      statuses[res.statusCode] = (statuses[res.statusCode] ?? 0) + 1;
      if (res.statusCode !== 200) {
        await res.body.dump();
        failed++;
        return;
      }
      let firstByte = -1;
      let events = 0;
      let pendingNewline = false;
      let tail = '';
      res.body.setEncoding('utf8');
      for await (const text of res.body as AsyncIterable<string>) {
        if (firstByte < 0) firstByte = performance.now() - started;
        // Events end with a blank line; a "\n\n" may be split across two reads.
        let from = 0;
        if (pendingNewline && text.startsWith('\n')) {
          events++;
          from = 1;
        }
        for (let at = text.indexOf('\n\n', from); at !== -1; at = text.indexOf('\n\n', at + 2)) events++;
        pendingNewline = text.length > from && text.endsWith('\n') && !text.endsWith('\n\n');
        tail = (tail + text).slice(-DONE.length);
      }
      const done = tail === DONE;
      chunks += done ? events - 1 : events;
      if (!done) {
        failed++;
        return;
      }
      ttfts.push(firstByte);
      totals.push(performance.now() - started);
    } catch (err) {
      const code = String((err as { code?: unknown }).code ?? (err as Error).name);
      errors[code] = (errors[code] ?? 0) + 1;
      failed++;
      await sleep(10); // a refused connection must not turn the loop into a busy spin
    }
  };

  const started = performance.now();
  const stopAt = started + durationMs;
  const loop = async () => {
    while (performance.now() < stopAt) await oneStream();
  };
  try {
    await Promise.all(Array.from({ length: clients }, loop));
  } finally {
    await pool.destroy();
  }
  const durationS = (performance.now() - started) / 1000;
  return {
    durationS,
    completed: ttfts.length,
    failed,
    chunks,
    chunksPerSecond: chunks / durationS,
    ttft: summarize(ttfts),
    total: summarize(totals),
    statuses,
    errors,
  };
}
