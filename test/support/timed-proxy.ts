// A real HTTP proxy in front of an upstream that notes when each call arrived and when its answer's head went back,
// with the model it named and the status it got: tests check who reached a deployment when (e.g. nobody during a pause).
import { createServer, request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface TimedCall {
  /** Epoch ms the request arrived at the proxy. */
  arrivedAt: number;
  /** Epoch ms the upstream's response head was passed back (undefined while in flight). */
  answeredAt: number | undefined;
  status: number | undefined;
  /** The `model` of the JSON body. */
  model: string | undefined;
  path: string;
}

export interface TimedProxy {
  /** The proxy's base URL with the target's path prefix (e.g. http://127.0.0.1:PORT/v1). */
  url: string;
  calls: TimedCall[];
  close(): Promise<void>;
}

/** `target`: the upstream's base URL, e.g. the mock's http://127.0.0.1:PORT/v1. */
export async function startTimedProxy(target: string): Promise<TimedProxy> {
  const upstream = new URL(target);
  const calls: TimedCall[] = [];
  const server = createServer((req, res) => {
    const call: TimedCall = { arrivedAt: Date.now(), answeredAt: undefined, status: undefined, model: undefined, path: req.url ?? '/' };
    calls.push(call);
    const parts: Buffer[] = [];
    req.on('data', (part: Buffer) => parts.push(part));
    req.on('end', () => {
      const text = Buffer.concat(parts).toString('utf8');
      try {
        const model = (JSON.parse(text) as { model?: unknown }).model;
        if (typeof model === 'string') call.model = model;
      } catch {
        // not JSON: no model
      }
      const out = httpRequest({ host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: { ...req.headers, host: upstream.host } }, (answer) => {
        call.status = answer.statusCode;
        call.answeredAt = Date.now();
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      });
      out.on('error', () => res.destroy());
      res.on('close', () => out.destroy());
      out.end(text);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}${upstream.pathname.replace(/\/+$/, '')}`,
    calls,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
