// A real HTTP proxy in front of an upstream that records every request body it forwards: tests read what a provider
// was actually sent (e.g. that a second turn carries the first). Forwards bytes as they come, both ways.
import { createServer, request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface RecordedRequest {
  method: string;
  path: string;
  body: unknown;
}

export interface RecordingProxy {
  /** The proxy's base URL with the target's path prefix (e.g. http://127.0.0.1:PORT/v1). */
  url: string;
  requests: RecordedRequest[];
  close(): Promise<void>;
}

/** `target`: the upstream's base URL, e.g. the mock's http://127.0.0.1:PORT/v1. */
export async function startRecordingProxy(target: string): Promise<RecordingProxy> {
  const upstream = new URL(target);
  const requests: RecordedRequest[] = [];
  const server = createServer((req, res) => {
    const parts: Buffer[] = [];
    req.on('data', (part: Buffer) => parts.push(part));
    req.on('end', () => {
      const text = Buffer.concat(parts).toString('utf8');
      let body: unknown = text;
      try {
        body = JSON.parse(text);
      } catch {
        // recorded as text
      }
      requests.push({ method: req.method ?? 'GET', path: req.url ?? '/', body });
      const out = httpRequest(
        { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: { ...req.headers, host: upstream.host } },
        (answer) => {
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
