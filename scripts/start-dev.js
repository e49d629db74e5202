// `npm start`: runs `spillway start` for a first try on one machine. Uses REDIS_URL, else a Redis on
// 127.0.0.1:6379, else starts a throwaway redis-server there (installing it with apt-get when root and missing).
import { spawn, spawnSync } from 'node:child_process';
import { connect } from 'node:net';

const redisUrl = process.env.REDIS_URL;

function reachable(port) {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.once('connect', () => socket.end(() => resolve(true)));
    socket.once('error', () => resolve(false));
  });
}

function has(command) {
  return spawnSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' }).status === 0;
}

let redis;
if (!redisUrl && !(await reachable(6379))) {
  if (!has('redis-server') && has('apt-get') && process.getuid?.() === 0) {
    console.error('spillway: no Redis on 127.0.0.1:6379 and no redis-server: installing it (apt-get install redis-server)');
    spawnSync('sh', ['-c', 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server'], { stdio: 'inherit' });
  }
  if (!has('redis-server')) {
    console.error('spillway: no Redis on 127.0.0.1:6379. Install redis-server or set REDIS_URL=redis://host:port');
    process.exit(1);
  }
  console.error('spillway: starting a throwaway redis-server on 127.0.0.1:6379 (nothing saved to disk)');
  redis = spawn('redis-server', ['--port', '6379', '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
  for (let i = 0; i < 100 && !(await reachable(6379)); i++) await new Promise((r) => setTimeout(r, 50));
}

const spillway = spawn(process.execPath, ['bin/spillway.js', 'start', ...process.argv.slice(2)], { stdio: 'inherit' });
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => spillway.kill(signal));
spillway.on('exit', (code) => {
  redis?.kill();
  process.exit(code ?? 1);
});
