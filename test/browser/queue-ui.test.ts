// The queue UI in a real browser: Debian's chromium (driven by playwright-core, headless, empty profile) against a
// split-mode Spillway with an admin key. Logs in with HTTP Basic, sees the completions queue with its counts after
// some traffic, and saves a screenshot (test-artifacts/queue-ui.png, kept by CI) for a human to look at.
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import OpenAI from 'openai';
import { chromium, type BrowserContext } from 'playwright-core';
import { startCluster, TENANT_KEY, type Cluster } from '../support/spillway-cluster.ts';

const ADMIN_KEY = 'sk-admin-browser-0123456789';
/** Debian's package; never a downloaded browser. CHROMIUM_PATH points elsewhere when needed. */
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const ARTIFACTS = resolve(import.meta.dirname, '../../test-artifacts');
const SCREENSHOT = join(ARTIFACTS, 'queue-ui.png');
const COMPLETED = 3;
const PROMPT = 'a prompt only the tenant may read';

let cluster: Cluster;
let profiles: string[] = [];
const contexts: BrowserContext[] = [];

beforeAll(async () => {
  cluster = await startCluster({
    redisUrl: inject('redisUrl'),
    workers: 1,
    config: {
      admin: { keys: [`sha256:${createHash('sha256').update(ADMIN_KEY).digest('hex')}`] },
      // Completed jobs are removed at once by default; kept a minute here so the board can show them.
      jobs: { keepCompletedSeconds: 60 },
    },
  });
  // Traffic: a few answers (completed jobs) and one stream.
  const client = new OpenAI({ baseURL: `${cluster.baseUrl}/v1`, apiKey: TENANT_KEY, maxRetries: 0 });
  const chat = { model: 'gpt-4o-mini', messages: [{ role: 'user' as const, content: PROMPT }] };
  for (let i = 0; i < COMPLETED - 1; i += 1) await client.chat.completions.create(chat);
  for await (const chunk of await client.chat.completions.create({ ...chat, stream: true })) void chunk;
}, 60_000);

afterAll(async () => {
  for (const context of contexts) await context.close();
  await cluster?.close();
  for (const dir of profiles) rmSync(dir, { recursive: true, force: true });
  profiles = [];
});

/** A fresh headless chromium with an empty profile; `password` is sent as HTTP Basic when the server asks. */
async function browser(password?: string): Promise<BrowserContext> {
  const profile = mkdtempSync(join(tmpdir(), 'spillway-chromium-'));
  profiles.push(profile);
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
    viewport: { width: 1280, height: 800 },
    ...(password === undefined ? {} : { httpCredentials: { username: 'ops', password } }),
  });
  contexts.push(context);
  return context;
}

it('a browser without the admin key gets the 401 challenge, not the board', async () => {
  const page = await (await browser()).newPage();
  const url = `${cluster.baseUrl}/admin/queues`;
  // Headless chromium has no password dialog: it ends the navigation (ERR_INVALID_AUTH_CREDENTIALS) once it has
  // the challenge, so the answer is read off the network.
  const [response] = await Promise.all([page.waitForResponse(url), page.goto(url).catch(() => null)]);
  expect(response.status()).toBe(401);
  expect(response.headers()['www-authenticate']).toMatch(/^Basic /);
  expect(await response.text()).not.toContain('completions');
});

it('a browser with a wrong password is refused the same way', async () => {
  const page = await (await browser('sk-admin-wrong-000000')).newPage();
  expect((await page.goto(`${cluster.baseUrl}/admin/queues`))?.status()).toBe(401);
});

it('logs in with HTTP Basic, shows the completions queue with its completed count, and saves a screenshot', async () => {
  const page = await (await browser(ADMIN_KEY)).newPage();
  const response = await page.goto(`${cluster.baseUrl}/admin/queues/queue/completions?status=completed`);
  expect(response?.status()).toBe(200);
  // The board is a single-page app: its data arrives from /admin/queues/api/queues, behind the same key.
  await page.getByText('completions', { exact: true }).first().waitFor({ timeout: 20_000 });
  const completedTab = page.getByRole('link', { name: /completed/i }).first();
  await expect.poll(async () => completedTab.textContent(), { timeout: 20_000 }).toMatch(new RegExp(`completed\\D*${COMPLETED}$`, 'i'));
  mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: SCREENSHOT, fullPage: true });
  // The jobs of that traffic are listed (ids are UUIDs) with their envelope, the tenant's prompt hidden; the board
  // offers no destructive action.
  await page.getByText(/^[0-9a-f]{8}-[0-9a-f]{4}-/).first().waitFor({ timeout: 20_000 });
  await page.getByText('"(hidden: ').first().waitFor({ timeout: 20_000 });
  expect(await page.content()).not.toContain(PROMPT);
  expect(await page.getByRole('button', { name: /clean|retry|empty|obliterate|add job|promote/i }).count()).toBe(0);
});
