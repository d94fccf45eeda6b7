// `memlens report`: the static folder served over HTTP and the single HTML file opened from
// disk (file://) both open their recording with no ?url= and draw it, in headless Chromium.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

import { FIXTURES, browser, openPage, painted, screenshot, serveDir } from './harness.mjs';

const MEMLENS = resolve(process.env.MEMLENS_BIN ?? 'target/release/memlens');
const recording = join(FIXTURES, 'big_alloc.memlens');

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

/** The page shows big_alloc's recording: header facts and a painted flame graph. */
async function assertShowsBigAlloc(page) {
  await page.waitForSelector('#command-line', { timeout: 30000 });
  assert.match(await page.textContent('#command-line'), /big_alloc\.py/);
  assert.match(await page.textContent('.app'), /100 MiB/);
  await page.waitForFunction(() => document.querySelector('#flame-canvas')?.width > 0);
  assert.ok(await painted(page, '#flame-canvas', 1000), 'flame graph painted');
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
