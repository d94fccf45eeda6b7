// The viewer from the keyboard and for screen readers (issue 24, item 6): every control is
// reached with Tab and worked with Enter, Space, the arrows and Escape; the charts say what
// their cursor is on in a live region; and axe-core finds no serious or critical problem on
// the empty page, a recording or compare mode.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';

import { FIXTURES, accessibilityProblems, openPage, painted, session } from './harness.mjs';

const MAIN = join(FIXTURES, 'big_alloc.memlens'); // main -> allocate_big (100 MiB), keep_some (10 MiB)

const env = session();
const open = (query = '') => openPage(env.chrome.context, env.server.url + query);

/** Presses Tab until `match(active element)` holds (at most `most` times); fails otherwise. */
async function tabTo(page, what, match, most = 80) {
  for (let i = 0; i < most; i++) {
    await page.keyboard.press('Tab');
    if (await page.evaluate(match)) return;
  }
  assert.fail(`Tab never reached ${what}`);
}

const activeId = (page) => page.evaluate(() => document.activeElement?.id);
const hash = (page) => page.evaluate(() => decodeURIComponent(location.hash));

/** Presses `key` until the text of `selector` matches `re` (at most `most` times). */
async function pressUntil(page, key, selector, re, most = 12) {
  for (let i = 0; i < most; i++) {
    await page.keyboard.press(key);
    if (re.test(await page.textContent(selector))) return page.textContent(selector);
  }
  assert.fail(`${key} never led to ${re} in ${selector}: ${await page.textContent(selector)}`);
}

const lastCrumb = (page) => page.locator('#breadcrumb button').last().textContent();

/** Waits until the text of `selector` matches `re`; returns it. */
async function textMatching(page, selector, re) {
  await page.waitForFunction(([s, source]) => new RegExp(source).test(document.querySelector(s)?.textContent ?? ''),
    [selector, re.source]);
  return page.textContent(selector);
}

async function assertAccessible(page, where) {
  const problems = await accessibilityProblems(page);
  assert.deepEqual(problems, [], `serious or critical accessibility problems on ${where}`);
}

