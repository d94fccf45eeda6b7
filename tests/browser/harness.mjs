// Shared setup for the browser tests: a static server for www/dist (+ the recordings under
// /fixtures/) on a random free port of 127.0.0.1, with byte ranges (or without, to test the
// fallback), and headless Debian Chromium driven by playwright-core with a fresh profile. Configured by ./dev (see cmd_browser_test):
//   MEMLENS_DIST, MEMLENS_FIXTURES, MEMLENS_SCREENSHOTS, MEMLENS_NODE_MODULES.
import { createRequire } from 'node:module';
import { after, before } from 'node:test';
import { createServer } from 'node:http';
import { closeSync, mkdtempSync, mkdirSync, openSync, readSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { extname, join, normalize, resolve } from 'node:path';

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run the browser tests with ./dev test`);
  return v;
};
export const DIST = resolve(env('MEMLENS_DIST'));
export const FIXTURES = resolve(env('MEMLENS_FIXTURES'));
export const SCREENSHOTS = resolve(env('MEMLENS_SCREENSHOTS'));
const require = createRequire(join(resolve(env('MEMLENS_NODE_MODULES')), 'noop.js'));
const { chromium } = require('playwright-core');

const TYPES = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.css': 'text/css',
  '.wasm': 'application/wasm', '.memlens': 'application/octet-stream',
};

/** The byte range a `Range` header asks of a file of `size` bytes: [start, end] inclusive,
 *  'unsatisfiable', or null for none (or one this server does not do: several ranges). */
export function parseRange(header, size) {
  const m = /^bytes=(\d*)-(\d*)$/.exec(header ?? '');
  if (!m || (m[1] === '' && m[2] === '')) return null;
  let start;
  let end;
  if (m[1] === '') {
    start = Math.max(0, size - Number(m[2])); // the last N bytes
    end = size - 1;
  } else {
    start = Number(m[1]);
    end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  }
  if (start >= size || end < start) return 'unsatisfiable';
  return [start, end];
}

function readPart(file, start, length) {
  const fd = openSync(file, 'r');
  try {
    const buf = Buffer.alloc(length);
    const n = readSync(fd, buf, 0, length, start);
    return buf.subarray(0, n);
  } finally {
    closeSync(fd);
  }
}

/** Serves each [prefix, dir] mount (first match wins) on a random free port of 127.0.0.1,
 *  like any static host: files as they are on disk at each request (a recording being
 *  written grows), GET and HEAD, single byte ranges (206, 416) unless `ranges` is false
 *  (then every answer is the whole file, as from a server without range support).
 *  `delayMs` delays every recording's answer (a slow network); `fail(path)` returning true
 *  makes an answer a 500 (a failing network).
 *  Resolves to { url, close, sent }: `sent(path)` is the body bytes sent for `path` so far. */
function serveMounts(mounts, { ranges = true, delayMs = 0, fail = () => false } = {}) {
  const sent = new Map();
  const server = createServer(async (req, res) => {
    const path = decodeURIComponent(new URL(req.url, 'http://x').pathname);
    const [prefix, dir] = mounts.find(([p]) => path.startsWith(p));
    const root = resolve(dir);
    const file = resolve(root, normalize(path.slice(prefix.length) || 'index.html'));
    const type = TYPES[extname(file)] ?? 'application/octet-stream';
    const recording = extname(file) === '.memlens';
    if (recording && delayMs) await new Promise((ok) => setTimeout(ok, delayMs));
    let size;
    try {
      if (!file.startsWith(root) || !statSync(file).isFile()) throw new Error('not found');
      size = statSync(file).size;
    } catch {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('not found');
      return;
    }
    if (recording && fail(path)) {
      res.writeHead(500, { 'content-type': 'text/plain' });
      res.end('failing on purpose');
      return;
    }
    const headers = { 'content-type': type, 'cache-control': 'no-cache' };
    if (ranges) headers['accept-ranges'] = 'bytes';
    const range = ranges ? parseRange(req.headers.range, size) : null;
    if (range === 'unsatisfiable') {
      res.writeHead(416, { ...headers, 'content-range': `bytes */${size}` });
      res.end();
      return;
    }
    const [start, end] = range ?? [0, size - 1];
    const body = req.method === 'HEAD' ? Buffer.alloc(0) : readPart(file, start, end - start + 1);
    sent.set(path, (sent.get(path) ?? 0) + body.length);
    res.writeHead(range ? 206 : 200, {
      ...headers,
      'content-length': end - start + 1,
      ...(range ? { 'content-range': `bytes ${start}-${end}/${size}` } : {}),
    });
    res.end(body);
  });
  return new Promise((ok) => server.listen(0, '127.0.0.1', () => ok({
    url: `http://127.0.0.1:${server.address().port}/`,
    close: () => new Promise((done) => { server.closeAllConnections(); server.close(done); }),
    sent: (path) => sent.get(path) ?? 0,
  })));
}

/** Serves `DIST` at / and `FIXTURES` at /fixtures/ (`options`: see serveMounts). Resolves
 *  to { url, close, sent }. */
