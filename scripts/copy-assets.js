// Copies the non-TypeScript files the runtime loads (Lua scripts) next to the compiled modules in dist/.
import { cpSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

function copyLua(dir) {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) copyLua(path);
    else if (name.endsWith('.lua')) cpSync(path, join('dist', path));
  }
}
copyLua('src');
