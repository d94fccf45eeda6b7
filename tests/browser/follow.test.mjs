// Following a recording as it is written (issue 18, item 5): a real `memlens run` of a slow
// script (tests/scripts/slow_growth.py: 12 steps of half a second, 4 MiB kept per step), and
// `memlens view --follow` started with it, before the file exists. The page follows the file:
// the timeline's end moves while the program runs, then the final figures appear.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

import { browser, openPage, painted, screenshot } from './harness.mjs';

const MEMLENS = resolve(process.env.MEMLENS_BIN ?? 'target/release/memlens');

let chrome;
let work;
const children = [];
before(async () => {
  chrome = await browser();
  work = mkdtempSync(join(tmpdir(), 'memlens-follow-'));
});
after(async () => {
  for (const c of children) c.kill('SIGKILL');
  await chrome?.close();
  rmSync(work, { recursive: true, force: true });
});

/** Starts `memlens args...`; resolves to the child once its stdout printed a URL, with it. */
function serveView(args) {
  const child = spawn(MEMLENS, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let out = '';
  let err = '';
  child.stderr.on('data', (d) => { err += d; });
  return new Promise((ok, fail) => {
    child.stdout.on('data', (d) => {
      out += d;
      const url = /(http:\/\/127\.0\.0\.1:\d+\/\S*)/.exec(out);
      if (url) ok({ child, url: url[1] });
    });
    child.on('exit', (code) => fail(new Error(`memlens view exited (${code}): ${out}${err}`)));
  });
}

const endNs = (page) => page.$eval('#timeline-panel', (e) => Number(e.dataset.endNs));

describe('following a recording being written', () => {
  test('memlens view --follow shows a run as it grows, then its final figures', async () => {
    const file = join(work, 'live.memlens');
    // The viewer first: --follow waits for the file that `memlens run` is about to write.
    const view = serveView(['view', '--follow', '--no-browser', file]);
    const run = spawn(MEMLENS, ['run', '-q', '-o', file, 'tests/scripts/slow_growth.py'],
      { stdio: 'ignore' });
    children.push(run);
    const ran = new Promise((ok) => run.on('exit', ok));
    const { url } = await view;
    assert.match(url, /\?url=recording\.memlens&follow=1$/);
    const page = await openPage(chrome.context, url);
    await page.waitForSelector('#live-banner', { timeout: 30000 });
    assert.match(await page.textContent('#live-banner'), /still being written/);
    await page.waitForSelector('#timeline-panel[data-end-ns]');
    const first = await endNs(page);
    // The timeline's end moves as intervals arrive (the run lasts about 6 s).
    await page.waitForFunction((t) => Number(document.querySelector('#timeline-panel').dataset.endNs) > t,
      first, { timeout: 20000 });
    const second = await endNs(page);
    assert.ok(second > first, `the end moved: ${first} -> ${second}`);
    assert.ok(await painted(page, '#timeline-canvas', 1000), 'timeline painted while live');
    await screenshot(page, 'follow-live');
    assert.equal(await ran, 0, 'the traced program succeeded');
    // Then the recording is closed: its trailer's figures, and the banner says so.
    await page.waitForFunction(() => /complete/.test(document.querySelector('#live-banner')?.textContent),
      null, { timeout: 20000 });
    assert.match(await page.textContent('#fact-duration'), /exit code 0/);
    // 12 steps of 4 MiB kept: at least 48 MiB at the peak.
    const peak = await page.textContent('#fact-peak-heap .fact-value');
    assert.ok(/MiB$/.test(peak) && parseFloat(peak) >= 48, `peak ${peak}`);
    await page.waitForSelector('#flame-panel[data-ready="peak"]');
    assert.ok((await endNs(page)) > second, 'the final end is later still');
    assert.equal(await page.locator('#warning-banner').count(), 0, 'no "truncated" warnings');
    // The censuses taken at each marker arrived with it: the objects panel shows them.
    await page.waitForSelector('#census-select');
    await screenshot(page, 'follow-finished');
    assert.deepEqual(page.problems, []);
    await page.close();
  });
});
