// The project's nginx edge as a test fixture: renders deploy/nginx/nginx.conf.template (as the nginx image's envsubst
// does for compose) and runs Debian's nginx in the foreground on loopback, every file it writes in one temp dir.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { StopWaiting, waitFor } from '../support/wait.ts';

export const EDGE_TEMPLATE = resolve(import.meta.dirname, '../../deploy/nginx/nginx.conf.template');

const EDGE_VAR = /\$\{(EDGE_[A-Z0-9_]+)\}/g;

/** The ${EDGE_*} names the template uses. */
export function edgeTemplateVariables(text = readFileSync(EDGE_TEMPLATE, 'utf8')): string[] {
  return [...new Set([...text.matchAll(EDGE_VAR)].map((m) => m[1] ?? ''))].sort();
}

/** envsubst as the nginx image runs it, but strict: a variable without a value is an error, not left in place. */
export function renderEdgeTemplate(vars: Record<string, string>, text = readFileSync(EDGE_TEMPLATE, 'utf8')): string {
  const missing = edgeTemplateVariables(text).filter((name) => vars[name] === undefined);
  if (missing.length > 0) throw new Error(`no value for ${missing.join(', ')}`);
  return text.replace(EDGE_VAR, (_match, name: string) => vars[name] ?? '');
}

export interface EdgeOptions {
  /** Where nginx keeps its config, pid, logs and temp files. */
  dir: string;
  httpPort: number;
  httpsPort: number;
  /** Ports of the ingress replicas on 127.0.0.1. */
  ingressPorts: number[];
  /** Directory holding tls.crt and tls.key. */
  tlsDir: string;
  corsOrigins: string;
  rateLimit: string;
  rateBurst: number;
}

export interface Edge {
  child: ChildProcess;
  errorLog(): string;
  stop(): Promise<void>;
}

export async function startEdge(options: EdgeOptions): Promise<Edge> {
  const { dir } = options;
  const conf = renderEdgeTemplate({
    EDGE_HTTP_LISTEN: `127.0.0.1:${options.httpPort}`,
    EDGE_HTTPS_LISTEN: `127.0.0.1:${options.httpsPort}`,
    EDGE_RUN_DIR: dir,
    EDGE_ERROR_LOG: join(dir, 'error.log'),
    EDGE_ACCESS_LOG: join(dir, 'access.log'),
    EDGE_TLS_DIR: options.tlsDir,
    // Loopback addresses only: nothing to resolve.
    EDGE_RESOLVER: '',
    EDGE_INGRESS_SERVERS: options.ingressPorts.map((port) => `server 127.0.0.1:${port};`).join(' '),
    EDGE_CORS_ORIGINS: options.corsOrigins,
    EDGE_RATE_LIMIT: options.rateLimit,
    EDGE_RATE_BURST: String(options.rateBurst),
  });
  const confFile = join(dir, 'nginx.conf');
  writeFileSync(confFile, conf);
  // -e: the error log before the config is read (the compiled-in /var/log/nginx needs root); -p: relative paths.
  const args = ['-p', `${dir}/`, '-c', confFile, '-e', join(dir, 'error.log'), '-g', 'daemon off;'];
  const check = spawn('nginx', ['-t', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let checkOutput = '';
  check.stderr?.on('data', (chunk: Buffer) => (checkOutput += chunk.toString()));
  const checkCode = await new Promise<number | null>((resolveExit, reject) => {
    check.once('error', (err) => reject(new Error(`cannot run nginx (is Debian's nginx installed?): ${err.message}`)));
    check.once('exit', resolveExit);
  });
  if (checkCode !== 0) throw new Error(`nginx -t refused the rendered template:\n${checkOutput}`);

  const child = spawn('nginx', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<void>((resolveExit) => child.once('exit', () => resolveExit()));
  const errorLog = (): string => {
    try {
      return stderr + readFileSync(join(dir, 'error.log'), 'utf8');
    } catch {
      return stderr;
    }
  };
  await waitFor(
    async () => {
      if (child.exitCode !== null || child.signalCode !== null) throw new StopWaiting(`nginx exited:\n${errorLog()}`);
      return (await fetch(`http://127.0.0.1:${options.httpPort}/edge-health`)).status === 200;
    },
    { timeoutMs: 10_000, what: 'nginx /edge-health' },
  );
  return {
    child,
    errorLog,
    stop: async () => {
      // SIGQUIT: nginx's graceful stop; the test has already closed its connections.
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGQUIT');
      await exited;
    },
  };
}
