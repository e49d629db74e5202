// Ordered, close-with-grace shutdown shared by every role: each step runs even if an earlier one failed or timed
// out; a second signal forces exit. Never hangs forever: every step has a timeout.
import type { Logger } from 'pino';

export interface ShutdownStep {
  name: string;
  close: () => Promise<unknown>;
  timeoutMs: number;
  /** Runs when `close` did not finish in time (e.g. destroy connections). */
  force?: () => unknown;
}

export async function runShutdown(steps: readonly ShutdownStep[], logger: Logger): Promise<boolean> {
  let clean = true;
  for (const step of steps) {
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), step.timeoutMs);
    });
    try {
      const outcome = await Promise.race([step.close().then(() => 'closed' as const), timedOut]);
      if (outcome === 'timeout') {
        clean = false;
        logger.warn({ step: step.name, timeoutMs: step.timeoutMs }, 'shutdown step timed out');
        step.force?.();
      }
    } catch (err) {
      clean = false;
      logger.error({ err, step: step.name }, 'shutdown step failed');
    } finally {
      clearTimeout(timer);
    }
  }
  return clean;
}

/** SIGTERM/SIGINT run the shutdown once; a second signal exits at once. Crashes are logged and exit non-zero. */
export function installProcessHandlers(shutdown: () => Promise<boolean>, logger: Logger): void {
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) {
      logger.warn({ signal }, 'second signal: exiting now');
      process.exit(1);
    }
    stopping = true;
    logger.info({ signal }, 'shutting down');
    shutdown().then(
      (clean) => process.exit(clean ? 0 : 1),
      (err: unknown) => {
        logger.fatal({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  process.on('uncaughtException', (err) => {
    logger.fatal({ err }, 'uncaught exception');
    process.exit(1);
  });
  process.on('unhandledRejection', (err) => {
    logger.fatal({ err }, 'unhandled rejection');
    process.exit(1);
  });
}
