// Deletes the bytes of expired files on a timer (their metadata expires in Redis by itself). Runs in every worker:
// deleting twice is harmless, so no lease is needed. Never deletes a file that has not expired.
import type { Logger } from 'pino';
import type { FileRecords } from './file-records.ts';
import type { FileStorage } from './storage.ts';

export interface FileSweeper {
  /** One pass now (tests; the timer runs passes on its own). */
  sweep(): Promise<number>;
  close(): Promise<void>;
}

export function startFileSweeper(records: FileRecords, storage: FileStorage, intervalMs: number, logger: Logger): FileSweeper {
  let running: Promise<number> | undefined;
  const sweep = async () => {
    // Passes never overlap: a slow storage must not pile them up.
    running ??= (async () => {
      let total = 0;
      try {
        for (let swept = -1; swept !== 0; ) {
          swept = await records.sweep(storage);
          total += swept;
        }
        if (total > 0) logger.info({ files: total }, 'expired files deleted');
      } catch (err) {
        logger.warn({ err }, 'deleting expired files failed; trying again later');
      } finally {
        running = undefined;
      }
      return total;
    })();
    return running;
  };
  const timer = setInterval(() => void sweep(), intervalMs);
  timer.unref();
  return {
    sweep,
    close: async () => {
      clearInterval(timer);
      await running;
    },
  };
}
