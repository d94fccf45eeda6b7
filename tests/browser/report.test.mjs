// `memlens report`: the static folder served over HTTP and the single HTML file opened from
// disk (file://) both open their recording with no ?url= and draw it, in headless Chromium.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createServer } from 'node:http';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { extname, join, normalize, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

import { FIXTURES, browser, openPage, paintedPixels, screenshot } from './harness.mjs';

const MEMLENS = resolve(process.env.MEMLENS_BIN ?? 'target/release/memlens');
const recording = join(FIXTURES, 'big_alloc.memlens');
const TYPES = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css', '.wasm': 'application/wasm' };

let chrome;
let work;
before(async () => {
  chrome = await browser();
  work = mkdtempSync(join(tmpdir(), 'memlens-report-'));
});
after(async () => {
  await chrome?.close();
  rmSync(work, { recursive: true, force: true });
});

/** A static server for `dir`, like any static host: no memlens code on the server. */
function serveDir(dir) {
  const server = createServer((req, res) => {
    const rel = decodeURIComponent(new URL(req.url, 'http://x').pathname).slice(1) || 'index.html';
    const file = resolve(dir, normalize(rel));
    try {
      if (!file.startsWith(resolve(dir)) || !statSync(file).isFile()) throw new Error('404');
      res.writeHead(200, { 'content-type': TYPES[extname(file)] ?? 'application/octet-stream' });
      res.end(readFileSync(file));
    } catch {
      res.writeHead(404);
      res.end();
    }
  });
  return new Promise((ok) => server.listen(0, '127.0.0.1', () => ok({
    url: `http://127.0.0.1:${server.address().port}/`,
    close: () => new Promise((done) => server.close(done)),
  })));
}

/** The page shows big_alloc's recording: header facts and a painted flame graph. */
async function assertShowsBigAlloc(page) {
  await page.waitForSelector('#command-line', { timeout: 30000 });
  assert.match(await page.textContent('#command-line'), /big_alloc\.py/);
  assert.match(await page.textContent('.app'), /100 MiB/);
  await page.waitForFunction(() => document.querySelector('#flame-canvas')?.width > 0);
  assert.ok(await paintedPixels(page, '#flame-canvas') > 1000, 'flame graph painted');
}

describe('memlens report', () => {
  test('a static folder opens its recording from any static host', async () => {
    const dir = join(work, 'site');
    execFileSync(MEMLENS, ['report', recording, '-o', dir], { stdio: 'pipe' });
    const server = await serveDir(dir);
    try {
      const page = await openPage(chrome.context, server.url);
      await assertShowsBigAlloc(page);
      await screenshot(page, 'report-folder');
      assert.deepEqual(page.problems, []);
      await page.close();
    } finally {
      await server.close();
    }
  });

  test('a single HTML file opens from disk with no server', async () => {
    const file = join(work, 'report.html');
    execFileSync(MEMLENS, ['report', recording, '--single-file', '-o', file], { stdio: 'pipe' });
    const html = readFileSync(file, 'utf8');
    assert.doesNotMatch(html, /src="|href="memlens/, 'nothing loaded from beside the file');
    const page = await openPage(chrome.context, pathToFileURL(file).href);
    await assertShowsBigAlloc(page);
    await screenshot(page, 'report-single-file');
    assert.deepEqual(page.problems, []);
    await page.close();
  });
});
