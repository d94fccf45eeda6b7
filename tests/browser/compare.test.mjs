// Compare mode on real recordings of tests/scripts/diff_app.py (VARIANT=base and head, made
// by ./dev into $MEMLENS_FIXTURES/compare/): the head's index is 20 MiB bigger at the peak and
// it keeps an 8 MiB cache alive until exit.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

import { FIXTURES, openPage, painted, screenshot, session } from './harness.mjs';

const MEMLENS = resolve(process.env.MEMLENS_BIN ?? 'target/release/memlens');
const BASE = join(FIXTURES, 'compare', 'base.memlens');
const HEAD = join(FIXTURES, 'compare', 'head.memlens');

const env = session();
let work;
before(() => {
  work = mkdtempSync(join(tmpdir(), 'memlens-compare-'));
});
after(() => {
  rmSync(work, { recursive: true, force: true });
});

/** Function names of the delta table's rows, top first. */
const deltaFunctions = (page) =>
  page.$$eval('#delta-table tbody tr td.fn', (cells) => cells.map((c) => c.textContent));

/** Waits for the compare view and checks what diff_app's two variants must show at the peak. */
async function assertPeakComparison(page) {
  await page.waitForSelector('#delta-table tbody tr td.fn', { timeout: 30000 });
  const fns = await deltaFunctions(page);
  assert.equal(fns[0], 'build_index', `build_index grew most: ${fns.join(', ')}`);
  const first = await page.textContent('#delta-table tbody tr');
  assert.match(first, /40\.0 MiB.*60\.0 MiB.*\+20\.0 MiB \(\+50%\)/);
  assert.match(await page.textContent('#cmp-peak-heap'), /\+2\d\.\d MiB/);
  await page.waitForFunction(() => document.querySelector('#diff-flame-canvas')?.width > 0);
  assert.ok(await painted(page, '#diff-flame-canvas', 2000), 'diff flame graph painted');
  assert.ok(await painted(page, '#compare-timeline-canvas', 2000), 'timelines painted');
}

/** The differential flame graph's pixel colour at (fx, row) as [r, g, b]. */
async function flamePixel(page, fx, row) {
  return page.$eval('#diff-flame-canvas', (c, [fx, row]) => {
    const dpr = c.width / c.getBoundingClientRect().width;
    const x = Math.floor(c.width * fx);
    const y = Math.floor((row * 20 + 10) * dpr);
    return Array.from(c.getContext('2d').getImageData(x, y, 1, 1).data.slice(0, 3));
  }, [fx, row]);
}

