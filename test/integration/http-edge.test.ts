// The ingress's HTTP edge against an in-process Spillway (ingress + worker + mock upstream, real Redis): what a client
// that sends no key, trickles its request, breaks HTTP framing, nests JSON too deep or sends the wrong content type
// gets back (always OpenAI's error shape), and that each request is logged and counted once.
import { connect, type Socket } from 'node:net';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { pino } from 'pino';
import { parseConfig } from '../../src/config/load.ts';
import { createMetrics, type Metrics } from '../../src/observability/metrics.ts';
import { newInstanceId } from '../../src/roles/context.ts';
import { startWorker } from '../../src/roles/worker.ts';
import { startIngress } from '../../src/roles/ingress.ts';
import { runShutdown, type ShutdownStep } from '../../src/roles/shutdown.ts';
import { startMockUpstream, type MockUpstream } from '../../src/mock-upstream/index.ts';
import { TENANT_KEY, testConfig } from '../support/spillway-cluster.ts';
import { uniquePrefix } from '../support/redis.ts';
import { waitFor } from '../support/wait.ts';

/** Short, so that the receive-timeout tests finish in seconds; ample for a local client sending a small request. */
const RECEIVE_TIMEOUT_MS = 1_000;
/** How long a test waits for an answer that should come at once (or after RECEIVE_TIMEOUT_MS): a deadline, not a measure. */
const ANSWER_DEADLINE_MS = 10_000;

interface LogLine {
  msg: string;
  route?: string;
  status?: number;
}

const logLines: LogLine[] = [];
const logger = pino(
  { level: 'info' },
  new Writable({
    write(chunk: Buffer, _encoding, callback) {
      for (const line of chunk.toString('utf8').split('\n')) if (line !== '') logLines.push(JSON.parse(line) as LogLine);
      callback();
    },
  }),
);

let mock: MockUpstream;
let metrics: Metrics;
let baseUrl: string;
let port: number;
const steps: ShutdownStep[] = [];

beforeAll(async () => {
  mock = await startMockUpstream();
  const config = parseConfig(
    testConfig(inject('redisUrl'), uniquePrefix('edge'), 0, mock.url, {
      server: { requestReceiveTimeoutMs: RECEIVE_TIMEOUT_MS, headersTimeoutMs: RECEIVE_TIMEOUT_MS },
    }),
  );
  metrics = createMetrics({ defaultMetrics: false });
  const ctx = { config, logger, metrics, instanceId: newInstanceId() };
  steps.push(...(await startWorker(ctx)).steps);
  const ingress = await startIngress(ctx);
  steps.unshift(...ingress.steps);
  baseUrl = ingress.url;
  port = Number(new URL(baseUrl).port);
});

afterAll(async () => {
  await runShutdown(steps, logger);
  await mock?.close();
});

interface RawAnswer {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/**
 * Opens a raw connection, lets `send` write to it, and resolves with the answer once the server closes the
 * connection; rejects if it has not closed it within the deadline.
 */
async function rawExchange(send: (socket: Socket) => void): Promise<RawAnswer> {
  const socket = connect(port, '127.0.0.1');
  const received: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => received.push(chunk));
  // The server may close while this side still writes (EPIPE): the answer already read is what matters.
  socket.on('error', () => undefined);
  await new Promise<void>((resolve) => socket.once('connect', resolve));
  send(socket);
  let timer: NodeJS.Timeout | undefined;
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once('close', () => resolve());
      timer = setTimeout(() => reject(new Error('the server neither answered nor closed the connection in time')), ANSWER_DEADLINE_MS);
    });
  } finally {
    clearTimeout(timer);
    socket.destroy();
  }
  return parseAnswer(Buffer.concat(received).toString('utf8'));
}

function parseAnswer(text: string): RawAnswer {
  const end = text.indexOf('\r\n\r\n');
  expect(end, `no complete HTTP answer in ${JSON.stringify(text.slice(0, 200))}`).toBeGreaterThan(0);
  const [statusLine = '', ...headerLines] = text.slice(0, end).split('\r\n');
  const headers = Object.fromEntries(headerLines.map((line) => [line.slice(0, line.indexOf(':')).toLowerCase(), line.slice(line.indexOf(':') + 1).trim()]));
  return { status: Number(statusLine.split(' ')[1]), headers, body: text.slice(end + 4) };
}

function expectOpenAIError(body: unknown, code: string): void {
  expect(body).toEqual({ error: { message: expect.any(String), type: expect.any(String), param: null, code } });
}

const CHAT_HEAD = (extra: string): string =>
  `POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n${extra}\r\n`;