export const serve = (options) => serveMounts([['/fixtures/', FIXTURES], ['/', DIST]], options);

/** Serves `dir` alone at /, like any static host. Resolves to { url, close, sent }. */
export const serveDir = (dir, options) => serveMounts([['/', dir]], options);

/** Headless Chromium with a fresh profile. Resolves to { context, close }. */
export async function browser() {
  const profile = mkdtempSync(join(tmpdir(), 'memlens-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.MEMLENS_CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
           '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1280, height: 900 },
  });
  return {
    context,
    close: async () => { await context.close(); rmSync(profile, { recursive: true, force: true }); },
  };
}

/** A new page that records page errors and console errors (minus expected ones). */
export async function openPage(context, url, { colorScheme = 'light' } = {}) {
  const page = await context.newPage();
  await page.emulateMedia({ colorScheme });
  page.problems = [];
  page.on('pageerror', (e) => page.problems.push(`pageerror: ${e}`));
  page.on('console', (m) => {
    // A 404 from a ?url= test is logged by the browser itself, not by the app.
    if (m.type() === 'error' && !m.text().includes('Failed to load resource')) {
      page.problems.push(`console: ${m.text()}`);
    }
  });
  await page.goto(url);
  await page.waitForSelector('.app');
  return page;
}

/** The accessibility problems axe-core (npm, in MEMLENS_NODE_MODULES) finds on the page as
 *  it is now, of `serious` or `critical` impact: [{ id, impact, help, targets }]. */
export async function accessibilityProblems(page) {
  await page.addScriptTag({ path: require.resolve('axe-core/axe.min.js') });
  const violations = await page.evaluate(async () => (await window.axe.run(document, {
    resultTypes: ['violations'],
  })).violations);
  return violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => ({ id: v.id, impact: v.impact, help: v.help, targets: v.nodes.map((n) => n.target.join(' ')) }));
}

/** Drags across the timeline's plot from its left to its right side, through the middle, as
 *  a user selecting most of the recording does. */
export async function dragAcrossTimeline(page) {
  const box = await page.locator('#timeline-canvas').boundingBox();
  const y = box.y + box.height / 2;
  await page.mouse.move(box.x + 75, y);
  await page.mouse.down();
  await page.mouse.move(box.x + box.width * 0.5, y, { steps: 5 });
  await page.mouse.move(box.x + box.width - 20, y, { steps: 5 });
  await page.mouse.up();
}

/** Saves a screenshot of the whole page, or of the element `selector` names. */
export function screenshot(page, name, selector) {
  mkdirSync(SCREENSHOTS, { recursive: true });
  const path = join(SCREENSHOTS, `${name}.png`);
  return selector ? page.locator(selector).screenshot({ path }) : page.screenshot({ path, fullPage: true });
}

/** Whether the canvas `selector` gets more than `atLeast` painted pixels (see
 *  paintedPixels) within 15 s: the worker answers and the canvas paints on a later frame. */
export async function painted(page, selector, atLeast) {
  for (const deadline = Date.now() + 15000; ;) {
    if ((await paintedPixels(page, selector)) > atLeast) return true;
    if (Date.now() > deadline) return false;
    await page.waitForTimeout(100);
  }
}

/** Pixels of a canvas that differ clearly from the chart background colour. */
export function paintedPixels(page, selector) {
  return page.$eval(selector, (canvas) => {
    const bg = getComputedStyle(canvas).getPropertyValue('--chart-bg').trim();
    const probe = document.createElement('canvas').getContext('2d');
    probe.fillStyle = bg;
    probe.fillRect(0, 0, 1, 1);
    const [br, bgc, bb] = probe.getImageData(0, 0, 1, 1).data;
    const d = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    let n = 0;
    for (let i = 0; i < d.length; i += 4) {
      if (Math.abs(d[i] - br) + Math.abs(d[i + 1] - bgc) + Math.abs(d[i + 2] - bb) > 40) n++;
    }
    return n;
  });
}

/** A temporary folder served alone at / (`serveDir`) and a browser for one test file:
 *  `fill(dir)` puts the site's files in it before the server starts. Its `work`, `server` and
 *  `chrome` are set once the tests run; the folder is removed after them. */
export function dirSession(prefix, fill = () => {}) {
  const env = {};
  before(async () => {
    env.work = mkdtempSync(join(tmpdir(), prefix));
    fill(env.work);
    env.server = await serveDir(env.work);
    env.chrome = await browser();
  });
  after(async () => {
    await env.chrome?.close();
    await env.server?.close();
    if (env.work) rmSync(env.work, { recursive: true, force: true });
  });
  return env;
}

/** The static server (`serve(options)`) and a browser for one test file: started before its
 *  tests, closed after them. Its `server` and `chrome` are set once the tests run. */
export function session(options) {
  const env = {};
  before(async () => {
    env.server = await serve(options);
    env.chrome = await browser();
  });
  after(async () => {
    await env.chrome?.close();
    await env.server?.close();
  });
  return env;
}
