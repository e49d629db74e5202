// Types for the part of autocannon 9 the benchmark uses (the package ships none): options in, result and events out.
// Declarations only; no runtime code.
declare module 'autocannon' {
  interface Options {
    url: string;
    method?: 'GET' | 'POST';
    headers?: Record<string, string>;
    body?: string;
    connections?: number;
    /** Seconds. */
    duration?: number;
    /** Requests in all; when set, `duration` is ignored and the run ends once every answer is in. */
    amount?: number;
    /** Seconds before a request counts as a timeout. */
    timeout?: number;
    pipelining?: number;
    /** Requests sent in turn; `setupRequest` may rewrite each one before it is sent (e.g. a body of its own). */
    requests?: Array<{ setupRequest?: (request: RequestParams) => RequestParams }>;
  }

  /** What setupRequest receives and returns. */
  interface RequestParams {
    method?: string;
    path?: string;
    headers?: Record<string, string>;
    body?: string;
  }

  interface Result {
    /** Seconds the run lasted. */
    duration: number;
    errors: number;
    timeouts: number;
    non2xx: number;
    totalCompletedRequests: number;
  }

  /** The run: awaitable for its result, and an EventEmitter (only the events used here are declared). */
  interface Instance extends PromiseLike<Result> {
    /** Every response, as it arrives: its status and its time in (fractional) milliseconds. */
    on(event: 'response', listener: (client: unknown, statusCode: number, resBytes: number, responseTimeMs: number) => void): void;
  }

  function autocannon(options: Options): Instance;
  export type { RequestParams };
  export default autocannon;
}
