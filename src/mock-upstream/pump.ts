// Writes a mock response piece by piece: stream frames with a delay between them, or a large body as fast as the
// client reads it. Never writes to a closed response and never builds a piece once the client has gone.
import type { ServerResponse } from 'node:http';

/** One admitted request. Its pending timer is cleared the moment its response closes. */
export interface Exchange {
  readonly res: ServerResponse;
  timer: NodeJS.Timeout | undefined;
  closed: boolean;
}

/** What happens after the `after`-th piece: the socket is destroyed, or the response goes silent (for `stallMs`, or until the client leaves). */
export type Cut = { after: number; action: 'reset' } | { after: number; action: 'stall'; stallMs: number | undefined };

/**
 * Writes the head, then the pieces one by one, `delayMs` apart (each flushed on its own) or, without a delay, as
 * fast as the socket drains. Pulls pieces lazily, so nothing more is built once the client is gone.
 */
export function pump(ex: Exchange, status: number, headers: Record<string, string>, pieces: Iterator<string, void>, delayMs: number, cut?: Cut): void {
  const { res } = ex;
  let written = 0;
  let next = pieces.next();
  const step = (): void => {
    ex.timer = undefined;
    while (!ex.closed && next.done !== true) {
      const piece = next.value;
      next = pieces.next();
      if (++written === cut?.after) {
        if (cut.action === 'reset') return void res.write(piece, () => res.destroy());
        res.write(piece);
        if (cut.stallMs !== undefined) ex.timer = setTimeout(step, cut.stallMs);
        return;
      }
      if (next.done === true) return void res.end(piece);
      const flushed = res.write(piece);
      if (delayMs > 0) return void (ex.timer = setTimeout(step, delayMs));
      if (!flushed) return void res.once('drain', step);
    }
  };
  res.writeHead(status, headers);
  // Without a delay, the pieces written in one go leave in one syscall; with one, each piece leaves on its own.
  step();
}
