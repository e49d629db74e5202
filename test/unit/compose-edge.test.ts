// Static checks of docker-compose.yml and the nginx template against the app's own contracts (ports, grace periods,
// limits, CORS lists, error shapes). Reads files only; test/deploy runs the same files for real.
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { CORS_EXPOSED_HEADERS, CORS_METHODS } from '../../src/http/plugins/cors.ts';
import { composeConfig, composeFile, durationSeconds, readText } from '../deploy/files.ts';
import { edgeTemplateVariables, renderEdgeTemplate } from '../deploy/edge.ts';

const CLI_ROLES = new Set(['start', 'ingress', 'worker', 'mock-upstream', 'check-config']);
const compose = composeFile();
const services = Object.entries(compose.services);
const nginxService = compose.services.nginx;

/** The template as the nginx container renders it, with compose's own values (defaults for unset .env entries). */
function nginxConf(): string {
  const env = Object.fromEntries(
    Object.entries(nginxService?.environment ?? {}).map(([k, v]) => [k, String(v).replace(/\$\{[A-Z_]+:-([^}]*)\}/g, '$1')]),
  );
  return renderEdgeTemplate(env).replace(/#.*$/gm, '');
}

function directive(name: string): string[] {
  return [...nginxConf().matchAll(new RegExp(`(?:^|[;{}\\s])${name}\\s+([^;]*);`, 'gm'))].map((m) => (m[1] ?? '').trim());
}

function sizeBytes(text: string): number {
  const match = /^(\d+)([kKmMgG]?)$/.exec(text);
  const factor: Record<string, number> = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 };
  return Number(match?.[1]) * (factor[(match?.[2] ?? '').toLowerCase()] ?? Number.NaN);
}

function memoryBytes(text: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*([kmg]?)b?$/i.exec(text);
  const factor: Record<string, number> = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 };
  return Number(match?.[1]) * (factor[(match?.[2] ?? '').toLowerCase()] ?? Number.NaN);
}

