// Flame graph controls on real recordings: thread filter, internal frames, colours, flame or
// icicle, the call-site table (sort, filter, click to focus), `/` to search, and markers and
// gc runs on the timeline. Everything lands in the URL hash.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';

import { FIXTURES, openPage, painted, screenshot, session } from './harness.mjs';

const env = session();

async function openFixture(name, hash = '') {
  const page = await openPage(env.chrome.context, env.server.url);
  await page.setInputFiles('#file-input', join(FIXTURES, `${name}.memlens`));
  await page.waitForSelector('#command-line');
  if (hash) {
    await page.evaluate((h) => { location.hash = h; }, hash);
  }
  return page;
}

const tableFunctions = (page) =>
  page.$$eval('#call-site-table tbody tr td.fn', (cells) => cells.map((c) => c.textContent));

describe('flame graph controls', () => {
  test('the thread filter shows one thread: its flame graph and its call sites', async () => {
    const page = await openFixture('threads');
    const options = await page.$$eval('#thread-filter option', (os) => os.map((o) => o.textContent));
    for (let i = 0; i < 4; i++) {
      assert.ok(options.some((o) => o.startsWith(`worker-${i} `)), options.join(', '));
    }
    const worker3 = await page.$eval('#thread-filter', (s) =>
      [...s.options].find((o) => o.textContent.startsWith('worker-3 ')).value);
    await page.selectOption('#thread-filter', worker3);
    await page.waitForFunction((t) => location.hash.includes(`thread=${t}`), worker3);
    // worker-3 keeps 16 MiB; at the peak its work() holds all of that thread's memory.
    await page.fill('#flame-search', 'work');
    await page.waitForFunction(() => /match/.test(document.getElementById('search-result').textContent));
    assert.match(await page.textContent('#search-result'), /\(16\.0 MiB\)$/);
    assert.equal((await tableFunctions(page))[0], 'work');
    assert.match(await page.textContent('#call-site-table tbody tr'), /16\.0 MiB/);
    assert.ok(await painted(page, '#flame-canvas', 2000), 'flame graph painted');
    await screenshot(page, 'thread-filter');
    assert.deepEqual(page.problems, []);
    await page.close();
  });

  test('call-site table: sort, filter, and a click focuses the frame in the flame graph', async () => {
    const page = await openFixture('big_alloc');
    await page.waitForSelector('#call-site-table tbody tr');
    // Self bytes first: the 100 MiB bytearray is allocated directly in allocate_big.
    assert.equal((await tableFunctions(page))[0], 'allocate_big');
    await page.click('button[data-sort="total"]');
    await page.waitForFunction(() => location.hash.includes('sort=total'));
    assert.notEqual((await tableFunctions(page))[0], 'allocate_big', 'a caller has the largest total');
    await page.fill('#call-site-filter', 'keep');
    await page.waitForFunction(() => location.hash.includes('filter=keep'));
    await page.click('button[data-mode="leaks"]');
    await page.waitForFunction(() =>
      document.querySelector('#call-site-table tbody td.fn')?.textContent === 'keep_some');
    await page.click('#call-site-table tbody tr');
    await page.waitForFunction(() => /zoom=.*keep_some/.test(location.hash));
    assert.match(await page.textContent('#breadcrumb'), /keep_some$/);
    await screenshot(page, 'call-sites');
    assert.deepEqual(page.problems, []);
    await page.close();
  });

  test('internal frames, colours and orientation are toggles kept in the URL', async () => {
    const page = await openFixture('big_alloc');
    assert.equal(await page.isChecked('#hide-internal'), true);
    await page.uncheck('#hide-internal');
    await page.waitForFunction(() => location.hash.includes('internal=1'));
    await page.selectOption('#color-by', 'file');
    await page.waitForFunction(() => location.hash.includes('color=file'));
    await page.click('button[data-layout="flame"]');
    await page.waitForFunction(() => location.hash.includes('layout=flame'));
    // Flame layout: the root ("all") is the bottom row.
    const box = await page.locator('#flame-canvas').boundingBox();
    await page.mouse.move(box.x + box.width / 2, box.y + box.height - 8);
    await page.locator('.tooltip').waitFor();
    assert.match(await page.textContent('.tooltip .tt-title'), /^All stacks$/);
    await screenshot(page, 'flame-up-by-file');
    // `/` jumps to the search box.
    await page.mouse.move(0, 0);
    await page.keyboard.press('/');
    assert.equal(await page.evaluate(() => document.activeElement.id), 'flame-search');
    // A reload restores every toggle from the hash.
    await page.reload();
    await page.waitForSelector('.app');
    const hash = await page.evaluate(() => location.hash);
    assert.match(hash, /internal=1/);
    assert.match(hash, /color=file/);
    assert.match(hash, /layout=flame/);
    assert.deepEqual(page.problems, []);
    await page.close();
  });

  test('markers and gc runs are on the timeline, with their labels in the tooltip', async () => {
    const page = await openFixture('marks');
    const legend = await page.textContent('.legend');
    assert.match(legend, /Markers/);
    assert.match(legend, /GC runs/);
    // Hover along the plot until a bucket with a marker shows up in the tooltip.
    const box = await page.locator('#timeline-canvas').boundingBox();
    let found = '';
    for (let x = box.x + 72; x < box.x + box.width - 18 && !found; x += 1) {
      await page.mouse.move(x, box.y + box.height / 2);
      const tip = await page.$('.tooltip');
      const text = tip ? await tip.textContent() : '';
      if (/Marker: (loading|collected)/.test(text)) found = text;
    }
    assert.match(found, /Marker: (loading|collected)/);
    await screenshot(page, 'timeline-markers');
    assert.deepEqual(page.problems, []);
    await page.close();
  });

  test('spans are bars on the timeline: hover names one, a click selects its time range', async () => {
    const page = await openFixture('marks');
    assert.match(await page.textContent('.legend'), /Spans/);
    // The bar runs along the bottom of the plot (the canvas' bottom margin is 26 px).
    const box = await page.locator('#timeline-canvas').boundingBox();
    const y = box.y + box.height - 26 - 7;
    let at = null;
    for (let x = box.x + 72; x < box.x + box.width - 18 && !at; x += 2) {
      await page.mouse.move(x, y);
      const tip = await page.$('.tooltip');
      const text = tip ? await tip.textContent() : '';
      // The bar's own tooltip (a bucket's lists the spans over it too).
      if (/Click to select its time range/.test(text)) at = { x, text };
    }
    assert.ok(at, 'no span bar under the plot');
    assert.match(at.text, /^Span: collecting \(/);
    await page.mouse.click(at.x, y);
    await page.waitForFunction(() => /range=/.test(location.hash));
    const note = await page.textContent('#timeline-note');
    assert.match(note, /^Selected /);
    await screenshot(page, 'timeline-span');
    assert.deepEqual(page.problems, []);
    await page.close();
  });

  test('a span the program died in runs to the end of the recording and says so', async () => {
    const page = await openFixture('sigkill');
    assert.match(await page.textContent('.legend'), /Spans/);
    const box = await page.locator('#timeline-canvas').boundingBox();
    const y = box.y + box.height - 26 - 7;
    // The right end of the plot is inside the open span.
    await page.mouse.move(box.x + box.width - 18 - 3, y);
    await page.waitForSelector('.tooltip');
    assert.match(await page.textContent('.tooltip'), /Span: doomed \(began at .*, did not end\)/);
    assert.deepEqual(page.problems, []);
    await page.close();
  });
});
