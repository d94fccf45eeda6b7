// Browser tests of the objects (census) and insights panels, on tests/scripts/census_growth.py
// recorded by the real collector (./dev browser-test): 1,000 `Order` instances at the marker
// "ready", 21,000 and an unbounded lru_cache of 3,000 entries at the marker "loaded".
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';

import { openPage, screenshot, session } from './harness.mjs';

const script = readFileSync(new URL('../scripts/census_growth.py', import.meta.url), 'utf8');
const lineOf = (tag) => script.split('\n').findIndex((l) => l.trimEnd().endsWith(`# ${tag}`)) + 1;

const env = session();

async function openRecording(hash = '', options) {
  const page = await openPage(env.chrome.context, `${env.server.url}?url=fixtures/census_growth.memlens${hash}`, options);
  await page.waitForSelector('#objects-table, #growth-types');
  return page;
}

async function noProblems(page) {
  assert.deepEqual(page.problems, [], 'no page errors or console errors');
  await page.close();
}

/** The value of the option of `select` whose label contains `text`. */
async function optionValue(page, select, text) {
  const value = await page.$$eval(`${select} option`, (options, t) =>
    options.find((o) => o.textContent.includes(t))?.value, text);
  assert.ok(value !== undefined, `an option with ${text} in ${select}`);
  return value;
}

/** Cells of the first row of a table, as text. */
const firstRow = (page, table) =>
  page.$$eval(`${table} tbody tr:first-child td`, (tds) => tds.map((td) => td.textContent.trim()));

