#!/usr/bin/env node
// The `spillway` command: runs the compiled CLI (npm run build writes dist/).
import { main } from '../dist/src/cli.js';

const code = await main(process.argv.slice(2));
if (code >= 0) process.exitCode = code;