describe('unauthenticated and slow clients', () => {
  it('a request without a key gets its 401 before its body is read, and its connection is closed', async () => {
    // Declared within the body limit, but only the first 8 KiB are ever sent.
    const answer = await rawExchange((socket) => {
      socket.write(CHAT_HEAD('Content-Length: 200000\r\n'));
      socket.write('{"model":"gpt-4o-mini","messages":[{"role":"user","content":"' + 'x'.repeat(8 * 1024));
    });
    expect(answer.status).toBe(401);
    expect(answer.headers.connection).toBe('close');
    expectOpenAIError(JSON.parse(answer.body), 'missing_api_key');
  });

  it('a request with a wrong key gets its 401 before its body is read', async () => {
    const answer = await rawExchange((socket) => {
      socket.write(CHAT_HEAD('Authorization: Bearer sk-not-a-tenant-key\r\nContent-Length: 200000\r\n'));
      socket.write('{"model":');
    });
    expect(answer.status).toBe(401);
    expectOpenAIError(JSON.parse(answer.body), 'invalid_api_key');
  });

  it('a body that stops arriving is cut by the receive timeout with a 408 in OpenAI shape', async () => {
    const answer = await rawExchange((socket) => {
      socket.write(CHAT_HEAD(`Authorization: Bearer ${TENANT_KEY}\r\nContent-Length: 200000\r\n`));
      socket.write('{"model":"gpt-4o-mini","messages":[');
    });
    expect(answer.status).toBe(408);
    expect(answer.headers.connection).toBe('close');
    expectOpenAIError(JSON.parse(answer.body), 'request_timeout');
  });

  it('the receive timeout bounds receiving the request only: a slow answer and a long stream are not cut', async () => {
    const chat = (stream: boolean, headers: Record<string, string>): Promise<Response> =>
      fetch(`${baseUrl}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${TENANT_KEY}`, 'content-type': 'application/json', ...headers },
        body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }], stream }),
      });
    // Both outlast the timeout plus Node's check interval (1 s): a cut, if the timeout covered them, would show.
    const slowJson = chat(false, { 'x-mock-latency-ms': String(2.5 * RECEIVE_TIMEOUT_MS) });
    const longStream = chat(true, { 'x-mock-chunks': '5', 'x-mock-chunk-delay-ms': String(RECEIVE_TIMEOUT_MS / 2) });
    const [json, stream] = await Promise.all([slowJson, longStream]);
    expect(json.status).toBe(200);
    expect(await json.json()).toMatchObject({ object: 'chat.completion' });
    expect(stream.status).toBe(200);
    expect(await stream.text()).toMatch(/data: \[DONE\]\n\n$/);
  });

  it('headers that stop arriving are cut by the headers timeout with a 408', async () => {
    const answer = await rawExchange((socket) => socket.write('POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n'));
    expect(answer.status).toBe(408);
    expectOpenAIError(JSON.parse(answer.body), 'request_timeout');
  });
});

describe('requests Node or Fastify refuse before a route runs', () => {
  it('broken HTTP framing is a 400 in OpenAI shape, and the connection is closed', async () => {
    const answer = await rawExchange((socket) => socket.write(CHAT_HEAD('Content-Length: 5\r\nTransfer-Encoding: chunked\r\n') + 'hello'));
    expect(answer.status).toBe(400);
    expect(answer.headers.connection).toBe('close');
    expectOpenAIError(JSON.parse(answer.body), 'malformed_request');
  });

  it('headers over 16 KiB are a 431 in OpenAI shape', async () => {
    const answer = await rawExchange((socket) => socket.write(CHAT_HEAD(`X-Padding: ${'p'.repeat(20 * 1024)}\r\nContent-Length: 0\r\n`)));
    expect(answer.status).toBe(431);
    expect(answer.headers['content-type']).toMatch(/^application\/json/);
    expectOpenAIError(JSON.parse(answer.body), 'headers_too_large');
  });

  it.each(['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/xml'])(
    'a %s body on a JSON endpoint is a 415 in OpenAI shape',
    async (contentType) => {
      const response = await fetch(`${baseUrl}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${TENANT_KEY}`, 'content-type': contentType },
        body: '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"x"}]}',
      });
      expect(response.status).toBe(415);
      expectOpenAIError(await response.json(), 'unsupported_media_type');
    },
  );

  it('a model name with a percent sign is looked up (404), not a server error', async () => {
    const response = await fetch(`${baseUrl}/v1/models/100%25-off`, { headers: { authorization: `Bearer ${TENANT_KEY}` } });
    expect(response.status).toBe(404);
    expect(await response.json()).toMatchObject({ error: { code: 'model_not_found', message: expect.stringContaining('100%-off') } });
  });

  it('a malformed percent-encoding in the URL is a 400 in OpenAI shape', async () => {
    const answer = await rawExchange((socket) => socket.write(`GET /v1/models/100% HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${TENANT_KEY}\r\nConnection: close\r\n\r\n`));
    expect(answer.status).toBe(400);
    expectOpenAIError(JSON.parse(answer.body), 'invalid_url');
  });
});

