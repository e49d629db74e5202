// The Batch API end to end: split-mode Spillway (1 ingress + 2 worker processes), real Redis, the mock upstream over
// HTTP, driven with the official `openai` npm client (and the Python one where installed). A 1,000-line batch
// completes with each custom_id answered by its own request's answer; bad lines fail validation by line number; lines
// the upstream refuses land in the error file; a batch survives SIGKILLed workers and a Redis restart (AOF, fsync
// always) with each line answered upstream exactly once; a second tenant gets 404; batch.* webhooks verify.
// Default: 400 lines in the durability run; SPILLWAY_LONG_TESTS=1: 2,000 lines and a second round of kills.
import { execFile, spawnSync } from 'node:child_process';
import { promisify } from 'node:util';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI, { NotFoundError, toFile } from 'openai';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { startCluster, TENANT_KEY, type Cluster } from '../support/spillway-cluster.ts';
import { startRedisServer, type RedisServer } from '../support/redis.ts';
import { startWebhookReceiver, type WebhookReceiver } from '../support/webhook-receiver.ts';
import { spawnSpillway, waitForLog, type SpillwayProcess } from '../support/processes.ts';
import { freePort } from '../support/ports.ts';
import { waitFor } from '../support/wait.ts';
import { calledTool, parseJsonl, toolLine } from '../integration/batches-harness-lines.ts';

const LONG = process.env.SPILLWAY_LONG_TESTS === '1';
const DURABLE_LINES = LONG ? 2_000 : 400;
const KILL_ROUNDS = LONG ? 2 : 1;
const OTHER_KEY = 'sk-test-globex-5555555555';
const hash = (key: string) => `sha256:${createHash('sha256').update(key).digest('hex')}`;

/** Providers on the test's mock: `held` lines wait upstream until the test opens the gate; `refusing` ones get a 400. */
function upstreams(mockUrl: string) {
  const provider = (id: string, headers: Record<string, string> = {}) => ({ id, type: 'openai', baseUrl: mockUrl, apiKey: 'sk-upstream-secret-value', timeoutMs: 60_000, headers });
  return {
    providers: [provider('mock'), provider('held', { 'x-mock-gate': 'held' }), provider('refusing', { 'x-mock-status': '400' })],
    models: [
      { name: 'gpt-4o-mini', route: [{ provider: 'mock', model: 'mock-chat' }] },
      { name: 'held', route: [{ provider: 'held', model: 'mock-chat' }] },
      { name: 'refused', route: [{ provider: 'refusing', model: 'mock-chat' }] },
    ],
  };
}

async function clusterOn(redisUrl: string, config: Record<string, unknown>, filesDir: string): Promise<Cluster> {
  const port = await freePort();
  return startCluster({
    redisUrl,
    workers: 2,
    mock: { port },
    config: {
      worker: { concurrency: 16, lockDurationMs: 1_500, stalledIntervalMs: 500, maxStalledCount: 20 },
      files: { dir: filesDir },
      ...upstreams(`http://127.0.0.1:${port}/v1`),
      ...config,
    },
  });
}

const clientOf = (cluster: Cluster, key = TENANT_KEY) => new OpenAI({ apiKey: key, baseURL: `${cluster.baseUrl}/v1`, maxRetries: 2 });

async function upload(client: OpenAI, lines: readonly string[]): Promise<string> {
  return (await client.files.create({ file: await toFile(Buffer.from(`${lines.join('\n')}\n`), 'input.jsonl'), purpose: 'batch' })).id;
}

async function until(client: OpenAI, batchId: string, statuses: readonly string[], timeoutMs = 30_000): Promise<OpenAI.Batches.Batch> {
  return waitFor(
    async () => {
      const batch = await client.batches.retrieve(batchId);
      return statuses.includes(batch.status) ? batch : undefined;
    },
    { timeoutMs, intervalMs: 100, what: `batch ${batchId} to reach ${statuses.join(' or ')}` },
  );
}