describe('compare mode', () => {
  test('?base=&head= shows the delta table, the diff flame graph and both timelines', async () => {
    const page = await openPage(env.chrome.context,
      `${env.server.url}?base=fixtures/compare/base.memlens&head=fixtures/compare/head.memlens`);
    await assertPeakComparison(page);
    assert.match(await page.textContent('#file-name'), /base\.memlens → .*head\.memlens/);
    assert.match(await page.textContent('#diff-legend'), /grew.*shrank.*new in head.*gone in head.*within noise/);
    // Row 0 is "all": the heap grew, so it is orange.
    const [r, , b] = await flamePixel(page, 0.3, 0);
    assert.ok(r > b + 40, `the root grew, so it is orange: rgb ${r},${b}`);
    // Hovering a frame tells base, head and the change.
    const box = await page.locator('#diff-flame-canvas').boundingBox();
    await page.mouse.move(box.x + box.width * 0.3, box.y + 10);
    const tip = page.locator('.tooltip');
    await tip.waitFor();
    assert.match(await tip.textContent(), /Head: .*Base: .*Change: \+/);
    await screenshot(page, 'compare');
    assert.deepEqual(page.problems, []);
    await page.close();
  });

  test('leaks mode puts the new cache first; the noise threshold lives in the URL', async () => {
    const page = await openPage(env.chrome.context,
      `${env.server.url}?base=fixtures/compare/base.memlens&head=fixtures/compare/head.memlens`);
    await assertPeakComparison(page);
    await page.click('button[data-mode="leaks"]');
    await page.waitForFunction(() => location.hash.includes('mode=leaks'));
    await page.waitForFunction(() =>
      document.querySelector('#delta-table tbody td.fn')?.textContent === 'remember_results');
    assert.match(await page.textContent('#delta-table tbody tr'), /0 B.*8\.00 MiB.*\+8\.00 MiB \(new\)/);
    await page.selectOption('#noise-threshold', '500');
    await page.waitForFunction(() => location.hash.includes('noise=5'));
    await screenshot(page, 'compare-leaks');
    assert.deepEqual(page.problems, []);
    await page.close();
  });

  test('modes replay in the background: quick switches end on the last mode clicked', async () => {
    const page = await openPage(env.chrome.context,
      `${env.server.url}?base=fixtures/compare/base.memlens&head=fixtures/compare/head.memlens`);
    await assertPeakComparison(page);
    // Leaks, then "total" before leaks can have finished: the leaks replay is abandoned
    // and the total one shows, whatever order the two would have finished in.
    await page.click('button[data-mode="leaks"]');
    await page.click('button[data-mode="total"]');
    await page.waitForFunction(() => location.hash.includes('mode=total'));
    await page.waitForFunction(() =>
      document.querySelector('#delta-table tbody td.fn')?.textContent === 'build_index');
    // In total mode, the head allocated 20 MiB more in build_index (40 -> 60 MiB).
    assert.match(await page.textContent('#delta-table tbody tr'), /40\.0 MiB.*60\.0 MiB.*\+20\.0 MiB/);
    // Back to leaks: computed now, then cached.
    await page.click('button[data-mode="leaks"]');
    await page.waitForFunction(() =>
      document.querySelector('#delta-table tbody td.fn')?.textContent === 'remember_results');
    assert.deepEqual(page.problems, []);
    await page.close();
  });

  test('choosing two files at once opens compare mode', async () => {
    const page = await openPage(env.chrome.context, env.server.url);
    await page.setInputFiles('#file-input', [BASE, HEAD]);
    await assertPeakComparison(page);
    assert.deepEqual(page.problems, []);
    await page.close();
  });

  test('the compare slots take one file each', async () => {
    const page = await openPage(env.chrome.context, env.server.url);
    await page.click('#compare-button');
    await page.waitForSelector('#compare-slots');
    await page.setInputFiles('#base-input', BASE);
    await page.waitForFunction(() => /base\.memlens/.test(document.getElementById('compare-slots').textContent));
    await page.setInputFiles('#head-input', HEAD);
    await assertPeakComparison(page);
    assert.deepEqual(page.problems, []);
    await page.close();
  });

  test('memlens report --base writes a folder and a single file that open in compare mode', async () => {
    const dir = join(work, 'diff');
    execFileSync(MEMLENS, ['report', '--base', BASE, HEAD, '-o', dir], { stdio: 'pipe' });
    // The folder on a plain static server: the viewer fetches both recordings beside the page.
    const types = { '.html': 'text/html', '.js': 'text/javascript', '.wasm': 'application/wasm', '.css': 'text/css' };
    const folder = createServer((req, res) => {
      const rel = new URL(req.url, 'http://x').pathname.slice(1) || 'index.html';
      const file = resolve(dir, rel);
      try {
        if (!file.startsWith(dir) || !statSync(file).isFile()) throw new Error('404');
        res.writeHead(200, { 'content-type': types[file.slice(file.lastIndexOf('.'))] ?? 'application/octet-stream' });
        res.end(readFileSync(file));
      } catch {
        res.writeHead(404);
        res.end();
      }
    });
    await new Promise((ok) => folder.listen(0, '127.0.0.1', ok));
    try {
      const page = await openPage(env.chrome.context, `http://127.0.0.1:${folder.address().port}/`);
      await assertPeakComparison(page);
      await screenshot(page, 'compare-report-folder');
      assert.deepEqual(page.problems, []);
      await page.close();
    } finally {
      await new Promise((done) => folder.close(done));
    }
    const file = join(work, 'diff.html');
    execFileSync(MEMLENS, ['report', '--base', BASE, HEAD, '--single-file', '-o', file], { stdio: 'pipe' });
    const page = await openPage(env.chrome.context, pathToFileURL(file).href);
    await assertPeakComparison(page);
    assert.deepEqual(page.problems, []);
    await page.close();
  });
});
