/**
 * The web UI in a real browser (Debian's chromium, headless, driven by
 * playwright-core) against a real topology running the tweets demo: the graph
 * renders the demo's computations and streams, rates update, a swap made with
 * the CLI appears in the timeline, a worker killed with SIGKILL shows as dead,
 * and topology data (log lines with markup) is shown as text. Then the
 * controller's UI routes over plain HTTP: bad paths are 404s, names are
 * validated, the event streams are capped.
 *
 * TOPO_UI_SCREENSHOT=docs/ui.png saves a screenshot of the demo with the
 * counter's panel open after the swap (the README's).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { get, request, type IncomingMessage } from 'node:http';
import { dirname, join, resolve } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { runTopo, startCluster, waitFor, type Cluster } from './harness.js';
import { UI_LIMITS } from '../runtime/controller/uiApi.js';
import { MARKUP } from './fixtures/ui-markup-logger.js';

const CHROMIUM = process.env.TOPO_CHROMIUM ?? '/usr/bin/chromium';
const root = join(import.meta.dirname, '..');
const demo = (name: string): string => join(root, 'examples', 'tweets', `${name}.ts`);
const fixture = (name: string): string => join(root, 'test', 'fixtures', `${name}.ts`);
const DEMO = ['mock-tweets-generator', 'hashtags', 'counter', 'sink'];

let cluster: Cluster;
let browser: Browser;
let page: Page;
/** The UI's address as `topo ui` prints it. */
let uiUrl: string;

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`the web UI tests need Chromium at ${CHROMIUM} (Debian: apt-get update && apt-get install -y chromium; or set TOPO_CHROMIUM)`);
  }
  cluster = await startCluster({ workers: 2 });
  for (const f of ['generator', 'hashtags', 'counter', 'sink']) await cluster.client.deployFile(demo(f));
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'] });
  page = await browser.newPage({ viewport: { width: 1500, height: 1000 } });
}, 90_000);

afterAll(async () => {
  await browser?.close();
  await cluster?.stop();
});

function httpGet(url: string, opts: { method?: string; headers?: Record<string, string> } = {}): Promise<{ code: number; type: string; body: string; headers: IncomingMessage['headers'] }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: opts.method ?? 'GET', headers: opts.headers ?? {} }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ code: res.statusCode ?? 0, type: String(res.headers['content-type'] ?? ''), body, headers: res.headers }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** Opens an event stream and collects its events until `until` says stop (or the timeout), then closes it. */
function readEvents(url: string, until: (events: { type: string; data: string }[]) => boolean, timeoutMs = 15_000): Promise<{ code: number; events: { type: string; data: string }[] }> {
  return new Promise((resolve, reject) => {
    const events: { type: string; data: string }[] = [];
    const req = get(url, (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        return resolve({ code: res.statusCode ?? 0, events });
      }
      let buf = '';
      const timer = setTimeout(() => { req.destroy(); resolve({ code: 200, events }); }, timeoutMs);
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        buf += d;
        let end: number;
        while ((end = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, end);
          buf = buf.slice(end + 2);
          const type = /^event: (.*)$/m.exec(block)?.[1];
          const data = /^data: (.*)$/m.exec(block)?.[1];
          if (type && data !== undefined) events.push({ type, data });
        }
        if (until(events)) {
          clearTimeout(timer);
          req.destroy();
          resolve({ code: 200, events });
        }
      });
    });
    req.on('error', (err) => (events.length ? undefined : reject(err)));
  });
}