describe('docker-compose', () => {
  const spillwayImage = services.find(([, s]) => s.build !== undefined)?.[1].image;
  const spillwayServices = services.filter(([, s]) => s.build !== undefined || s.image === spillwayImage);

  it('ships a Spillway config that validates, with and without the .env values', () => {
    expect(() => composeConfig()).not.toThrow();
    const config = composeConfig({ SPILLWAY_CORS_ORIGINS: 'https://a.example.com https://b.example.com', SPILLWAY_ADMIN_KEYS: `sha256:${'a'.repeat(64)}` });
    expect(config.server.cors.origins).toEqual(['https://a.example.com', 'https://b.example.com']);
    expect(config.admin.keys).toHaveLength(1);
    expect(composeConfig().admin.keys).toEqual([]);
  });

  it('starts a CLI role in every service that runs the Spillway image', () => {
    expect(spillwayServices.length).toBeGreaterThan(0);
    for (const [name, service] of spillwayServices) expect(CLI_ROLES.has(service.command?.[0] ?? ''), `${name}: ${String(service.command)}`).toBe(true);
    expect(spillwayServices.map(([, s]) => s.command?.[0])).toEqual(expect.arrayContaining(['ingress', 'worker', 'mock-upstream']));
  });

  it('limits the CPU and memory of every service', () => {
    for (const [name, service] of services) {
      expect(Number(service.deploy?.resources?.limits?.cpus), name).toBeGreaterThan(0);
      expect(memoryBytes(service.deploy?.resources?.limits?.memory ?? ''), name).toBeGreaterThan(0);
    }
  });

  it('runs Redis with AOF and noeviction, its maxmemory below the container limit', () => {
    const redis = compose.services.redis;
    const args = redis?.command ?? [];
    expect(args[args.indexOf('--appendonly') + 1]).toBe('yes');
    expect(args[args.indexOf('--maxmemory-policy') + 1]).toBe('noeviction');
    expect(memoryBytes(args[args.indexOf('--maxmemory') + 1] ?? '')).toBeLessThan(memoryBytes(redis?.deploy?.resources?.limits?.memory ?? ''));
    expect(redis?.ports).toBeUndefined();
  });

  it('health-checks nginx on a path it serves, and Prometheus', () => {
    expect(nginxService?.healthcheck?.test.join(' ')).toContain('/edge-health');
    expect(nginxConf()).toMatch(/location = \/edge-health \{[^}]*return 200/);
    expect(compose.services.prometheus?.healthcheck?.test.join(' ')).toContain('/-/healthy');
  });

  it('publishes Prometheus on loopback only', () => {
    const ports = compose.services.prometheus?.ports ?? [];
    expect(ports.length).toBeGreaterThan(0);
    for (const port of ports) expect(port).toMatch(/^127\.0\.0\.1:/);
  });

  it('takes secrets from an .env file that git and the image build both ignore', () => {
    expect(readText('.gitignore').split('\n')).toContain('.env');
    // .dockerignore is an allow-list: everything not re-included is out, .env with it.
    expect(readText('.dockerignore').split('\n')[readText('.dockerignore').split('\n').findIndex((l) => !l.startsWith('#'))]).toBe('*');
    expect(compose.services.ingress?.environment?.OPENAI_API_KEY).toBe('${OPENAI_API_KEY:-}');
    const example = readText('deploy/compose/example.env').split('\n').filter((l) => /^[A-Z_]+=/.test(l));
    expect(example.length).toBeGreaterThan(0);
    for (const line of example) expect(line, 'example.env holds no values').toMatch(/^[A-Z_]+=$/);
  });

  it('lets the ingress finish in-flight requests (server.shutdownGraceMs) before Docker kills it', () => {
    expect(durationSeconds(compose.services.ingress?.stop_grace_period ?? '10s')).toBeGreaterThan(composeConfig().server.shutdownGraceMs / 1000);
  });

  it('lets a worker drain (worker.shutdownGraceMs) and finish an upstream call before Docker kills it', () => {
    const { server, worker } = composeConfig();
    expect(durationSeconds(compose.services.worker?.stop_grace_period ?? '10s')).toBeGreaterThan(Math.max(server.requestTimeoutMs, worker.shutdownGraceMs) / 1000);
  });

  it('binds the mock upstream to all interfaces so worker containers can reach it', () => {
    expect(services.find(([, s]) => s.command?.[0] === 'mock-upstream')?.[1].environment?.HOST).toBe('0.0.0.0');
  });

  it('health-checks and scrapes the workers on the configured worker.metricsPort', () => {
    const port = composeConfig().worker.metricsPort;
    expect(compose.services.worker?.environment?.HEALTHCHECK_URL).toBe(`http://127.0.0.1:${port}/health`);
    const prometheus = parse(readText('deploy/prometheus/prometheus.yml')) as { scrape_configs: { dns_sd_configs?: { names: string[]; port: number }[] }[] };
    const targets = prometheus.scrape_configs.flatMap((job) => job.dns_sd_configs ?? []);
    expect(targets).toEqual(expect.arrayContaining([
      expect.objectContaining({ names: ['worker'], port }),
      expect.objectContaining({ names: ['ingress'], port: composeConfig().server.port }),
    ]));
  });

  it('reaches Redis and every upstream of the compose config through compose service names', () => {
    const config = composeConfig();
    const hosts = [new URL(config.redis.url).hostname, ...config.providers.flatMap((p) => (p.baseUrl ? [new URL(p.baseUrl).hostname] : []))];
    for (const host of hosts) expect(Object.keys(compose.services)).toContain(host);
  });
});

