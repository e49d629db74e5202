// A real HTTP proxy in front of an upstream that records every call it forwards: when it arrived, its body (and the
// `model` it named), and when its answer's head went back with which status. Tests read what a provider was actually
// sent (e.g. that a second turn carries the first) and who reached a deployment when (e.g. nobody during a pause).
// Forwards bytes as they come, both ways.
import { createServer, request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface RecordedRequest {
  method: string;
  path: string;
  /** The body, parsed when it is JSON, else its text (undefined until it has all arrived). */
  body: unknown;
  /** The `model` of a JSON body. */
  model: string | undefined;
  /** Epoch ms the request arrived at the proxy. */
  arrivedAt: number;
  /** Epoch ms the upstream's response head was passed back (undefined while in flight). */
  answeredAt: number | undefined;
  status: number | undefined;
}

export interface RecordingProxy {
  /** The proxy's base URL with the target's path prefix (e.g. http://127.0.0.1:PORT/v1). */
  url: string;
  /** Every call, in the order they arrived. */
  requests: RecordedRequest[];
  close(): Promise<void>;
}

/** `target`: the upstream's base URL, e.g. the mock's http://127.0.0.1:PORT/v1. */
export async function startRecordingProxy(target: string): Promise<RecordingProxy> {
  const upstream = new URL(target);
  const requests: RecordedRequest[] = [];
  const server = createServer((req, res) => {
    const call: RecordedRequest = { method: req.method ?? 'GET', path: req.url ?? '/', body: undefined, model: undefined, arrivedAt: Date.now(), answeredAt: undefined, status: undefined };
    requests.push(call);
    const parts: Buffer[] = [];
    req.on('data', (part: Buffer) => parts.push(part));
    req.on('end', () => {
      const text = Buffer.concat(parts).toString('utf8');
      call.body = text;
      try {
        call.body = JSON.parse(text) as unknown;
        const model = (call.body as { model?: unknown } | null)?.model;
        if (typeof model === 'string') call.model = model;
      } catch {
        // recorded as text
      }
      const out = httpRequest(
        { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: { ...req.headers, host: upstream.host } },
        (answer) => {
          call.status = answer.statusCode;
          call.answeredAt = Date.now();
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          answer.pipe(res);
          // An upstream that drops the connection mid-answer drops this one too, as a direct connection would.
          answer.on('close', () => {
            if (!answer.complete) res.destroy();
          });
        },
      );
      out.on('error', () => res.destroy());
      // A client that leaves mid-answer takes the upstream call with it, as a direct connection would.
      res.on('close', () => out.destroy());
      out.end(text);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}${upstream.pathname.replace(/\/+$/, '')}`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