describe('a batch across crashes (own Redis with AOF)', () => {
  let redis: RedisServer;
  let dataDir: string;
  let filesDir: string;
  let cluster: Cluster;
  const extraWorkers: SpillwayProcess[] = [];

  beforeAll(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'spillway-aof-'));
    filesDir = mkdtempSync(join(tmpdir(), 'spillway-files-'));
    redis = await startRedisServer(['--appendonly', 'yes', '--appendfsync', 'always', '--dir', dataDir, '--maxmemory-policy', 'noeviction']);
    cluster = await clusterOn(redis.url, { batches: { pollMs: 50 } }, filesDir);
  }, 60_000);

  afterAll(async () => {
    await Promise.all(extraWorkers.map((w) => w.kill('SIGKILL')));
    await cluster?.close();
    await redis?.close();
    for (const dir of [dataDir, filesDir]) if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  /** SIGKILLs every worker running now and starts as many fresh ones (same config). */
  async function killAndReplaceWorkers(): Promise<void> {
    const running = [...cluster.workers, ...extraWorkers].filter((w) => w.child.exitCode === null && w.child.signalCode === null);
    await Promise.all(running.map((w) => w.kill('SIGKILL')));
    const fresh = running.map(() => spawnSpillway(['worker', '--config', cluster.configFile]));
    extraWorkers.push(...fresh);
    await Promise.all(fresh.map((w) => waitForLog(w, 'worker started')));
  }

  it('completes a 1,000-line batch: 1,000 output lines, each the answer to its own custom_id', async () => {
    const client = clientOf(cluster);
    const lines = Array.from({ length: 1_000 }, (_, i) => toolLine(i));
    const created = await client.batches.create({ input_file_id: await upload(client, lines), endpoint: '/v1/chat/completions', completion_window: '24h' });
    const done = await until(client, created.id, ['completed', 'failed', 'expired'], 45_000);
    expect(done.status).toBe('completed');
    expect(done.request_counts).toEqual({ total: 1_000, completed: 1_000, failed: 0 });
    const output = parseJsonl(await (await client.files.content(done.output_file_id!)).text());
    expect(output).toHaveLength(1_000);
    for (const line of output) expect(calledTool(line), line.custom_id).toBe(line.custom_id.replace('req-', 'answer_'));
    expect(new Set(output.map((l) => l.custom_id)).size).toBe(1_000);
  }, 60_000);

  it(`completes a ${DURABLE_LINES}-line batch through SIGKILLed workers and a Redis restart, each line answered upstream once`, async () => {
    const client = clientOf(cluster);
    cluster.mock.reset();
    // The first half answers at once; the second half is held upstream while everything dies around it, so no answer
    // can be in flight at the moment of a kill (a kill between an upstream answer and its record would run a line
    // twice, which no broker can rule out): the count below is then exact.
    const half = DURABLE_LINES / 2;
    const lines = Array.from({ length: DURABLE_LINES }, (_, i) => toolLine(i, i < half ? 'gpt-4o-mini' : 'held'));
    const created = await client.batches.create({ input_file_id: await upload(client, lines), endpoint: '/v1/chat/completions', completion_window: '24h' });
    // Recorded, not only answered: an answer still on its way to Redis when its worker dies is the one case above.
    await waitFor(async () => (await client.batches.retrieve(created.id)).request_counts?.completed === half && cluster.mock.stats().inFlight > 0, {
      timeoutMs: 30_000,
      what: 'the first half recorded and held lines upstream',
    });

    for (let round = 0; round < KILL_ROUNDS; round++) {
      // Every worker dies holding lines (and the batch's driver); fresh ones take over once the locks expire.
      await killAndReplaceWorkers();
      await waitFor(() => cluster.mock.stats().inFlight > 0, { timeoutMs: 30_000, what: 'held lines re-run by the fresh workers' });
      // Then Redis itself dies (SIGKILL: only what AOF fsynced survives) and comes back under the running processes.
      await redis.stop(true);
      await redis.restart();
      await waitFor(() => cluster.mock.stats().inFlight > 0, { timeoutMs: 30_000, what: 'held lines upstream again after the Redis restart' });
    }
    expect((await client.batches.retrieve(created.id)).status).toBe('in_progress');
    cluster.mock.openGate('held');

    const done = await until(client, created.id, ['completed', 'failed', 'expired'], 60_000);
    expect(done.request_counts).toEqual({ total: DURABLE_LINES, completed: DURABLE_LINES, failed: 0 });
    // Exactly one complete upstream answer per line: the aborted calls of the dead workers never finished.
    expect(cluster.mock.stats().completed).toBe(DURABLE_LINES);
    const output = parseJsonl(await (await client.files.content(done.output_file_id!)).text());
    expect(output).toHaveLength(DURABLE_LINES);
    expect(new Set(output.map((l) => l.custom_id)).size).toBe(DURABLE_LINES);
    for (const line of output) expect(calledTool(line), line.custom_id).toBe(line.custom_id.replace('req-', 'answer_'));
  }, LONG ? 240_000 : 90_000);
});

