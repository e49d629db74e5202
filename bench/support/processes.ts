// Child processes of the benchmark: spawned with their output in log files, tracked, measured (RSS, CPU) and stopped.
// Never leaves one behind: 'exit' SIGKILLs whatever is still alive, SIGINT/SIGTERM stop everything gracefully first.
import { spawn, type ChildProcess } from 'node:child_process';
import { openSync, closeSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

export interface Child {
  readonly name: string;
  readonly pid: number;
  readonly logFile: string;
  /** Exit code (or signal name) once the process has exited. */
  readonly exited: Promise<number | string>;
  alive(): boolean;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves once the process is gone. Idempotent. */
  stop(graceMs?: number): Promise<void>;
}

const children = new Set<Child>();

export function spawnChild(name: string, command: string, args: readonly string[], options: { logDir: string; env?: NodeJS.ProcessEnv }): Child {
  const logFile = join(options.logDir, `${name}.log`);
  const fd = openSync(logFile, 'a');
  let proc: ChildProcess;
  try {
    proc = spawn(command, args, { stdio: ['ignore', fd, fd], env: { ...process.env, ...options.env } });
  } finally {
    closeSync(fd);
  }
  if (proc.pid === undefined) throw new Error(`cannot start ${name} (${command})`);
  const pid = proc.pid;
  let status: number | string | undefined;
  const exited = new Promise<number | string>((resolve) => {
    proc.once('exit', (code, signal) => {
      status = code ?? signal ?? 'unknown';
      children.delete(child);
      resolve(status);
    });
    proc.once('error', () => {
      status ??= 'spawn error';
      children.delete(child);
      resolve(status);
    });
  });
  let stopping: Promise<void> | undefined;
  const child: Child = {
    name,
    pid,
    logFile,
    exited,
    alive: () => status === undefined,
    stop: (graceMs = 5_000) => {
      stopping ??= (async () => {
        if (status !== undefined) return;
        proc.kill('SIGTERM');
        const timer = setTimeout(() => proc.kill('SIGKILL'), graceMs);
        await exited;
        clearTimeout(timer);
      })();
      return stopping;
    },
  };
  children.add(child);
  return child;
}

/** Stops every tracked child, all at once, each with its own grace. */
export async function stopAllChildren(graceMs = 5_000): Promise<void> {
  await Promise.all([...children].map((c) => c.stop(graceMs)));
}

let installed = false;

/** Ctrl-C or SIGTERM: stop the children, then exit 130/143. Process exit (also on a crash): SIGKILL the survivors. */
export function installCleanup(log: (line: string) => void): void {
  if (installed) return;
  installed = true;
  process.on('exit', () => {
    for (const child of children) {
      try {
        process.kill(child.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  });
  let signalled = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (signalled) process.exit(1);
    signalled = true;
    log(`${signal}: stopping ${children.size} child process(es)`);
    void stopAllChildren(3_000).finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
}

/** Resident set size of a process in bytes (VmRSS), or NaN when it is gone. */
export function readRss(pid: number): number {
  try {
    const match = /^VmRSS:\s+(\d+)\s+kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) * 1024 : Number.NaN;
  } catch {
    return Number.NaN;
  }
}

/** User + system CPU seconds a process has used so far (Linux reports them in clock ticks of 1/100 s). */
export function readCpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may contain spaces: count fields from the closing parenthesis.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return Number.NaN;
  }
}

/** Soft and hard limits on open files of this process (from /proc/self/limits). */
export function openFileLimits(): { soft: number; hard: number } {
  const match = /^Max open files\s+(\S+)\s+(\S+)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
  const parse = (v: string | undefined) => (v === undefined ? 0 : v === 'unlimited' ? Number.POSITIVE_INFINITY : Number(v));
  return { soft: parse(match?.[1]), hard: parse(match?.[2]) };
}

// One helper for free ports, shared with the tests.
export { freePort } from '../../test/support/ports.ts';

/** Polls `probe` until it returns a truthy value; throws after `timeoutMs`. */
export async function waitUntil<T>(probe: () => T | Promise<T>, what: string, timeoutMs = 20_000, intervalMs = 50): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() <= deadline) {
    try {
      const value = await probe();
      if (value) return value as NonNullable<T>;
    } catch (err) {
      last = err;
    }
    await sleep(intervalMs);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ''}`);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** GET a local URL; true on a 2xx. Never throws. */
export async function httpOk(url: string): Promise<boolean> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(2_000) });
    await res.arrayBuffer();
    return res.ok;
  } catch {
    return false;
  }
}

/** Resolves or rejects with `promise`, or rejects after `ms`; the timer never outlives the race. */
export async function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * SYNs dropped because a listening socket's accept queue was full (Linux TcpExt ListenDrops, system-wide):
 * a burst of new connections beyond the server's listen backlog waits for the client's SYN retransmits (1 s, 3 s…).
 */
export function listenDrops(): number {
  try {
    const [names, values] = readFileSync('/proc/net/netstat', 'utf8').split('\n').filter((l) => l.startsWith('TcpExt:'));
    const i = names?.split(' ').indexOf('ListenDrops') ?? -1;
    return i > 0 ? Number(values?.split(' ')[i]) : Number.NaN;
  } catch {
    return Number.NaN;
  }
}