describe('objects panel', () => {
  test('top types at a marker by count: the Order instances, with their count and site', async () => {
    const page = await openRecording();
    // By default the last census (exit) is shown.
    assert.match(await page.$eval('#census-select', (s) => s.selectedOptions[0].textContent), /#3 exit/);
    await page.selectOption('#census-select', await optionValue(page, '#census-select', 'mark "loaded"'));
    await page.click('#objects-panel button[data-order="count"]');
    await page.waitForFunction(() => /census=2&.*objects=count/.test(location.hash));
    assert.equal(await page.getAttribute('#objects-table tbody tr:first-child', 'data-type'), '__main__.Order');
    const [name, count, , , site] = await firstRow(page, '#objects-table');
    assert.equal(name, '__main__.Order');
    assert.equal(count, '21,000');
    assert.match(site, new RegExp(`<listcomp> census_growth\\.py:${lineOf('MORE')} · 20,000 objects`));
    assert.match(await page.textContent('#objects-note'), /objects · .* shallow/);
    await screenshot(page, 'objects-light', '#objects-panel');
    await noProblems(page);
  });

  test('growth between the two markers: +20,000 Orders at the MORE line', async () => {
    const page = await openRecording();
    await page.selectOption('#census-select', await optionValue(page, '#census-select', 'mark "loaded"'));
    await page.selectOption('#census-since', await optionValue(page, '#census-since', 'mark "ready"'));
    await page.waitForSelector('#growth-types');
    assert.match(await page.evaluate(() => location.hash), /census=2&since=1/);
    assert.match(await page.textContent('#objects-note'), /Growth from #1 mark "ready" .* to #2 mark "loaded"/);
    const [name, count, bytes, now, site] = await firstRow(page, '#growth-types');
    assert.deepEqual([name, count, now], ['__main__.Order', '+20,000', '21,000']);
    assert.match(bytes, /^\+1\.\d\d MiB$/);
    assert.match(site, new RegExp(`census_growth\\.py:${lineOf('MORE')} · \\+20,000`));
    const [place, siteCount, , type] = await firstRow(page, '#growth-sites');
    assert.match(place, new RegExp(`<listcomp> census_growth\\.py:${lineOf('MORE')}`));
    assert.deepEqual([siteCount, type], ['+20,000', '__main__.Order']);
    // The cache's lists grew at price().
    const sites = await page.$$eval('#growth-sites tbody tr', (rows) => rows.map((r) => r.textContent));
    assert.ok(sites.some((s) => s.includes(`census_growth.py:${lineOf('PRICE')}`) && s.includes('list')), sites.join('\n'));
    // A click on a row zooms the flame graph to where the objects were allocated.
    await page.click('#growth-types tbody tr:first-child');
    await page.waitForFunction(() => location.hash.includes('zoom='));
    assert.match(await page.textContent('#breadcrumb'), /<listcomp>/);
    await screenshot(page, 'objects-growth-light', '#objects-panel');
    await noProblems(page);
  });

  test('the URL hash restores the growth view; a census on the timeline selects it', async () => {
    const page = await openRecording('#census=2&since=1');
    assert.equal(await page.getAttribute('#growth-types tbody tr:first-child', 'data-type'), '__main__.Order');
    // Census #1 ("ready") sits on the timeline at its time: hover it, then click it.
    const [t, duration] = await page.evaluate(() => {
      const ms = (s) => { const [v, u] = s.trim().split(' '); return parseFloat(v) * ({ 's': 1e3, 'ms': 1, 'µs': 1e-3 }[u]); };
      const ready = [...document.querySelectorAll('#census-select option')].find((o) => o.textContent.includes('"ready"'));
      return [ms(ready.textContent.split('·')[1]), ms(document.querySelector('#fact-duration .fact-value').textContent)];
    });
    // Hovering before the timeline has its data shows nothing (and the mouse does not move again).
    await page.waitForSelector('#timeline-panel[data-ready]');
    const box = await page.locator('#timeline-canvas').boundingBox();
    const x = box.x + 70 + (box.width - 88) * (t / duration);
    await page.mouse.move(x, box.y + 30);
    const tip = page.locator('.tooltip');
    await tip.waitFor();
    assert.match(await tip.textContent(), /Census #1 mark "ready" · click to show its objects/);
    await page.mouse.click(x, box.y + 30);
    await page.waitForFunction(() => /census=1(&|$)/.test(location.hash));
    assert.match(await page.$eval('#census-select', (s) => s.selectedOptions[0].textContent), /#1 mark "ready"/);
    await noProblems(page);
  });

  test('dark theme', async () => {
    const page = await openRecording('#census=2&since=1', { colorScheme: 'dark' });
    await screenshot(page, 'objects-dark');
    await noProblems(page);
  });
});

describe('insights panel', () => {
  test('lists the unbounded lru_cache and the missing __slots__, with links to the data', async () => {
    const page = await openRecording();
    const cache = page.locator('#insights-list li[data-kind="unbounded_cache"]');
    await cache.waitFor();
    assert.match(await cache.textContent(), /__main__\.price is an lru_cache\(maxsize=None\) holding 3,000 entries/);
    assert.match(await cache.locator('.insight-kind').textContent(), /Unbounded cache/);
    assert.match(await cache.locator('.insight-bytes').textContent(), /^\d+ KiB$/);
    const slots = page.locator('#insights-list li[data-kind="missing_slots"]');
    assert.match(await slots.textContent(), /21,000 instances of __main__\.Order/);
    await screenshot(page, 'insights-light', '#insights-panel');

    // The cache's link searches the flame graph for its function.
    await cache.locator('button', { hasText: 'Find the function' }).click();
    await page.waitForFunction(() => location.hash.includes('q=price'));
    assert.equal(await page.inputValue('#flame-search'), 'price');
    // __slots__ links to the flame graph at the site that made the instances...
    await slots.locator('button', { hasText: 'Show in flame graph' }).click();
    await page.waitForFunction(() => /mode=leaks&zoom=/.test(location.hash));
    assert.match(await page.textContent('#breadcrumb'), /<listcomp>/);
    // ... and to the objects panel at the last census.
    await slots.locator('button', { hasText: 'Show in objects' }).click();
    await page.waitForFunction(() => /census=3/.test(location.hash));
    await noProblems(page);
  });

  test('a recording without findings says so', async () => {
    // recursion.py: 600 frames deep against a limit of 5,000, 8 MiB kept once.
    const page = await openPage(env.chrome.context, `${env.server.url}?url=fixtures/recursion.memlens`);
    await page.waitForSelector('#insights-none');
    assert.match(await page.textContent('#insights-none'), /^No findings/);
    assert.equal(await page.locator('#insights-list').count(), 0);
    await noProblems(page);
  });
});