describe('validation, errors, tenants and webhooks', () => {
  const WINDOW_SECONDS = 6;
  let cluster: Cluster;
  let receiver: WebhookReceiver;
  let filesDir: string;

  beforeAll(async () => {
    filesDir = mkdtempSync(join(tmpdir(), 'spillway-files-'));
    receiver = await startWebhookReceiver();
    cluster = await clusterOn(
      inject('redisUrl'),
      {
        batches: { pollMs: 50, completionWindowSeconds: WINDOW_SECONDS },
        // No worker is killed here: locks of a normal length, so a loaded machine does not stall a held line's job
        // (a stalled run is aborted and run again, which can record it as failed before the window expires it).
        worker: { concurrency: 16, lockDurationMs: 10_000, stalledIntervalMs: 5_000 },
        webhooks: { allowHttp: true, allowHosts: ['127.0.0.1'], timeoutMs: 2_000, maxAttempts: 5, backoff: { initialMs: 200, multiplier: 2, maxMs: 2_000, jitter: 0 } },
        tenants: [
          { id: 'acme', keys: [hash(TENANT_KEY)], webhook: { url: receiver.url, secrets: [receiver.secret] } },
          { id: 'globex', keys: [hash(OTHER_KEY)] },
        ],
      },
      filesDir,
    );
  }, 60_000);

  afterAll(async () => {
    cluster?.mock.openGate('held');
    await cluster?.close();
    await receiver?.close();
    if (filesDir !== undefined) rmSync(filesDir, { recursive: true, force: true });
  });

  it('fails a file with bad lines, naming their line numbers', async () => {
    const client = clientOf(cluster);
    const lines = [toolLine(1), 'not json', JSON.stringify({ custom_id: 'x', method: 'POST', url: '/v1/completions', body: { model: 'gpt-4o-mini', prompt: 'x' } }), toolLine(1)];
    const batch = await client.batches.create({ input_file_id: await upload(client, lines), endpoint: '/v1/chat/completions', completion_window: '24h' });
    const failed = await until(client, batch.id, ['failed', 'completed']);
    expect(failed.errors?.data?.map((e) => [e.line, e.code])).toEqual([
      [2, 'invalid_json_line'],
      [3, 'invalid_url'],
      [4, 'duplicate_custom_id'],
    ]);
  });

  it('completes with the lines the upstream refused in the error file', async () => {
    const client = clientOf(cluster);
    const lines = Array.from({ length: 20 }, (_, i) => toolLine(i, i % 4 === 0 ? 'refused' : 'gpt-4o-mini'));
    const batch = await client.batches.create({ input_file_id: await upload(client, lines), endpoint: '/v1/chat/completions', completion_window: '24h' });
    const done = await until(client, batch.id, ['completed', 'failed']);
    expect(done.request_counts).toEqual({ total: 20, completed: 15, failed: 5 });
    const errors = parseJsonl(await (await client.files.content(done.error_file_id!)).text());
    expect(errors.map((l) => l.custom_id).sort()).toEqual(['req-0', 'req-12', 'req-16', 'req-4', 'req-8']);
    expect(errors.every((l) => l.response?.status_code === 400 && l.error === null)).toBe(true);
  });

  it('gives a second tenant 404 for the first tenant\'s files and batches', async () => {
    const client = clientOf(cluster);
    const other = clientOf(cluster, OTHER_KEY);
    const fileId = await upload(client, [toolLine(1)]);
    const batch = await client.batches.create({ input_file_id: fileId, endpoint: '/v1/chat/completions', completion_window: '24h' });
    for (const attempt of [() => other.files.retrieve(fileId), () => other.files.content(fileId), () => other.files.delete(fileId), () => other.batches.retrieve(batch.id), () => other.batches.cancel(batch.id)]) {
      await expect(attempt()).rejects.toBeInstanceOf(NotFoundError);
    }
    expect((await other.batches.list()).data).toEqual([]);
    expect((await until(client, batch.id, ['completed', 'failed'])).status).toBe('completed');
  });

  it('sends batch.completed, batch.failed, batch.cancelled and batch.expired, verified by webhooks.unwrap()', async () => {
    const client = clientOf(cluster);
    const create = async (lines: string[]) => client.batches.create({ input_file_id: await upload(client, lines), endpoint: '/v1/chat/completions', completion_window: '24h' });
    const expected = new Map<string, string>();
    expected.set((await create([toolLine(1)])).id, 'batch.completed');
    expected.set((await create(['{']) ).id, 'batch.failed');
    const cancelled = await create([toolLine(2, 'held')]);
    expected.set(cancelled.id, 'batch.cancelled');
    expected.set((await create([toolLine(3, 'held')])).id, 'batch.expired');
    await until(client, cancelled.id, ['in_progress']);
    await client.batches.cancel(cancelled.id);
    await waitFor(() => [...expected.keys()].every((id) => receiver.received.some((r) => r.unwrapped?.data.id === id)), { timeoutMs: 30_000, what: 'the four batch events' });
    for (const [batchId, type] of expected) {
      const delivery = receiver.received.find((r) => r.unwrapped?.data.id === batchId)!;
      expect(delivery.verifiedByStandardWebhooks).toBe(true);
      expect(delivery.unwrapped).toMatchObject({ object: 'event', type, data: { id: batchId } });
    }
  }, 45_000);

  it('works with the official Python client where it is installed', async (context) => {
    // A client that can be built, not only a package that imports (a partial install lacks httpx).
    const probe = spawnSync('python3', ['-c', "from openai import OpenAI; OpenAI(api_key='x', base_url='http://127.0.0.1:9/v1')"], { encoding: 'utf8' });
    if (probe.status !== 0) {
      console.warn('batches e2e: the Python openai client is not usable here (python3 or the openai package missing); the Python client run is skipped');
      context.skip();
    }
    const script = `
import json, os, time, io
from openai import OpenAI
client = OpenAI(base_url=os.environ["SPILLWAY_URL"], api_key=os.environ["SPILLWAY_KEY"], max_retries=2)
lines = [json.dumps({"custom_id": f"py-{i}", "method": "POST", "url": "/v1/chat/completions",
  "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}],
           "tools": [{"type": "function", "function": {"name": f"answer_{i}", "parameters": {"type": "object", "properties": {}}}}]}}) for i in range(20)]
f = client.files.create(file=("input.jsonl", io.BytesIO(("\\n".join(lines) + "\\n").encode())), purpose="batch")
b = client.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
deadline = time.time() + 30
while b.status not in ("completed", "failed", "expired", "cancelled") and time.time() < deadline:
    time.sleep(0.1)
    b = client.batches.retrieve(b.id)
if b.status != "completed":
    raise SystemExit("batch not completed: " + b.model_dump_json())
out = [json.loads(l) for l in client.files.content(b.output_file_id).text.splitlines() if l]
print(json.dumps({"status": b.status, "answers": sorted([o["custom_id"] + "=" + o["response"]["body"]["choices"][0]["message"]["tool_calls"][0]["function"]["name"] for o in out])}))
`;
    // Not spawnSync: the mock upstream answering the batch's lines lives in this process's event loop.
    const run = await promisify(execFile)('python3', ['-c', script], { encoding: 'utf8', env: { ...process.env, SPILLWAY_URL: `${cluster.baseUrl}/v1`, SPILLWAY_KEY: TENANT_KEY }, timeout: 45_000 });
    const result = JSON.parse(run.stdout.trim().split('\n').at(-1)!) as { status: string; answers: string[] };
    expect(result.status).toBe('completed');
    expect(result.answers).toEqual(Array.from({ length: 20 }, (_, i) => `py-${i}=answer_${i}`).sort());
  }, 60_000);
});
