// The `spillway` command: parses argv, loads config, runs a role. Argument handling only; roles/ does the work.
// A bad config prints every bad field and exits 2, never a stack trace.
import { parseArgs } from 'node:util';
import { ConfigError, loadConfig } from './config/load.ts';
import { DEV_API_KEY } from './config/default.ts';
import { createLogger } from './observability/logger.ts';
import { startIngress } from './roles/ingress.ts';
import { startWorker } from './roles/worker.ts';
import { installProcessHandlers, runShutdown, type ShutdownStep } from './roles/shutdown.ts';
import { createRoleMetrics, newInstanceId, type RoleContext, type RoleName } from './roles/context.ts';
import { startMockUpstream } from './mock-upstream/index.ts';

const USAGE = `Usage: spillway <command> [options]

Commands:
  start                 ingress and workers in one process (one machine, development)
  ingress               the HTTP ingress only
  worker                the queue workers only
  mock-upstream         an OpenAI-compatible mock LLM server (--port N, default 9000)
  check-config          validate the configuration and exit

Options:
  --config FILE         YAML configuration (default: $SPILLWAY_CONFIG, else the built-in dev config)
  --port N, --host H    mock-upstream: where to listen (default 9000 on 127.0.0.1; env PORT, HOST)
  --latency-ms N, --chunks N, --chunk-delay-ms N, --max-concurrency N
                        mock-upstream: default behaviour (per request: x-mock-* headers)
  -h, --help            this text

Environment: REDIS_URL and PORT override the file; \${VAR} in the file is replaced from the environment.
With no configuration, the built-in mock provider answers and the dev key is ${DEV_API_KEY}.`;

/** Runs the command; resolves with an exit code, or -1 when a server keeps running (signals end it). */
export async function main(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        config: { type: 'string', short: 'c' },
        port: { type: 'string', short: 'p' },
        host: { type: 'string' },
        'latency-ms': { type: 'string' },
        chunks: { type: 'string' },
        'chunk-delay-ms': { type: 'string' },
        'max-concurrency': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n\n${USAGE}\n`);
    return 2;
  }
  const command = parsed.positionals[0];
  if (parsed.values.help || command === undefined || command === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return command === undefined && !parsed.values.help ? 2 : 0;
  }
  if (command === 'mock-upstream') return runMock(parsed.values);
  if (!['start', 'ingress', 'worker', 'check-config'].includes(command)) {
    process.stderr.write(`unknown command "${command}"\n\n${USAGE}\n`);
    return 2;
  }

  let loaded;
  try {
    loaded = loadConfig({ file: parsed.values.config });
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      return 2;
    }
    throw err;
  }
  if (command === 'check-config') {
    const { config } = loaded;
    process.stdout.write(
      `configuration OK (${loaded.source}): ${config.providers.length} provider(s), ${config.models.length} model(s), ${config.tenants.length} tenant(s)\n`,
    );
    return 0;
  }

  const logger = createLogger(loaded.config.logging.level);
  const role = command as RoleName; // the other commands returned above
  const ctx: RoleContext = { config: loaded.config, logger, metrics: createRoleMetrics(role), instanceId: newInstanceId() };
  logger.info({ role: command, config: loaded.source }, 'starting');
  const steps: ShutdownStep[] = [];
  try {
    // In `start`, workers start first so the ingress never accepts a request that nothing could take.
    if (role === 'worker' || role === 'start') steps.push(...(await startWorker(ctx)).steps);
    if (role === 'ingress' || role === 'start') {
      const ingress = await startIngress(ctx);
      // Ingress first on the way down: stop accepting, then let workers finish what is active.
      steps.unshift(...ingress.steps);
      if (loaded.source === 'built-in dev config') {
        logger.info({ url: ingress.url, devKey: DEV_API_KEY }, 'no configuration given: serving the built-in mock provider');
      }
    }
  } catch (err) {
    logger.fatal({ err }, 'failed to start');
    await runShutdown(steps, logger);
    return 1;
  }
  installProcessHandlers(() => runShutdown(steps, logger), logger);
  return -1; // keep running
}

async function runMock(values: Record<string, string | boolean | undefined>): Promise<number> {
  const numbers: Record<string, number | undefined> = {};
  for (const name of ['port', 'latency-ms', 'chunks', 'chunk-delay-ms', 'max-concurrency']) {
    const raw = values[name] ?? (name === 'port' ? (process.env.PORT ?? '9000') : undefined);
    if (raw === undefined) continue;
    const value = Number(raw);
    if (typeof raw !== 'string' || !Number.isInteger(value) || value < 0 || (name === 'port' && value > 65_535)) {
      process.stderr.write(`invalid --${name} "${String(raw)}": a whole number is expected\n`);
      return 2;
    }
    numbers[name] = value;
  }
  const logger = createLogger('info', 'spillway-mock');
  const mock = await startMockUpstream({
    host: (typeof values.host === 'string' ? values.host : undefined) ?? process.env.HOST ?? '127.0.0.1',
    port: numbers.port,
    latencyMs: numbers['latency-ms'],
    chunks: numbers.chunks,
    chunkDelayMs: numbers['chunk-delay-ms'],
    maxConcurrency: numbers['max-concurrency'],
  });
  logger.info({ url: mock.url }, 'mock upstream listening');
  installProcessHandlers(async () => {
    await mock.close();
    return true;
  }, logger);
  return -1;
}
