// Real Redis for tests: a redis-server child on a free port (killable and restartable), or REDIS_URL when given.
// No mock of Redis anywhere: a test that needs Redis talks to one of these.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { freePort } from './ports.ts';
import { waitFor } from './wait.ts';

export interface RedisServer {
  url: string;
  port: number;
  /** The running redis-server's process id (a restart changes it). */
  readonly pid: number;
  /** SIGSTOP: the server keeps its connections open and answers nothing, like a hung Redis. */
  pause(): void;
  /** SIGCONT after pause(). */
  resume(): void;
  /** Stops the server (SIGKILL when `hard`), keeping its port for restart(). */
  stop(hard?: boolean): Promise<void>;
  restart(): Promise<void>;
  close(): Promise<void>;
}

/** `extraArgs` are appended to the defaults and win over them (e.g. `--appendonly yes --dir <tmp>` for persistence). */
export async function startRedisServer(extraArgs: readonly string[] = []): Promise<RedisServer> {
  const port = await freePort();
  let child: ChildProcess | undefined;
  const launch = async () => {
    child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', ...extraArgs], { stdio: 'ignore' });
    const spawned = child;
    await new Promise<void>((resolve, reject) => {
      spawned.once('spawn', resolve);
      spawned.once('error', (err) => reject(new Error(`cannot start redis-server (is it installed?): ${err.message}`)));
    });
    await waitFor(() => ping(port), { timeoutMs: 10_000, what: `redis-server on port ${port}` });
  };
  const stop = async (hard = false) => {
    const running = child;
    child = undefined;
    if (running === undefined || running.exitCode !== null) return;
    const exited = new Promise((resolve) => running.once('exit', resolve));
    running.kill(hard ? 'SIGKILL' : 'SIGTERM');
    await exited;
  };
  const pid = (): number => {
    if (child?.pid === undefined) throw new Error('redis-server is not running');
    return child.pid;
  };
  await launch();
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    get pid() {
      return pid();
    },
    pause: () => process.kill(pid(), 'SIGSTOP'),
    resume: () => process.kill(pid(), 'SIGCONT'),
    stop,
    restart: launch,
    close: () => stop(true),
  };
}

async function ping(port: number): Promise<boolean> {
  const client = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  client.on('error', () => undefined);
  try {
    await client.connect();
    return (await client.ping()) === 'PONG';
  } catch {
    return false;
  } finally {
    client.disconnect();
  }
}

/** A key prefix of its own for each test: every key it touches hangs off it, nothing is flushed. */
export function uniquePrefix(name = 'test'): string {
  return `{t-${name}-${randomBytes(4).toString('hex')}}`;
}
