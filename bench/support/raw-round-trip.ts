// Runs the raw BullMQ round trip (raw-bullmq.ts) in the same topology as Spillway — one producer process, N worker
// processes at concurrency 512 — on the stack's Redis under a prefix of its own; every child is stopped when it ends.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnChild, withTimeout } from './processes.ts';
import { REPO_ROOT } from './stack.ts';
import type { Summary } from './stats.ts';
import type { RedisCost } from './redis-cost.ts';
import { WARMUP_MS, type ScenarioContext } from './scenario.ts';

const RAW_SCRIPT = join(REPO_ROOT, 'bench', 'support', 'raw-bullmq.ts');

export interface RawResult {
  completed: number;
  /** Round trips whose reply never came (10 s): should be 0. */
  lost: number;
  durationS: number;
  rps: number;
  latency: Summary;
  /** What Redis did during the measured phase (the stack's idle Spillway processes included, as in Spillway's phase). */
  redis: RedisCost;
}

/** `concurrency` round trips in flight for `ctx.durationMs`, after a warm-up. */
export async function rawRoundTrip(ctx: ScenarioContext, concurrency: number): Promise<RawResult> {
  const stamp = `${Date.now()}-${concurrency}`;
  const common = ['--redis', ctx.stack.redis.url, '--prefix', `{bench-raw-${stamp}}`];
  const workers = Array.from({ length: ctx.workers }, (_, i) =>
    spawnChild(`raw-worker-${i + 1}`, process.execPath, [RAW_SCRIPT, 'worker', ...common, '--concurrency', '512'], { logDir: ctx.logDir }),
  );
  const out = join(ctx.logDir, `raw-result-${stamp}.json`);
  try {
    const args = ['--concurrency', String(concurrency), '--duration-ms', String(ctx.durationMs), '--warmup-ms', String(WARMUP_MS), '--workers', String(ctx.workers), '--out', out];
    const producer = spawnChild('raw-producer', process.execPath, [RAW_SCRIPT, 'producer', ...common, ...args], { logDir: ctx.logDir });
    let code: number | string;
    try {
      code = await withTimeout(producer.exited, ctx.durationMs + WARMUP_MS + 60_000, 'the raw BullMQ producer');
    } finally {
      await producer.stop(2_000);
    }
    if (code !== 0) throw new Error(`raw BullMQ producer exited with ${String(code)}: see ${producer.logFile}`);
    return JSON.parse(readFileSync(out, 'utf8')) as RawResult;
  } finally {
    await Promise.all(workers.map((w) => w.stop(5_000)));
  }
}
