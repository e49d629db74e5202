// An in-process Spillway (ingress + worker roles, real Redis, real mock upstream, files in a temporary directory) for
// the batch tests, and the official `openai` client pointed at it. Not a test file: the batches-*.test.ts files use it.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI, { toFile } from 'openai';
import { pino, type Logger } from 'pino';
import { parseConfig } from '../../src/config/load.ts';
import type { Config } from '../../src/config/schema.ts';
import { createMetrics } from '../../src/observability/metrics.ts';
import { newInstanceId } from '../../src/roles/context.ts';
import { startWorker } from '../../src/roles/worker.ts';
import { startIngress } from '../../src/roles/ingress.ts';
import { runShutdown, type ShutdownStep } from '../../src/roles/shutdown.ts';
import { startMockUpstream, type MockUpstream, type MockUpstreamOptions } from '../../src/mock-upstream/index.ts';
import { createRedisKeys, type RedisKeys } from '../../src/queue/keys.ts';
import { testConfig, TENANT_KEY, type ClusterOptions } from '../support/spillway-cluster.ts';
import { uniquePrefix } from '../support/redis.ts';
import { waitFor } from '../support/wait.ts';

export interface BatchHarness {
  baseUrl: string;
  /** The default tenant's API key. */
  apiKey: string;
  client: OpenAI;
  mock: MockUpstream;
  config: Config;
  keys: RedisKeys;
  filesDir: string;
  /** Uploads JSONL lines as a batch input file (the official client's files.create, multipart). */
  upload(lines: readonly string[], filename?: string): Promise<string>;
  /** Polls batches.retrieve until the batch reaches one of `statuses`. */
  waitForStatus(batchId: string, statuses: readonly string[], timeoutMs?: number): Promise<OpenAI.Batches.Batch>;
  /** The content of a file, downloaded with files.content. */
  content(fileId: string): Promise<string>;
  close(): Promise<void>;
}

export interface HarnessOptions {
  redisUrl: string;
  mock?: MockUpstreamOptions;
  /** Config sections over the test defaults; a function gets the mock upstream's URL (for providers of its own). */
  config?: ClusterOptions['config'] | ((mockUrl: string) => ClusterOptions['config']);
  logger?: Logger;
  /** Start only the ingress (a test that drives a worker of its own). */
  workers?: number;
}

export async function startBatchHarness(options: HarnessOptions): Promise<BatchHarness> {
  const mock = await startMockUpstream(options.mock);
  const filesDir = mkdtempSync(join(tmpdir(), 'spillway-files-'));
  const prefix = uniquePrefix('batches');
  const overrides = typeof options.config === 'function' ? options.config(mock.url) : options.config;
  const config = parseConfig(
    testConfig(options.redisUrl, prefix, 0, mock.url, {
      logging: { level: 'warn' },
      ...overrides,
      files: { dir: filesDir, ...(overrides?.files as object | undefined) },
    }),
  );
  const logger = options.logger ?? pino({ level: 'silent' });
  const steps: ShutdownStep[] = [];
  for (let i = 0; i < (options.workers ?? 1); i++) {
    steps.push(...(await startWorker({ config, logger, metrics: createMetrics({ defaultMetrics: false }), instanceId: newInstanceId() })).steps);
  }
  const ingress = await startIngress({ config, logger, metrics: createMetrics({ defaultMetrics: false }), instanceId: newInstanceId() });
  steps.unshift(...ingress.steps);
  const client = new OpenAI({ apiKey: TENANT_KEY, baseURL: `${ingress.url}/v1`, maxRetries: 0 });
  return {
    baseUrl: ingress.url,
    apiKey: TENANT_KEY,
    client,
    mock,
    config,
    keys: createRedisKeys(prefix),
    filesDir,
    async upload(lines, filename = 'input.jsonl') {
      const file = await client.files.create({ file: await toFile(Buffer.from(`${lines.join('\n')}\n`), filename), purpose: 'batch' });
      return file.id;
    },
    async waitForStatus(batchId, statuses, timeoutMs = 20_000) {
      return waitFor(
        async () => {
          const batch = await client.batches.retrieve(batchId);
          return statuses.includes(batch.status) ? batch : undefined;
        },
        { timeoutMs, intervalMs: 50, what: `batch ${batchId} to reach ${statuses.join(' or ')}` },
      );
    },
    async content(fileId) {
      return (await client.files.content(fileId)).text();
    },
    async close() {
      await runShutdown(steps, logger);
      await mock.close();
      rmSync(filesDir, { recursive: true, force: true });
    },
  };
}

/** A chat request line of a batch input file. */
export function chatLine(customId: string, content: string, model = 'gpt-4o-mini'): string {
  return JSON.stringify({ custom_id: customId, method: 'POST', url: '/v1/chat/completions', body: { model, messages: [{ role: 'user', content }] } });
}

export { TENANT_KEY };