describe('topo ui', () => {
  it('is listed by topo --help and has help of its own; an argument is a usage error', async () => {
    const help = await runTopo(['--help']);
    expect(help.stdout).toMatch(/^  ui\s+print the address of the running topology's web UI/m);
    const own = await runTopo(['ui', '--help']);
    expect(own.code).toBe(0);
    expect(own.stdout).toContain('Usage: topo ui [--json] [--nats URL]');
    expect(own.stdout).toMatch(/Examples:\n  topo ui/);
    const extra = await runTopo(['ui', 'counter']);
    expect(extra.code).toBe(2);
    expect(extra.stderr).toContain('unexpected argument for `topo ui`: counter');
  });

  it('prints the address the controller serves the UI on, and --json', async () => {
    const r = await runTopo(['ui', '--nats', cluster.url]);
    expect(r.code, r.stderr).toBe(0);
    const m = /^web UI: (http:\/\/127\.0\.0\.1:\d+\/) {3}metrics: http:\/\/127\.0\.0\.1:\d+\/metrics$/.exec(r.stdout.trim());
    expect(m, r.stdout).not.toBeNull();
    uiUrl = m![1]!;
    expect(uiUrl).toBe(`${(await cluster.client.status()).httpUrl}/`);
    const j = await runTopo(['ui', '--json', '--nats', cluster.url]);
    expect(j.code, j.stderr).toBe(0);
    expect(JSON.parse(j.stdout)).toMatchObject({ url: uiUrl, metrics: `${uiUrl}metrics`, natsUrl: cluster.url });
  });
});

describe('the web UI in Chromium', () => {
  it('renders the demo graph: its computations, streams with their groupings, instances with worker and host', async () => {
    await page.goto(uiUrl);
    await page.locator('[data-computation]').nth(3).waitFor({ timeout: 20_000 });
    const names = await page.locator('[data-computation]').evaluateAll((els) => els.map((e) => e.getAttribute('data-computation')));
    expect(names.sort()).toEqual([...DEMO].sort());
    const edges = await page.locator('[data-edge]').evaluateAll((els) => els.map((e) => ({
      stream: e.getAttribute('data-edge'), from: e.getAttribute('data-from'), to: e.getAttribute('data-to'), label: e.querySelector('.stream-name')?.textContent,
      path: e.querySelector('path')?.getAttribute('d') ?? '',
    })));
    expect(edges.map(({ path: _p, ...e }) => e).sort((a, b) => a.stream!.localeCompare(b.stream!))).toEqual([
      { stream: 'hashtags', from: 'c:hashtags', to: 'c:counter', label: 'hashtags · key' },
      { stream: 'top-hashtags', from: 'c:counter', to: 'c:sink', label: 'top-hashtags · shuffle' },
      { stream: 'tweets', from: 'c:mock-tweets-generator', to: 'c:hashtags', label: 'tweets · shuffle' },
    ]);
    // Laid out: every edge is drawn, and no two computations sit on top of each other.
    for (const e of edges) expect(e.path).toMatch(/^M[\d.]+,[\d.]+( L[\d.]+,[\d.]+)+$/);
    const boxes = await page.locator('[data-computation]').evaluateAll((els) => els.map((e) => { const r = e.getBoundingClientRect(); return { left: r.left, right: r.right, top: r.top, bottom: r.bottom }; }));
    for (let a = 0; a < boxes.length; a++) {
      for (let b = a + 1; b < boxes.length; b++) {
        const [p, q] = [boxes[a]!, boxes[b]!];
        expect(p.right <= q.left || q.right <= p.left || p.bottom <= q.top || q.bottom <= p.top, `boxes ${a} and ${b} overlap`).toBe(true);
      }
    }
    const status = await cluster.client.status();
    const hosts = new Map(status.workers.map((w) => [w.workerId, w.host]));
    for (const c of status.computations) {
      for (const i of c.instances) {
        const chip = page.locator(`[data-instance="${i.instanceId}"]`).first();
        expect(await chip.getAttribute('data-worker')).toBe(i.workerId);
        expect(await chip.textContent()).toContain(`#${i.index} ${i.workerId} @ ${hosts.get(i.workerId)}`);
      }
    }
    expect(await page.locator('[data-worker="w-1"][data-alive="true"]').count()).toBe(1);
    expect(await page.locator('[data-connection="live"]').count()).toBe(1);
  });

  it('updates the rates shown as the records flow', async () => {
    const edge = page.locator('[data-edge="hashtags"]');
    const seen = new Set<string>();
    await waitFor(async () => {
      seen.add((await edge.getAttribute('data-rate')) ?? '');
      return seen.size >= 3 && [...seen].some((r) => Number(r) > 0);
    }, { what: () => `the hashtags edge's rate to change (seen ${[...seen].join(', ')})`, timeoutMs: 20_000, intervalMs: 300 });
    // The label shows the rate the attribute carries, as the status reports it.
    const [rate, label] = await Promise.all([edge.getAttribute('data-rate'), edge.locator('.edge-rate').textContent()]);
    expect(label).toMatch(/^[\d.]+k?\/s/);
    expect(Number(rate)).toBeGreaterThanOrEqual(0);
  });

  it('shows a computation panel; a swap made with the CLI appears in its timeline with its measured pause', async () => {
    await page.locator('[data-computation="counter"]').click();
    const panel = page.locator('[data-panel="counter"]');
    await panel.locator('li[data-action="deploy"]').waitFor({ timeout: 10_000 });
    const samples = Number(await panel.locator('.rate-chart').getAttribute('data-samples'));
    expect(await panel.locator('[data-instance]').count()).toBe(1);

    const swap = await runTopo(['swap', 'counter', demo('counter_v2'), '--nats', cluster.url], { timeoutMs: 90_000 });
    // The demo's swap succeeds (it once rolled back half the time: a fence published before the counter's
    // at-least-once consumers existed was waited for in vain; runtime/worker/instance.ts subscribeInputs).
    expect(swap.code, `${swap.stdout}\n${swap.stderr}`).toBe(0);
    const entry = panel.locator('li[data-action="swap"][data-version="2"]');
    await entry.waitFor({ timeout: 10_000 });
    const recorded = (await cluster.client.history('counter')).find((e) => e.action === 'swap' && e.version === 2)!;
    expect(recorded.result).toBe('ok');
    expect(recorded.pauseMs).toBeDefined();
    expect(await entry.getAttribute('data-result')).toBe(recorded.result);
    expect(await entry.locator('.result').textContent()).toBe(recorded.result);
    expect(await entry.locator('.versions').textContent()).toBe('v1 → v2');
    expect(Number(await entry.locator('.pause').getAttribute('data-pause-ms'))).toBe(recorded.pauseMs);
    expect(await entry.locator('.pause').textContent()).toMatch(/^paused \d+(\.\d)? m?s$/);
    await page.locator('[data-computation="counter"] .version').filter({ hasText: 'v2' }).waitFor({ timeout: 5_000 });
    expect(await panel.locator('[data-version]').first().getAttribute('data-version')).toBe('2');
    // The live log tail shows the new version's lines.
    await panel.locator('.log', { hasText: 'v2' }).first().waitFor({ timeout: 15_000 });
    // The chart kept sampling meanwhile.
    expect(Number(await panel.locator('.rate-chart').getAttribute('data-samples'))).toBeGreaterThan(samples);

    const shot = process.env.TOPO_UI_SCREENSHOT;
    if (shot) {
      mkdirSync(dirname(resolve(root, shot)), { recursive: true });
      await page.screenshot({ path: resolve(root, shot) });
    }
  });

  it('shows topology data as text: markup in log lines is not rendered', async () => {
    await cluster.client.deployFile(fixture('ui-markup-logger'));
    await page.goto(`${uiUrl}#c=ui-markup-logger`);
    const panel = page.locator('[data-panel="ui-markup-logger"]');
    const line = panel.locator('.log', { hasText: 'markup <img' }).first();
    await line.waitFor({ timeout: 20_000 });
    expect(await line.textContent()).toContain(`markup ${MARKUP}`);
    expect(await page.locator('.logs img, .logs b').count()).toBe(0);
    expect(await page.locator('body').getAttribute('data-injected')).toBeNull();
    // The stream with no reader is drawn as a stream node, named as text.
    expect(await page.locator('[data-stream="ui-markup"]').textContent()).toBe('ui-markup');
  });
  it('draws a fusion group around computations fused with the CLI', async () => {
    await cluster.client.deployFile(fixture('ui-markup-relay'));
    const fuse = await runTopo(['fuse', 'ui-markup-logger', 'ui-markup-relay', '--nats', cluster.url], { timeoutMs: 60_000 });
    expect(fuse.code, `${fuse.stdout}\n${fuse.stderr}`).toBe(0);
    const group = (await cluster.client.status()).computations.find((c) => c.name === 'ui-markup-relay')?.group;
    expect(group).toBeDefined();
    const box = page.locator(`[data-group="${group}"]`);
    await box.waitFor({ timeout: 10_000 });
    expect(await box.locator('text').textContent()).toBe(`fused: ${group}`);
    const outer = (await box.locator('rect').boundingBox())!;
    for (const name of ['ui-markup-logger', 'ui-markup-relay']) {
      const inner = (await page.locator(`[data-computation="${name}"] rect.box`).boundingBox())!;
      expect(inner.x >= outer.x && inner.y >= outer.y && inner.x + inner.width <= outer.x + outer.width && inner.y + inner.height <= outer.y + outer.height, `${name} inside ${group}`).toBe(true);
    }
    // Computations outside the group are drawn outside it.
    const counter = (await page.locator('[data-computation="counter"] rect.box').boundingBox())!;
    expect(counter.x >= outer.x + outer.width || counter.y >= outer.y + outer.height || counter.x + counter.width <= outer.x || counter.y + counter.height <= outer.y).toBe(true);
  });

  it('lists a computation\'s latest dead letters in its panel, markup in errors and values shown as text', async () => {
    await page.goto(`${uiUrl}#c=ui-markup-relay`);
    const panel = page.locator('[data-panel="ui-markup-relay"]');
    const letter = panel.locator('.dead-letters li').first();
    await letter.waitFor({ timeout: 20_000 });
    expect(await letter.locator('b').textContent()).toBe('processRecord threw');
    expect(await letter.locator('.dl-error').textContent()).toContain('<i>refused</i> {"html":"<img');
    expect(await letter.locator('.dl-record').textContent()).toContain(JSON.stringify({ html: MARKUP }));
    expect(await page.locator('.dead-letters i, .dead-letters img').count()).toBe(0);
    expect(Number(await panel.locator('[data-dead-letters]').getAttribute('data-dead-letters'))).toBeGreaterThan(0);
  });

  it("colours an edge by how much of each second its producer is held back by the consumer's credit", async () => {
    const chain = ['ui-slow-sink', 'ui-flood-relay', 'ui-flood'];
    for (const f of chain) await cluster.client.deployFile(fixture(f));
    try {
      const edge = page.locator('[data-edge="ui-flood-out"]');
      // Read in one go: the class, the colour drawn and the share it stands for change every second.
      const held = await waitFor(async () => {
        const seen = await edge.evaluate((e) => ({
          cls: e.getAttribute('class') as string,
          bp: Number(e.getAttribute('data-backpressure')),
          stroke: e.ownerDocument.defaultView.getComputedStyle(e.querySelector('path')).stroke as string,
        }));
        return seen.cls.includes('pressure-high') ? seen : undefined;
      }, { what: 'the ui-flood-out edge drawn as held back', timeoutMs: 40_000, intervalMs: 200 });
      expect(held.bp).toBeGreaterThanOrEqual(0.25);
      const legend = await page.locator('.legend i.pressure-high').evaluate((e) => e.ownerDocument.defaultView.getComputedStyle(e).backgroundColor as string);
      expect(held.stroke).toBe(legend);
      const flowing = await page.locator('[data-edge="tweets"]').evaluate((e) => ({
        cls: e.getAttribute('class') as string, stroke: e.ownerDocument.defaultView.getComputedStyle(e.querySelector('path')).stroke as string,
      }));
      if (flowing.cls.includes('pressure-none')) expect(flowing.stroke).not.toBe(held.stroke);
    } finally {
      for (const name of [...chain].reverse()) await cluster.client.kill(name).catch(() => undefined);
    }
  });

  it('shows a worker killed with SIGKILL as dead, and its instances placed elsewhere', async () => {
    // The busier worker, so its instances have to move.
    const busiest = (await cluster.client.status()).workers.sort((a, b) => b.instances - a.instances)[0]!;
    expect(busiest.instances).toBeGreaterThan(0);
    const [victim, survivor] = busiest.workerId === 'w-1' ? [1, 'w-2'] : [2, 'w-1'];
    await cluster.killWorker(victim, 'SIGKILL');
    const dead = page.locator(`[data-worker="w-${victim}"][data-alive="false"]`);
    await dead.waitFor({ timeout: 30_000 });
    expect(await dead.textContent()).toContain('DEAD');
    // Re-placed on the live worker: every instance chip ends up on w-2, running.
    await waitFor(async () => {
      const chips = await page.locator('[data-computation] [data-instance]').evaluateAll((els) => els.map((e) => `${e.getAttribute('data-worker')}:${e.getAttribute('data-state')}`));
      return chips.length >= DEMO.length && chips.every((c) => c === `${survivor}:running`) ? chips : undefined;
    }, { what: `every instance running on ${survivor}`, timeoutMs: 30_000, intervalMs: 300 });
  });
});

describe("the controller's UI routes", () => {
  const at = (path: string): string => new URL(path, uiUrl).href;

  it('serves the page with a CSP allowing nothing from elsewhere, the bundle, and the status as JSON', async () => {
    const page = await httpGet(uiUrl);
    expect(page.code).toBe(200);
    expect(page.type).toBe('text/html; charset=utf-8');
    expect(page.headers['content-security-policy']).toContain("default-src 'self'");
    expect(page.body).toContain('<script type="module" src="app.js"></script>');
    for (const f of ['app.js', 'app.css']) {
      const r = await httpGet(at(f), { method: 'HEAD' });
      expect(r.code, f).toBe(200);
      expect(Number(r.headers['content-length'])).toBeGreaterThan(1000);
    }
    const s = await httpGet(at('api/status'));
    expect(s.code).toBe(200);
    const names = (JSON.parse(s.body) as { computations: { name: string }[] }).computations.map((c) => c.name);
    expect(names).toEqual(expect.arrayContaining(DEMO));
  });

  it('answers 404 for what is not there, names that cannot be names, and paths that walk out of the UI folder', async () => {
    const cases: [string, RegExp][] = [
      ['nope.js', /nothing at \/nope\.js/],
      ['../package.json', /nothing at \/package\.json/], // the URL parser already drops the ..
      ['%2e%2e/package.json', /nothing at/],
      ['..%2fpackage.json', /nothing at/],
      ['dist/ui/app.js', /nothing at/],
      ['api/nope', /nothing at/],
      ['api/history/never-deployed', /no history for never-deployed: it was never deployed/],
      ['api/history/..%2F..%2Fetc', /no such computation name/],
      ['api/history/%3Cscript%3E', /no such computation name/],
      ['api/history/a/b', /no such computation name/],
      ['api/history/%E0%A4%A', /no such computation name/],
      ['api/logs/never-deployed', /never-deployed was never deployed/],
      ['api/dead-letters/never-deployed', /never-deployed was never deployed/],
      ['api/dead-letters/%3Cb%3E', /no such computation name/],
      ['api/logs/%3Cimg%3E', /no such computation name/],
    ];
    for (const [path, message] of cases) {
      const r = await httpGet(at(path));
      expect(r.code, path).toBe(404);
      expect(r.type, path).toBe('text/plain; charset=utf-8');
      expect(r.body, path).toMatch(message);
    }
    const post = await httpGet(at('api/status'), { method: 'POST' });
    expect(post.code).toBe(405);
  });

  it('answers only requests for a loopback host (a page elsewhere rebinding its name to 127.0.0.1 gets nothing)', async () => {
    const port = new URL(uiUrl).port;
    for (const host of [`localhost:${port}`, `127.0.0.1:${port}`]) expect((await httpGet(at('api/status'), { headers: { host } })).code, host).toBe(200);
    for (const path of ['', 'app.js', 'api/status', 'api/history/counter', 'api/events', 'api/logs/counter']) {
      const r = await httpGet(at(path), { headers: { host: `rebound.example:${port}` } });
      expect(r.code, path).toBe(403);
      expect(r.body).toContain(`this UI answers requests for 127.0.0.1:${port} only`);
    }
  });

  it('answers a history without the metadata, newest last', async () => {
    const r = await httpGet(at('api/history/counter'));
    expect(r.code).toBe(200);
    const { entries } = JSON.parse(r.body) as { entries: { action: string; version: number; metadata?: unknown }[] };
    const recorded = await cluster.client.history('counter');
    expect(entries.map((e) => [e.action, e.version])).toEqual(recorded.map((e) => [e.action, e.version]));
    expect(entries.some((e) => e.metadata !== undefined)).toBe(false);
  });

  it('answers the latest dead letters, bounded, oldest first, with their values as cut-short text', async () => {
    const r = await httpGet(at('api/dead-letters/ui-markup-relay'));
    expect(r.code).toBe(200);
    const { deadLetters } = JSON.parse(r.body) as { deadLetters: { seq: number; reason: string; stream: string; value?: string }[] };
    expect(deadLetters.length).toBeGreaterThan(0);
    expect(deadLetters.length).toBeLessThanOrEqual(UI_LIMITS.deadLetters);
    expect(deadLetters.map((d) => d.seq)).toEqual([...deadLetters.map((d) => d.seq)].sort((a, b) => a - b));
    for (const d of deadLetters) expect(d).toMatchObject({ reason: 'processRecord threw', stream: 'ui-markup', value: JSON.stringify({ html: MARKUP }) });
    const none = await httpGet(at('api/dead-letters/counter'));
    expect(JSON.parse(none.body)).toEqual({ name: 'counter', deadLetters: [] });
  });

  it('streams the status every second and a log tail, and caps the event clients', async () => {
    const started = Date.now();
    const status = await readEvents(at('api/events'), (ev) => ev.length >= 3);
    expect(status.events.map((e) => e.type)).toEqual(['status', 'status', 'status']);
    // The first at once, then one a second (on the feed's shared clock, so the second may come sooner).
    expect(Date.now() - started).toBeGreaterThanOrEqual(900);
    expect((JSON.parse(status.events[2]!.data) as { computations: unknown[] }).computations.length).toBeGreaterThanOrEqual(DEMO.length);

    const logs = await readEvents(at('api/logs/ui-markup-logger'), (ev) => ev.some((e) => e.type === 'log'));
    const line = JSON.parse(logs.events.find((e) => e.type === 'log')!.data) as { index: number; line: { msg: string } };
    expect(line.index).toBe(0);
    expect(line.line.msg).toContain('markup');

    // Every status slot taken (the browser page holds one): the next client is refused, not queued.
    const held: IncomingMessage[] = [];
    try {
      for (let k = 0; k < UI_LIMITS.statusClients; k++) {
        const res = await new Promise<IncomingMessage>((resolve, reject) => get(at('api/events'), resolve).on('error', reject));
        held.push(res);
      }
      expect(held.filter((r) => r.statusCode === 503).length).toBeGreaterThanOrEqual(1);
      const refused = held.find((r) => r.statusCode === 503)!;
      const body = await new Promise<string>((resolve) => { let b = ''; refused.setEncoding('utf8').on('data', (d: string) => (b += d)).on('end', () => resolve(b)); });
      expect(body).toContain(`too many UI clients (${UI_LIMITS.statusClients})`);
    } finally {
      for (const r of held) r.destroy();
    }
  });
});

describe('topo ui, when there is no UI to show', () => {
  it('says no topology runs here', async () => {
    const empty = mkdtempSync(join(tmpdir(), 'topo-ui-none-'));
    try {
      const r = await runTopo(['ui'], { cwd: empty });
      expect(r.code).toBe(1);
      expect(r.stderr.trim()).toBe('topo: no running topo found here: run `topo up` first, or pass --nats URL');
    } finally {
      rmSync(empty, { recursive: true, force: true });
    }
  });

  it('says the controller serves no HTTP (TOPO_HTTP=off)', async () => {
    const off = await startCluster({ workers: 1, env: { TOPO_HTTP: 'off' } });
    try {
      expect((await off.client.status()).httpUrl).toBeUndefined();
      const r = await runTopo(['ui', '--nats', off.url]);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain('topo: the controller serves no HTTP (it was started with TOPO_HTTP=off');
      expect(r.stdout).toBe('');
    } finally {
      await off.stop();
    }
  });
});