describe('JSON nesting limit (server.maxJsonDepth, default 128)', () => {
  /** A chat body whose deepest point is `depth` levels down, the outer object included. */
  function chatNested(depth: number): string {
    // outer object (1) + `x_nested` arrays (depth - 1)
    return `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"x"}],"x_nested":${'['.repeat(depth - 1)}${']'.repeat(depth - 1)}}`;
  }

  const post = (body: string): Promise<Response> =>
    fetch(`${baseUrl}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TENANT_KEY}`, 'content-type': 'application/json' },
      body,
    });

  it('a body nested exactly to the limit is accepted and answered', async () => {
    const response = await post(chatNested(128));
    expect(response.status, await response.clone().text()).toBe(200);
    expect(await response.json()).toMatchObject({ object: 'chat.completion' });
  });

  it.each([129, 10_000])('a body nested %i levels deep is a 400 invalid_json naming the limit, not a retryable 503', async (depth) => {
    const response = await post(chatNested(depth));
    expect(response.status).toBe(400);
    expect(response.headers.get('retry-after')).toBeNull();
    const body = (await response.json()) as { error: { message: string } };
    expectOpenAIError(body, 'invalid_json');
    expect(body.error.message).toContain('128');
  });

  it('brackets inside strings do not count', async () => {
    const response = await post(`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"${'['.repeat(500)}\\"${'{'.repeat(500)}"}]}`);
    expect(response.status).toBe(200);
  });

  it('prototype poisoning is still refused', async () => {
    const response = await post('{"model":"gpt-4o-mini","messages":[{"role":"user","content":"x"}],"__proto__":{"polluted":true}}');
    expect(response.status).toBe(400);
    expectOpenAIError(await response.json(), 'invalid_json');
  });
});

describe('access log and request metrics', () => {
  const completed = (route: string): LogLine[] => logLines.filter((l) => l.msg === 'request completed' && l.route === route);

  async function observations(route: string): Promise<number> {
    const { values } = await metrics.httpRequestDuration.get();
    return values.filter((v) => v.metricName === 'spillway_http_request_duration_seconds_count' && v.labels.route === route).reduce((sum, v) => sum + v.value, 0);
  }

  it('a streamed request is logged once and observed once', async () => {
    const before = { lines: completed('/v1/chat/completions').length, observed: await observations('/v1/chat/completions') };
    const models = { lines: completed('/v1/models').length };
    const response = await fetch(`${baseUrl}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TENANT_KEY}`, 'content-type': 'application/json', 'x-mock-chunks': '3' },
      body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }], stream: true }),
    });
    expect(response.headers.get('content-type')).toMatch(/^text\/event-stream/);
    expect(await response.text()).toContain('data: [DONE]');
    // Both records of the stream (the route's, and the hook's if it wrongly fired) happen before the ingress reads
    // another request: once a later request is logged, the stream's count is final.
    await fetch(`${baseUrl}/v1/models`, { headers: { authorization: `Bearer ${TENANT_KEY}` } });
    await waitFor(() => completed('/v1/models').length > models.lines, { what: 'the later request to be logged' });

    expect(completed('/v1/chat/completions').length - before.lines).toBe(1);
    expect(completed('/v1/chat/completions').at(-1)).toMatchObject({ status: 200 });
    expect((await observations('/v1/chat/completions')) - before.observed).toBe(1);
  });

  it('a JSON answer and an error answered by Fastify are each logged once', async () => {
    const before = completed('/v1/models').length;
    await fetch(`${baseUrl}/v1/models`, { headers: { authorization: `Bearer ${TENANT_KEY}` } });
    await fetch(`${baseUrl}/v1/models`);
    await waitFor(() => completed('/v1/models').length >= before + 2, { what: 'both requests to be logged' });
    await fetch(`${baseUrl}/health`);
    await waitFor(() => completed('/health').length > 0, { what: 'the later request to be logged' });
    expect(completed('/v1/models').slice(before).map((l) => l.status)).toEqual([200, 401]);
  });
});
