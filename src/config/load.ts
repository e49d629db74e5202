// Loads the configuration: YAML file (or the built-in dev default), ${VAR} interpolation, env overrides, zod.
// The only module that reads process.env; it never prints a secret, and a bad file is a ConfigError, not a stack trace.
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import type { z } from 'zod';
import { ConfigSchema, type Config } from './schema.ts';
import { defaultDevConfig } from './default.ts';

export class ConfigError extends Error {
  readonly problems: readonly string[];
  constructor(source: string, problems: readonly string[]) {
    super(`invalid configuration (${source}):\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

export interface LoadOptions {
  /** Path given with --config; falls back to SPILLWAY_CONFIG, then to the built-in dev config. */
  file?: string | undefined;
  env?: NodeJS.ProcessEnv;
}

export interface LoadedConfig {
  config: Config;
  /** Where it came from: a file path or "built-in dev config". */
  source: string;
}

export function loadConfig(options: LoadOptions = {}): LoadedConfig {
  const env = options.env ?? process.env;
  const file = options.file ?? (env.SPILLWAY_CONFIG || undefined);
  let raw: unknown;
  let source: string;
  if (file === undefined) {
    raw = defaultDevConfig();
    source = 'built-in dev config';
  } else {
    source = file;
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      throw new ConfigError(source, [`cannot read the file: ${(err as NodeJS.ErrnoException).code ?? String(err)}`]);
    }
    try {
      raw = parseYaml(text);
    } catch (err) {
      throw new ConfigError(source, [`not valid YAML: ${(err as Error).message.split('\n')[0]}`]);
    }
    const problems: string[] = [];
    raw = interpolate(raw, env, [], problems);
    if (problems.length > 0) throw new ConfigError(source, problems);
  }
  return { config: parseConfig(applyEnvOverrides(raw, env), source), source };
}

/** Validates an already-built object (tests and the built-in default use this directly). */
export function parseConfig(raw: unknown, source = 'inline config'): Config {
  const result = ConfigSchema.safeParse(raw);
  if (!result.success) throw new ConfigError(source, formatIssues(result.error.issues));
  return deepFreeze(result.data);
}

function formatIssues(issues: readonly z.core.$ZodIssue[]): string[] {
  return issues.map((issue) => {
    const path = formatPath(issue.path);
    if (issue.code === 'unrecognized_keys') {
      return `${path || '(root)'}: unknown field${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `"${k}"`).join(', ')}`;
    }
    return `${path || '(root)'}: ${issue.message}`;
  });
}

function formatPath(path: readonly PropertyKey[]): string {
  return path.map((part, i) => (typeof part === 'number' ? `[${part}]` : `${i === 0 ? '' : '.'}${String(part)}`)).join('');
}

const VAR = /\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g;

/** Replaces ${NAME} and ${NAME:-default} in every string of the document; a missing variable is a problem. */
function interpolate(value: unknown, env: NodeJS.ProcessEnv, path: PropertyKey[], problems: string[]): unknown {
  if (typeof value === 'string') {
    return value.replace(VAR, (_match, name: string, fallback: string | undefined) => {
      const found = env[name];
      if (found !== undefined && found !== '') return found;
      if (fallback !== undefined) return fallback;
      problems.push(`${formatPath(path)}: environment variable ${name} is not set`);
      return '';
    });
  }
  if (Array.isArray(value)) return value.map((item, i) => interpolate(item, env, [...path, i], problems));
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, interpolate(v, env, [...path, k], problems)]));
  }
  return value;
}

/** REDIS_URL and PORT win over the file (twelve-factor deployments set them). */
function applyEnvOverrides(raw: unknown, env: NodeJS.ProcessEnv): unknown {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) return raw;
  const doc = { ...(raw as Record<string, unknown>) };
  if (env.REDIS_URL) doc.redis = { ...asObject(doc.redis), url: env.REDIS_URL };
  if (env.PORT) {
    const port = Number(env.PORT);
    doc.server = { ...asObject(doc.server), port: Number.isInteger(port) ? port : env.PORT };
  }
  return doc;
}

function asObject(value: unknown): Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : {};
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value)) deepFreeze(child);
  }
  return value;
}
