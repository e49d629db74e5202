// Real `spillway` child processes for end-to-end tests: spawn with a config file, wait until ready, signal, reap.
// Output is kept in memory so a failing test can show it; every process a test starts is killed by closeAll().
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { stringify } from 'yaml';
import { StopWaiting, waitFor } from './wait.ts';

export const SPILLWAY_BIN = resolve(import.meta.dirname, '../../bin/spillway.js');

export interface SpillwayProcess {
  child: ChildProcess;
  output(): string;
  /** Resolves with the exit code (null when killed by a signal). */
  exited: Promise<number | null>;
  kill(signal?: NodeJS.Signals): Promise<number | null>;
}

const running = new Set<SpillwayProcess>();

export function writeConfigFile(config: unknown): string {
  const dir = mkdtempSync(join(tmpdir(), 'spillway-test-'));
  const file = join(dir, 'spillway.yaml');
  writeFileSync(file, stringify(config));
  return file;
}

export function spawnSpillway(args: string[], env: Record<string, string> = {}): SpillwayProcess {
  const child = spawn(process.execPath, [SPILLWAY_BIN, ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | null>((resolveExit) => child.once('exit', (code) => resolveExit(code)));
  const proc: SpillwayProcess = {
    child,
    output: () => output,
    exited,
    kill: async (signal = 'SIGTERM') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
  running.add(proc);
  void exited.then(() => running.delete(proc));
  return proc;
}

/** Waits for a log line (pino JSON `msg`) to appear in the process's output. */
export async function waitForLog(proc: SpillwayProcess, msg: string, timeoutMs = 20_000): Promise<void> {
  await waitFor(
    () => {
      if (proc.output().includes(`"msg":"${msg}"`)) return true;
      throwIfExited(proc);
      return false;
    },
    { timeoutMs, what: `log "${msg}"` },
  );
}

/** Waits for /ready; fails at once when `proc` (the process that should serve it) exits first. */
export async function waitForReady(baseUrl: string, proc?: SpillwayProcess, timeoutMs = 20_000): Promise<void> {
  await waitFor(
    async () => {
      if (proc !== undefined) throwIfExited(proc);
      return (await fetch(`${baseUrl}/ready`)).status === 200;
    },
    { timeoutMs, what: `${baseUrl}/ready` },
  );
}

function throwIfExited(proc: SpillwayProcess): void {
  const { exitCode, signalCode } = proc.child;
  if (exitCode !== null || signalCode !== null) throw new StopWaiting(`process exited early (${exitCode ?? signalCode}):\n${proc.output()}`);
}

export async function killAll(): Promise<void> {
  await Promise.all([...running].map((p) => p.kill('SIGKILL')));
}
