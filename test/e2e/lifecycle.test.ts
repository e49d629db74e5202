// Process lifecycle: `spillway start` with no config answers the README's curl example; SIGTERM drains the ingress
// (in-flight answers finish, nothing new is accepted) and the worker (active jobs finish, nothing is re-run).
import { readFileSync } from 'node:fs';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterEach, describe, expect, inject, it } from 'vitest';
import OpenAI from 'openai';
import { startCluster, TENANT_KEY, type Cluster } from '../support/spillway-cluster.ts';
import { freePort } from '../support/ports.ts';
import { spawnSpillway, waitForReady, type SpillwayProcess } from '../support/processes.ts';
import { waitFor } from '../support/wait.ts';

const run = promisify(execFile);
let cluster: Cluster | undefined;
let started: SpillwayProcess | undefined;

afterEach(async () => {
  await cluster?.close();
  await started?.kill('SIGKILL');
  cluster = undefined;
  started = undefined;
});

/** The README's first curl example (the quick start), as a user would paste it. */
function readmeCurl(): string {
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
  const block = [...readme.matchAll(/```(?:bash|sh)\n([\s\S]*?)```/g)].map((m) => m[1]!).find((b) => b.includes('curl') && b.includes('/v1/chat/completions'));
  if (block === undefined) throw new Error('README.md has no curl example for /v1/chat/completions');
  return block.trim();
}

describe('zero configuration', () => {
  it('serves the README curl example with the built-in mock provider and the dev key', async () => {
    const port = await freePort();
    started = spawnSpillway(['start'], { PORT: String(port), REDIS_URL: inject('redisUrl'), SPILLWAY_CONFIG: '' });
    await waitForReady(`http://127.0.0.1:${port}`, started);
    const command = readmeCurl().replaceAll('localhost:8080', `127.0.0.1:${port}`);
    expect(command).toContain(`127.0.0.1:${port}`);
    const { stdout } = await run('bash', ['-c', `${command} --silent --show-error --fail-with-body --write-out '\\n%{http_code}'`]);
    const lines = stdout.trim().split('\n');
    expect(lines.at(-1)).toBe('200');
    expect(JSON.parse(lines.slice(0, -1).join('\n'))).toMatchObject({ object: 'chat.completion', choices: [{ message: { role: 'assistant' } }] });
  });
});

describe('graceful shutdown', () => {
  it('lets an in-flight request finish when the ingress gets SIGTERM, then refuses new ones and exits 0', async () => {
    cluster = await startCluster({ redisUrl: inject('redisUrl'), workers: 1 });
    const client = new OpenAI({ baseURL: `${cluster.baseUrl}/v1`, apiKey: TENANT_KEY, maxRetries: 0 });
    const inFlight = client.chat.completions.create(
      { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] },
      { headers: { 'x-mock-tag': 'drain-ingress', 'x-mock-latency-ms': '1500' } },
    );
    await waitFor(() => cluster!.mock.stats().byTag['drain-ingress']?.received === 1, { what: 'the upstream call' });
    cluster.ingress.child.kill('SIGTERM');
    await waitFor(async () => !(await fetch(`${cluster!.baseUrl}/ready`).then((r) => r.ok, () => false)), { what: '/ready to stop answering 200' });

    const late = await fetch(`${cluster.baseUrl}/v1/models`, { headers: { authorization: `Bearer ${TENANT_KEY}` } }).then(
      (r) => r.status,
      () => 'refused',
    );
    expect([503, 'refused']).toContain(late);

    expect((await inFlight).object).toBe('chat.completion');
    expect(await cluster.ingress.exited).toBe(0);
  });

  it('ends a stream that outlasts the drain with an SSE error event, logs it as a drain and cancels its job', async () => {
    cluster = await startCluster({ redisUrl: inject('redisUrl'), workers: 1, config: { server: { shutdownGraceMs: 1_500 } } });
    const client = new OpenAI({ baseURL: `${cluster.baseUrl}/v1`, apiKey: TENANT_KEY, maxRetries: 0 });
    // 100 chunks of 100 ms: far longer than the 1.5 s grace.
    const stream = await client.chat.completions.create(
      { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }], stream: true },
      { headers: { 'x-mock-tag': 'drain-stream', 'x-mock-chunks': '100', 'x-mock-chunk-delay-ms': '100' } },
    );
    const pieces: string[] = [];
    let failure: unknown;
    try {
      for await (const chunk of stream) {
        const piece = chunk.choices[0]?.delta.content;
        if (piece) pieces.push(piece.trim());
        if (pieces.length === 3) cluster.ingress.child.kill('SIGTERM');
      }
    } catch (err) {
      failure = err;
    }
    // Not a silent cut: the client is told, in the stream, why it ended.
    expect(failure).toBeInstanceOf(OpenAI.APIError);
    expect((failure as InstanceType<typeof OpenAI.APIError>).code).toBe('server_shutting_down');
    expect(pieces.length).toBeLessThan(100);
    expect(pieces).toEqual(Array.from({ length: pieces.length }, (_, i) => `tok${i + 1}`));
    await cluster.ingress.exited;
    expect(cluster.ingress.output()).toContain('"reason":"draining"');
    expect(cluster.ingress.output()).not.toContain('"reason":"client_closed"');
    await waitFor(() => cluster!.mock.stats().byTag['drain-stream']?.aborted === 1, { what: 'the upstream stream to be aborted' });
  });

  it('finishes an active job when the worker gets SIGTERM, without running it twice, and exits 0', async () => {
    cluster = await startCluster({ redisUrl: inject('redisUrl'), workers: 1 });
    const client = new OpenAI({ baseURL: `${cluster.baseUrl}/v1`, apiKey: TENANT_KEY, maxRetries: 0 });
    const inFlight = client.chat.completions.create(
      { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] },
      { headers: { 'x-mock-tag': 'drain-worker', 'x-mock-latency-ms': '1500' } },
    );
    await waitFor(() => cluster!.mock.stats().byTag['drain-worker']?.received === 1, { what: 'the upstream call' });
    cluster.workers[0]!.child.kill('SIGTERM');

    expect((await inFlight).object).toBe('chat.completion');
    expect(await cluster.workers[0]!.exited).toBe(0);
    expect(cluster.mock.stats().byTag['drain-worker']).toMatchObject({ received: 1, completed: 1, aborted: 0 });
  });
});
