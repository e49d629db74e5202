// Entry point of a dedicated completions worker process, the same as `spillway worker`: wiring only.
// Usage: node dist/workers/completions.js [--config FILE]
import { main } from '../src/cli.ts';

const code = await main(['worker', ...process.argv.slice(2)]);
if (code >= 0) process.exitCode = code;