describe('the nginx template and how compose renders it', () => {
  it('gets a value from compose for every ${EDGE_*} it uses, and envsubst replaces only those', () => {
    const env = nginxService?.environment ?? {};
    expect(Object.keys(env).filter((k) => k.startsWith('EDGE_')).sort()).toEqual(edgeTemplateVariables());
    // The image's envsubst takes the filter as the start of a variable name (perl) or as a regex on names (awk).
    expect(env.NGINX_ENVSUBST_FILTER).toBe('EDGE_');
    // Any other ${...} would be emptied by envsubst or left for nginx to misread.
    expect([...readText('deploy/nginx/nginx.conf.template').matchAll(/\$\{([^}]*)\}/g)].map((m) => m[1]).filter((v) => !v?.startsWith('EDGE_'))).toEqual([]);
    expect(env.NGINX_ENVSUBST_OUTPUT_DIR).toBe('/etc/nginx');
    expect((nginxService as { volumes?: string[] }).volumes).toContain('./deploy/nginx/nginx.conf.template:/etc/nginx/templates/nginx.conf.template:ro');
  });

  it('allows the same CORS origins as the Spillway config, from the one .env variable', () => {
    expect(nginxService?.environment?.EDGE_CORS_ORIGINS).toBe('${SPILLWAY_CORS_ORIGINS:-}');
    expect(compose.services.ingress?.environment?.SPILLWAY_CORS_ORIGINS).toBe('${SPILLWAY_CORS_ORIGINS:-}');
    expect(parse(readText('deploy/compose/spillway.yaml')).server.cors.origins).toBe('${SPILLWAY_CORS_ORIGINS:-}');
  });

  it('answers CORS with the methods and exposed headers the ingress uses, hiding the ingress’s own copies', () => {
    const conf = nginxConf();
    expect(conf).toContain(`"${CORS_METHODS.join(', ')}"`);
    expect(conf).toContain(`"${CORS_EXPOSED_HEADERS.join(', ')}"`);
    const hidden = directive('proxy_hide_header').map((h) => h.toLowerCase());
    for (const header of ['access-control-allow-origin', 'access-control-expose-headers', 'access-control-allow-methods', 'access-control-allow-headers', 'access-control-max-age']) {
      expect(hidden).toContain(header);
    }
  });

  it('streams responses unbuffered, as SSE needs', () => {
    expect(directive('proxy_buffering')).toEqual(['off']);
    expect(directive('proxy_http_version')).toEqual(['1.1']);
  });

  it('refuses bodies over server.bodyLimitBytes itself, and says so with the same limit', () => {
    const limit = composeConfig().server.bodyLimitBytes;
    expect(directive('client_max_body_size').map(sizeBytes)).toEqual([limit]);
    expect(nginxConf()).toContain(`the limit is ${limit} bytes`);
  });

  it('waits for an answer as long as a request may live (server.maxDeadlineMs)', () => {
    expect(Number(directive('proxy_read_timeout')[0]?.replace(/s$/, ''))).toBeGreaterThanOrEqual(composeConfig().server.maxDeadlineMs / 1000);
  });

  it('limits requests per client address, with 429', () => {
    expect(directive('limit_req_zone')[0]).toMatch(/^\$binary_remote_addr zone=per_ip:/);
    expect(directive('limit_req_status')).toEqual(['429']);
    expect(directive('limit_req')[0]).toMatch(/^zone=per_ip burst=\d+ nodelay$/);
  });

  it('answers its own 400, 404, 408, 413, 429, 500, 502, 503 and 504 in OpenAI’s error shape', () => {
    const conf = nginxConf();
    const pages = new Map(directive('error_page').flatMap((d) => {
      const parts = d.split(/\s+/);
      const target = parts.pop() ?? '';
      return parts.map((status) => [Number(status), target] as const);
    }));
    expect([...pages.keys()].sort((a, b) => a - b)).toEqual([400, 404, 408, 413, 429, 500, 502, 503, 504]);
    for (const [status, target] of pages) {
      const body = new RegExp(`location ${target} \\{\\s*default_type application/json;\\s*return (\\d+) '([^']*)';`).exec(conf);
      expect(body, `${status} → ${target}`).not.toBeNull();
      expect(JSON.parse((body?.[2] ?? '').replace(/\\n$/, ''))).toEqual({
        error: { message: expect.any(String), type: expect.any(String), param: null, code: status === 500 ? null : expect.any(String) },
      });
      expect([status, status === 503 ? 502 : status]).toContain(Number(body?.[1]));
    }
  });

  it('passes the client address on for the ingress’s one-hop trust, and the client’s request id', () => {
    expect(directive('proxy_set_header')).toEqual(expect.arrayContaining(['X-Forwarded-For $proxy_add_x_forwarded_for', 'X-Request-Id $edge_request_id']));
    expect(composeConfig().server.trustProxy).toBe(true);
  });
});
