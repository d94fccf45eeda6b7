// Moving around the viewer (issue 24, item 9): the browser's Back and Forward go through the
// views the user went to (a mode, a zoom) without stopping at every letter typed; half a
// comparison in the address says what is missing; the call-site table follows the flame
// graph's zoom, as its caption says.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { dragAcrossTimeline, openPage, session } from './harness.mjs';

const env = session();
const open = (query) => openPage(env.chrome.context, env.server.url + query);
const hash = (page) => page.evaluate(() => decodeURIComponent(location.hash));
const activeMode = (page) => page.getAttribute('.segmented button.active[data-mode]', 'data-mode');
/** Function names of the call-site table's rows. */
const siteFunctions = (page) =>
  page.$$eval('#call-site-table tbody tr td.fn', (cells) => cells.map((c) => c.textContent));

/** Waits until the call-site table's rows satisfy `ok(functions)`; returns them. */
async function sitesWhere(page, ok, what) {
  for (const deadline = Date.now() + 15000; ;) {
    const fns = await siteFunctions(page);
    if (ok(fns)) return fns;
    if (Date.now() > deadline) assert.fail(`call-site table: ${what}; it shows ${fns.join(', ')}`);
    await page.waitForTimeout(100);
  }
}

describe('navigation', () => {
  test('Back and Forward step through modes and zooms; typing adds no entries', async () => {
    const page = await open('?url=fixtures/big_alloc.memlens');
    await page.waitForSelector('#flame-panel[data-ready="peak"]');
    const entries = await page.evaluate(() => history.length);
    await page.fill('#flame-search', 'alloc');
    await page.waitForFunction(() => location.hash.includes('q=alloc'));
    await page.fill('#call-site-filter', 'big');
    await page.waitForFunction(() => location.hash.includes('filter=big'));
    assert.equal(await page.evaluate(() => history.length), entries, 'typing replaces the entry');
    await page.click('button[data-mode="total"]');
    await page.waitForSelector('#flame-panel[data-ready="total"]');
    await page.click('#call-site-table tbody tr:has(td.fn:text-is("allocate_big"))');
    await page.waitForFunction(() => /zoom=.*allocate_big/.test(decodeURIComponent(location.hash)));
    assert.equal(await page.evaluate(() => history.length), entries + 2);

    await page.goBack();
    await page.waitForFunction(() => !location.hash.includes('zoom='));
    assert.equal(await activeMode(page), 'total');
    assert.equal(await page.locator('#breadcrumb button').count(), 1, 'zoomed out again');
    await page.goBack();
    await page.waitForFunction(() => !location.hash.includes('mode='));
    assert.equal(await activeMode(page), 'peak');
    assert.match(await hash(page), /q=alloc&.*filter=big/, 'what was typed is kept');
    assert.equal(await page.inputValue('#flame-search'), 'alloc');
    assert.match(page.url(), /\?url=fixtures\/big_alloc\.memlens/, 'still in the viewer');
    await page.goForward();
    await page.waitForFunction(() => location.hash.includes('mode=total'));
    assert.equal(await activeMode(page), 'total');
    assert.deepEqual(page.problems, []);
    await page.close();
  });

  test('one drag across the timeline is one entry', async () => {
    const page = await open('?url=fixtures/big_alloc.memlens');
    await page.waitForSelector('#timeline-panel[data-ready]');
    const entries = await page.evaluate(() => history.length);
    await dragAcrossTimeline(page);
    await page.waitForFunction(() => /range=\d+-\d+/.test(location.hash));
    assert.equal(await page.evaluate(() => history.length), entries + 1);
    await page.goBack();
    await page.waitForFunction(() => !location.hash.includes('range='));
    assert.equal(await activeMode(page), 'peak');
    assert.deepEqual(page.problems, []);
    await page.close();
  });

  test('?base= without ?head= says what is missing', async () => {
    for (const [given, missing] of [['base', 'head'], ['head', 'base']]) {
      const page = await open(`?${given}=fixtures/compare/${given}.memlens`);
      const banner = page.locator('#error-banner');
      await banner.waitFor();
      assert.match(await banner.textContent(), new RegExp(`gives \\?${given}= but no \\?${missing}=.*add &${missing}=URL`));
      assert.equal(await banner.getAttribute('role'), 'alert');
      // The side given is opened in its slot; the other one waits to be chosen.
      await page.waitForSelector(`#compare-slots .slot-file:text("fixtures/compare/${given}.memlens")`);
      assert.ok(await page.isVisible(`button[aria-label="Choose the ${missing} recording"]`));
      assert.deepEqual(page.problems, []);
      await page.close();
    }
  });

  test('the call-site table follows the flame graph\'s zoom', async () => {
    const page = await open('?url=fixtures/big_alloc.memlens#mode=total');
    const all = await sitesWhere(page, (f) => f.includes('keep_some') && f.includes('allocate_big'),
      'both allocating functions in the whole view');
    assert.ok(all.includes('main'));
    assert.match(await page.textContent('#call-site-scope'), /^Same view as the flame graph/);
    await page.click('#call-site-table tbody tr:has(td.fn:text-is("allocate_big"))');
    await page.waitForFunction(() => /zoom=.*allocate_big/.test(decodeURIComponent(location.hash)));
    const under = await sitesWhere(page, (f) => !f.includes('keep_some'), 'only what allocate_big allocated');
    assert.deepEqual(under, ['allocate_big'], 'neither keep_some nor the frames above');
    assert.match(await page.textContent('#call-site-scope'), /^Under allocate_big, as zoomed in the flame graph/);
    await page.keyboard.press('Escape'); // zoom out one level, to main
    await sitesWhere(page, (f) => f.includes('main'), 'main and what it called');
    assert.match(await page.textContent('#call-site-scope'), /^Under main/);
    await page.click('#breadcrumb button >> nth=0'); // all
    await sitesWhere(page, (f) => f.includes('keep_some'), 'the whole view again');
    assert.match(await page.textContent('#call-site-scope'), /^Same view as the flame graph/);
    assert.deepEqual(page.problems, []);
    await page.close();
  });
});
