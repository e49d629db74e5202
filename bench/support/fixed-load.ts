// Closed-loop HTTP load with autocannon (as a library): C keep-alive connections, a fixed number of requests sized from a
// warm-up to last about the wanted time; every 2xx latency is kept (exact percentiles). Non-streaming only.
import autocannon, { type RequestParams } from 'autocannon';
import { summarize, type Summary } from './stats.ts';
import type { PreparedRequest } from './targets.ts';

export interface FixedLoadResult {
  durationS: number;
  /** 2xx responses. */
  ok: number;
  /** 2xx responses per second over the run. */
  rps: number;
  /** Latency of the 2xx responses, ms. */
  latency: Summary;
  /** Non-2xx responses, socket errors and timeouts together. */
  failed: number;
  statuses: Record<string, number>;
  errors: number;
  timeouts: number;
}

/** Replaced, in a request body that carries it, by a number unique to each request of the run. */
export const UNIQUE_MARK = '{{n}}';

/** autocannon's setupRequest: the body with UNIQUE_MARK replaced by the next number. */
function numbered(body: string): (req: RequestParams) => RequestParams {
  const [head, tail] = body.split(UNIQUE_MARK) as [string, string];
  let n = 0;
  return (req) => ({ ...req, body: `${head}${++n}${tail}` });
}

/**
 * A fixed amount, not a fixed duration: at the end of a timed run autocannon destroys its sockets with requests still
 * in flight, which the server sees as clients disconnecting mid-request. A counted run ends only when every answer is in.
 */
export async function runFixedLoad(request: PreparedRequest, connections: number, amount: number, timeoutS = 30): Promise<FixedLoadResult> {
  const latencies: number[] = [];
  const statuses: Record<string, number> = {};
  const instance = autocannon({
    url: request.origin + request.path,
    method: request.method,
    headers: request.headers,
    body: request.body,
    connections,
    // A body carrying UNIQUE_MARK gets a number of its own there in every request (a prompt never seen before).
    ...(request.body.includes(UNIQUE_MARK) ? { requests: [{ setupRequest: numbered(request.body) }] } : {}),
    amount: Math.max(amount, connections),
    timeout: timeoutS,
    pipelining: 1,
  });
  const started = performance.now();
  let lastResponse = started;
  instance.on('response', (_client: unknown, statusCode: number, _bytes: number, responseTimeMs: number) => {
    lastResponse = performance.now();
    statuses[statusCode] = (statuses[statusCode] ?? 0) + 1;
    if (statusCode >= 200 && statusCode < 300) latencies.push(responseTimeMs);
  });
  const result = await instance;
  const ok = latencies.length;
  // autocannon notices the end of a counted run on its next 1 s tick: time the run to its last answer instead.
  const durationS = (lastResponse - started) / 1000;
  return {
    durationS,
    ok,
    rps: ok / durationS,
    latency: summarize(latencies),
    failed: result.non2xx + result.errors,
    statuses,
    errors: result.errors,
    timeouts: result.timeouts,
  };
}

/** Warm-up (JIT, pools, connections); returns the amount of requests that should take about `durationMs` at its rate. */
export async function warmUp(request: PreparedRequest, connections: number, durationMs: number): Promise<number> {
  const warm = await runFixedLoad(request, connections, Math.max(500, connections * 20));
  const rate = Number.isFinite(warm.rps) && warm.rps > 0 ? warm.rps : 100;
  return Math.max(connections * 10, Math.round((rate * durationMs) / 1000));
}