describe('keyboard and screen readers', () => {
  test('"Open recording…" is a button that Tab reaches and Enter opens', async () => {
    const page = await open();
    // Listening first: Playwright catches file choosers only once it listens for them.
    const chooser = page.waitForEvent('filechooser');
    await tabTo(page, 'the Open button', () => document.activeElement?.textContent === 'Open recording…');
    assert.equal(await page.evaluate(() => document.activeElement.tagName), 'BUTTON');
    await page.keyboard.press('Enter');
    await (await chooser).setFiles(MAIN);
    await page.waitForSelector('#command-line');
    // The compare slots' buttons work with Space.
    const page2 = await open('?base=fixtures/compare/base.memlens');
    const chooser2 = page2.waitForEvent('filechooser');
    await tabTo(page2, 'the head slot', () => document.activeElement?.getAttribute('aria-label') === 'Choose the head recording');
    await page2.keyboard.press('Space');
    await (await chooser2).setFiles(join(FIXTURES, 'compare', 'head.memlens'));
    await page2.waitForSelector('#delta-table tbody tr td.fn', { timeout: 30000 });
    assert.deepEqual([...page.problems, ...page2.problems], []);
    await page.close();
    await page2.close();
  });

  test('flame graph: arrows move between frames, Enter zooms, Escape zooms out', async () => {
    const page = await open('?url=fixtures/big_alloc.memlens#mode=total');
    await page.waitForSelector('#flame-panel[data-ready="total"]');
    assert.ok(await painted(page, '#flame-canvas', 2000));
    await tabTo(page, 'the flame graph', () => document.activeElement?.id === 'flame-canvas');
    const canvas = page.locator('#flame-canvas');
    assert.equal(await canvas.getAttribute('role'), 'application');
    assert.match(await canvas.getAttribute('aria-label'), /Arrow keys move between frames/);
    assert.equal(await page.getAttribute('#flame-focus', 'aria-live'), 'polite');
    // The cursor starts on the root; down (an icicle) goes to the largest child.
    assert.match(await textMatching(page, '#flame-focus', /^All stacks/), /of this view/);
    // Down the largest callees to main at the line that calls allocate_big (100 MiB); its
    // sibling is main at the line that calls keep_some (10 MiB).
    const big = await pressUntil(page, 'ArrowDown', '#flame-focus', /^main/);
    assert.match(big, /^main · .*big_alloc\.py:\d+ · 10\d(\.\d+)? MiB/);
    await page.keyboard.press('ArrowRight');
    await textMatching(page, '#flame-focus', /^main · .*big_alloc\.py:\d+ · 10(\.0)? MiB/);
    await page.keyboard.press('ArrowDown');
    await textMatching(page, '#flame-focus', /^keep_some · .*big_alloc\.py/);
    await page.keyboard.press('ArrowUp');
    await page.keyboard.press('ArrowLeft');
    await textMatching(page, '#flame-focus', /^main · .*big_alloc\.py:\d+ · 10\d(\.\d+)? MiB/);
    await page.keyboard.press('ArrowLeft'); // nothing left of the largest: stays
    await page.keyboard.press('ArrowDown');
    await textMatching(page, '#flame-focus', /^allocate_big · .*big_alloc\.py:\d+ · 10\d(\.\d+)? MiB/);
    await page.keyboard.press('Enter');
    await page.waitForFunction(() => /zoom=.*allocate_big/.test(decodeURIComponent(location.hash)));
    assert.equal(await lastCrumb(page), 'allocate_big');
    const depth = await page.locator('#breadcrumb button').count();
    await page.keyboard.press('ArrowUp'); // main, drawn above the zoomed frame
    await textMatching(page, '#flame-focus', /^main/);
    await page.keyboard.press('Escape');
    await page.waitForFunction(() => !/allocate_big/.test(decodeURIComponent(location.hash)));
    assert.equal(await lastCrumb(page), 'main', 'one level out');
    // Once: the page's own Escape (zoom out from anywhere) is not run as well.
    assert.equal(await page.locator('#breadcrumb button').count(), depth - 1);
    assert.equal(await activeId(page), 'flame-canvas', 'the focus stays on the canvas');
    // In a flame (root at the bottom), up goes to a child.
    await page.click('button[data-layout="flame"]');
    await page.focus('#flame-canvas');
    await textMatching(page, '#flame-focus', /^main/);
    await page.keyboard.press('ArrowUp');
    await textMatching(page, '#flame-focus', /^allocate_big/);
    assert.deepEqual(page.problems, []);
    await page.close();
  });

  test('compare mode\'s differential flame graph takes the same keys', async () => {
    const page = await open('?base=fixtures/compare/base.memlens&head=fixtures/compare/head.memlens');
    await page.waitForSelector('#delta-table tbody tr td.fn', { timeout: 30000 });
    await tabTo(page, 'the differential flame graph', () => document.activeElement?.id === 'diff-flame-canvas');
    assert.equal(await page.getAttribute('#diff-flame-canvas', 'role'), 'application');
    await textMatching(page, '#diff-flame-focus', /^All stacks · Head: .* · Base: .* · Change: \+/);
    // build_index grew most (diff_app.py): walk down to it and zoom in.
    const text = await pressUntil(page, 'ArrowDown', '#diff-flame-focus', /^build_index/);
    assert.match(text, /Change: \+20\.0 MiB/);
    await page.keyboard.press('Enter');
    await page.waitForFunction(() => /zoom=.*build_index/.test(decodeURIComponent(location.hash)));
    await page.keyboard.press('Escape');
    await page.waitForFunction(() => !/build_index/.test(decodeURIComponent(location.hash)));
    assert.deepEqual(page.problems, []);
    await page.close();
  });

  test('timeline: arrows move a cursor, Shift+arrows select, Escape clears', async () => {
    const page = await open('?url=fixtures/big_alloc.memlens');
    await page.waitForSelector('#timeline-panel[data-ready]');
    assert.ok(await painted(page, '#timeline-canvas', 2000));
    await tabTo(page, 'the timeline', () => document.activeElement?.id === 'timeline-canvas');
    assert.equal(await page.getAttribute('#timeline-canvas', 'role'), 'application');
    // The cursor starts at the heap's peak.
    const atPeak = await textMatching(page, '#timeline-focus', /^At .* · Traced heap: 10\d/);
    await page.keyboard.press('ArrowRight');
    await page.waitForFunction((before) => document.querySelector('#timeline-focus').textContent !== before, atPeak);
    assert.doesNotMatch(await hash(page), /range=/, 'moving the cursor selects nothing');
    for (let i = 0; i < 5; i++) await page.keyboard.press('Shift+ArrowLeft');
    await page.waitForFunction(() => /mode=range&.*range=\d+-\d+/.test(location.hash));
    const [a, b] = (await hash(page)).match(/range=(\d+)-(\d+)/).slice(1).map(Number);
    assert.ok(b > a, `a range of some length: ${a}-${b}`);
    await textMatching(page, '#timeline-focus', / · selected /);
    assert.match(await page.textContent('#timeline-note'), /^Selected /);
    await page.keyboard.press('Shift+ArrowLeft');
    await page.waitForFunction((width) => {
      const m = location.hash.match(/range=(\d+)-(\d+)/);
      return m && Number(m[2]) - Number(m[1]) > width;
    }, b - a);
    await page.keyboard.press('Escape');
    await page.waitForFunction(() => !location.hash.includes('range='));
    assert.equal(await page.getAttribute('button[data-mode="peak"]', 'class'), 'active');
    assert.deepEqual(page.problems, []);
    await page.close();
  });

  test('call-site rows: arrows move, Enter focuses the frame in the flame graph', async () => {
    const page = await open('?url=fixtures/big_alloc.memlens#mode=total&sort=total');
    await page.waitForSelector('#call-site-table tbody tr[tabindex="0"]');
    await tabTo(page, 'the call-site rows', () => document.activeElement?.matches('#call-site-table tbody tr'));
    const row = () => page.evaluate(() => document.activeElement.textContent);
    const rowFunction = () => page.evaluate(() => document.activeElement.querySelector('td.fn').textContent);
    const first = await row();
    await page.keyboard.press('ArrowDown');
    const second = await row();
    assert.notEqual(second, first);
    await page.keyboard.press('End');
    await page.keyboard.press('Home');
    assert.equal(await row(), first);
    // The row focused last is the table's one tab stop.
    assert.equal(await page.locator('#call-site-table tbody tr[tabindex="0"]').count(), 1);
    await page.keyboard.press('ArrowDown');
    const fn = await rowFunction();
    await page.keyboard.press('Enter');
    await page.waitForFunction((f) => decodeURIComponent(location.hash).includes(`${f}:`), fn);
    assert.deepEqual(page.problems, []);
    await page.close();
  });

  test('axe-core: no serious or critical problems on the empty page, a recording, compare mode', async () => {
    const empty = await open();
    await empty.waitForSelector('#empty-state');
    await assertAccessible(empty, 'the empty page');
    await empty.close();

    const one = await open('?url=fixtures/big_alloc.memlens');
    await one.waitForSelector('#flame-panel[data-ready]');
    await one.waitForSelector('#timeline-panel[data-ready]');
    await one.waitForSelector('#call-site-table tbody tr');
    await assertAccessible(one, 'a recording');
    // And with the keyboard cursors shown.
    await one.focus('#flame-canvas');
    await one.keyboard.press('ArrowDown');
    await assertAccessible(one, 'a recording with the flame graph focused');
    await one.close();

    // Findings, objects tables and growth, in the dark theme.
    const census = await openPage(env.chrome.context, `${env.server.url}?url=fixtures/census_growth.memlens`,
      { colorScheme: 'dark' });
    await census.waitForSelector('#flame-panel[data-ready]');
    await census.waitForSelector('#objects-table tbody tr');
    await census.waitForSelector('#insights-panel');
    await assertAccessible(census, 'a recording with censuses, dark');
    await census.close();

    const pair = await open('?base=fixtures/compare/base.memlens&head=fixtures/compare/head.memlens');
    await pair.waitForSelector('#delta-table tbody tr td.fn', { timeout: 30000 });
    await assertAccessible(pair, 'compare mode');
    await pair.close();

    const half = await open('?base=fixtures/compare/base.memlens');
    await half.waitForSelector('#compare-slots');
    await assertAccessible(half, 'half a comparison');
    await half.close();
  });
});
