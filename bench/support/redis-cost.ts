// What a measured phase cost the bench's Redis, from the server's own counters: INFO commandstats (calls and execution
// time per command) and INFO cpu, read before and after. Never resets the server's statistics (CONFIG RESETSTAT).
import type { Redis } from 'ioredis';

export interface RedisSnapshot {
  /** used_cpu_user + used_cpu_sys: every thread of redis-server, µs resolution (getrusage). */
  cpuS: number;
  /** The same for the main thread alone (Redis ≥ 6.2), NaN when the server does not report it. */
  mainThreadCpuS: number;
  /** Lower-case command name (`evalsha`, `client|setname`) → calls and µs spent executing it. */
  commands: Record<string, CommandStat>;
}

export interface CommandStat {
  calls: number;
  usec: number;
}

export interface RedisCost {
  /** Every command Redis ran, the ones a Lua script ran counted too (INFO commandstats counts them on their own rows). */
  commands: number;
  /** EVAL/EVALSHA/FCALL calls: each is one round trip that runs several of the commands above. */
  scripts: number;
  cpuUs: number;
  mainThreadCpuUs: number;
  byCommand: Record<string, CommandStat>;
}

/** The bench's own probes: never part of what a phase cost. */
const PROBES = new Set(['info']);
const SCRIPT_COMMANDS = new Set(['eval', 'evalsha', 'eval_ro', 'evalsha_ro', 'fcall', 'fcall_ro']);

export async function redisSnapshot(client: Redis): Promise<RedisSnapshot> {
  const [stats, cpu] = await Promise.all([client.info('commandstats'), client.info('cpu')]);
  const commands: Record<string, CommandStat> = {};
  for (const match of stats.matchAll(/^cmdstat_([^:]+):calls=(\d+),usec=(\d+)/gm)) {
    commands[match[1]!] = { calls: Number(match[2]), usec: Number(match[3]) };
  }
  const field = (name: string) => Number(new RegExp(`^${name}:([\\d.]+)`, 'm').exec(cpu)?.[1] ?? Number.NaN);
  return {
    cpuS: field('used_cpu_user') + field('used_cpu_sys'),
    mainThreadCpuS: field('used_cpu_user_main_thread') + field('used_cpu_sys_main_thread'),
    commands,
  };
}

export function redisCost(before: RedisSnapshot, after: RedisSnapshot): RedisCost {
  const byCommand: Record<string, CommandStat> = {};
  let commands = 0;
  let scripts = 0;
  for (const [name, stat] of Object.entries(after.commands)) {
    if (PROBES.has(name)) continue;
    const calls = stat.calls - (before.commands[name]?.calls ?? 0);
    if (calls <= 0) continue;
    byCommand[name] = { calls, usec: stat.usec - (before.commands[name]?.usec ?? 0) };
    commands += calls;
    if (SCRIPT_COMMANDS.has(name)) scripts += calls;
  }
  return {
    commands,
    scripts,
    cpuUs: 1e6 * (after.cpuS - before.cpuS),
    mainThreadCpuUs: 1e6 * (after.mainThreadCpuS - before.mainThreadCpuS),
    byCommand,
  };
}

/** Separates a phase's per-command metrics from the rest: `${phase}_redis_calls_per_req:${command}`. */
export const COMMAND_SEPARATOR = ':';

/**
 * Flat metrics of one phase (`spillway`, `raw`): commands, scripts and CPU per request, per chunk when `chunks` is
 * given, and per command (calls and execution µs per request) for the breakdown table.
 */
export function redisMetrics(phase: string, cost: RedisCost, requests: number, chunks?: number): Record<string, number> {
  const per = (value: number, n: number) => (n > 0 ? value / n : Number.NaN);
  const metrics: Record<string, number> = {
    [`${phase}_redis_cmds_per_req`]: per(cost.commands, requests),
    [`${phase}_redis_scripts_per_req`]: per(cost.scripts, requests),
    [`${phase}_redis_cpu_us_per_req`]: per(cost.cpuUs, requests),
    [`${phase}_redis_main_cpu_us_per_req`]: per(cost.mainThreadCpuUs, requests),
  };
  if (chunks !== undefined) {
    metrics[`${phase}_redis_cmds_per_chunk`] = per(cost.commands, chunks);
    metrics[`${phase}_redis_cpu_us_per_chunk`] = per(cost.cpuUs, chunks);
  }
  for (const [name, stat] of Object.entries(cost.byCommand)) {
    metrics[`${phase}_redis_calls_per_req${COMMAND_SEPARATOR}${name}`] = per(stat.calls, requests);
    metrics[`${phase}_redis_usec_per_req${COMMAND_SEPARATOR}${name}`] = per(stat.usec, requests);
  }
  return metrics;
}

/** Spillway's Redis cost as a share of the raw BullMQ round trip's, measured in the same run. */
export function redisComparison(metrics: Record<string, number>): Record<string, number> {
  const pct = (name: string) => (100 * (metrics[`spillway_${name}`] ?? Number.NaN)) / (metrics[`raw_${name}`] ?? Number.NaN);
  return { spillway_redis_cmds_pct_of_raw: pct('redis_cmds_per_req'), spillway_redis_cpu_pct_of_raw: pct('redis_cpu_us_per_req') };
}

/** Background Redis work while Spillway is idle (its direct phase): the noise under every per-request figure. */
export function idleMetrics(cost: RedisCost, seconds: number): Record<string, number> {
  return { idle_redis_cmds_per_s: cost.commands / seconds, idle_redis_cpu_us_per_s: cost.cpuUs / seconds };
}
