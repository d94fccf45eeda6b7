// Browser tests of the built viewer (www/dist) on real recordings, in headless Chromium.
// Run by `./dev test` (or `./dev browser-test` after `./dev build-viewer`), which records
// tests/scripts/{big_alloc,recursion,...}.py into MEMLENS_FIXTURES first.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

import {
  FIXTURES, dragAcrossTimeline, openPage, painted, paintedPixels, screenshot, session,
} from './harness.mjs';

const MAIN = 'big_alloc'; // 100 MiB peak in allocate_big, 10 MiB kept by keep_some
const mainFile = join(FIXTURES, `${MAIN}.memlens`);
const mainBytes = readFileSync(mainFile);

const env = session();

const open = (query = '', options) => openPage(env.chrome.context, env.server.url + query, options);

/** Opens a recording through the file picker and waits for its header. */
async function pick(page, file) {
  await page.setInputFiles('#file-input', file);
  await page.waitForSelector('#command-line');
}

async function noProblems(page) {
  assert.deepEqual(page.problems, [], 'no page errors or console errors');
  await page.close();
}

/** Centre of row `row` (0 = top) of the flame graph, at fraction `fx` of its width. */
async function flamePoint(page, row, fx = 0.5) {
  const box = await page.locator('#flame-canvas').boundingBox();
  return { x: box.x + box.width * fx, y: box.y + 20 * row + 10 };
}

describe('viewer', () => {
  test('shows an empty state that invites a file', async () => {
    const page = await open();
    const text = await page.textContent('#empty-state');
    assert.match(text, /Open a memlens recording/);
    assert.match(text, /memlens run -o out\.memlens/);
    await screenshot(page, 'empty');
    await noProblems(page);
  });

  test('says a sampled recording\'s figures are estimates, and an exact one\'s not', async () => {
    const page = await open();
    await pick(page, join(FIXTURES, 'sampled', `${MAIN}.memlens`));
    assert.equal(
      (await page.textContent('#sampling-notice')).trim(),
      'Estimatessampled every 512 KiB: figures are estimates',
    );
    assert.ok(await page.isVisible('#sampling-notice'));
    // The 100 MiB bytearray is sampled whatever the draw (p = 1 - exp(-200)).
    assert.match(await page.textContent('#fact-peak-heap .fact-value'), /^1\d\d MiB$/);
    await noProblems(page);
    const exact = await open();
    await pick(exact, mainFile);
    assert.equal(await exact.locator('#sampling-notice').count(), 0);
    await noProblems(exact);
  });

  test('opens a recording from the file picker: header, timeline, flame graph', async () => {
    const page = await open();
    await pick(page, mainFile);
    assert.match(await page.textContent('#command-line'), /big_alloc\.py/);
    assert.match(await page.textContent('#fact-python'), /Python 3\.\d+/);
    // 100 MiB bytearray at the peak, 10 MiB still live at exit.
    assert.match(await page.textContent('#fact-peak-heap .fact-value'), /^1\d\d MiB$/);
    assert.match(await page.textContent('#fact-leaked .fact-value'), /^1\d\.\d MiB$/);
    assert.match(await page.textContent('#file-name'), /big_alloc\.memlens/);
    assert.ok(await painted(page, '#timeline-canvas', 2000), 'timeline painted');
    assert.ok(await painted(page, '#flame-canvas', 2000), 'flame graph painted');
    await screenshot(page, 'recording-light');
    await noProblems(page);
  });

  test('flame graph: hover tooltip, click to zoom, breadcrumb back out', async () => {
    const page = await open();
    await pick(page, mainFile);
    // Row 0 is "all"; row 1 its largest child, drawn from the left.
    const p = await flamePoint(page, 1, 0.3);
    await page.mouse.move(p.x, p.y);
    const tip = page.locator('.tooltip');
    await tip.waitFor();
    assert.match(await tip.textContent(), /of this view/);
    assert.match(await tip.locator('.tt-loc').textContent(), /big_alloc\.py:\d+/);
    await page.mouse.click(p.x, p.y);
    await page.waitForFunction(() => location.hash.includes('zoom='));
    const crumbs = page.locator('#breadcrumb button');
    assert.equal(await crumbs.count(), 2);
    await crumbs.first().click();
    await page.waitForFunction(() => !location.hash.includes('zoom='));
    assert.equal(await crumbs.count(), 1);
    // Escape zooms out one level.
    await page.mouse.click(p.x, p.y);
    await page.waitForFunction(() => location.hash.includes('zoom='));
    await page.keyboard.press('Escape');
    await page.waitForFunction(() => !location.hash.includes('zoom='));
    await noProblems(page);
  });

  test('flame graph modes and search: the leak is keep_some', async () => {
    const page = await open();
    await pick(page, mainFile);
    const result = () => page.textContent('#search-result');
    await page.fill('#flame-search', 'allocate_big');
    await page.waitForFunction(() => /match/.test(document.getElementById('search-result').textContent));
    // At the peak the 100 MiB bytearray is (almost) the whole heap.
    assert.match(await result(), /^\d+ match(es)? · (9\d|100)% \(1\d\d MiB\)$/);
    await page.click('button[data-mode="leaks"]');
    await page.waitForFunction(() => location.hash.includes('mode=leaks'));
    // What is left at exit is keep_some's 10 MiB, not allocate_big's 100 MiB.
    await page.fill('#flame-search', 'keep_some');
    await page.waitForFunction(() => /keep_some/.test(location.hash));
    assert.match(await result(), /^\d+ match(es)? · (9\d|100)% \(1\d\.\d MiB\)$/);
    assert.match(await page.evaluate(() => location.hash), /q=keep_some/);
    await screenshot(page, 'leaks-search');
    await noProblems(page);
  });

  test('dragging across the timeline selects a range and shows it in the flame graph', async () => {
    const page = await open();
    await pick(page, mainFile);
    await dragAcrossTimeline(page);
    await page.waitForFunction(() => /mode=range&.*range=\d+-\d+/.test(location.hash));
    assert.match(await page.textContent('.panel-note'), /^Selected /);
    assert.equal(await page.getAttribute('button[data-mode="range"]', 'class'), 'active');
    // The range's flame tree is computed after the next paint, a slice at a time.
    await page.waitForSelector('#flame-computing', { state: 'detached' });
    let painted = 0;
    for (let i = 0; i < 50 && painted <= 2000; i++) {
      painted = await paintedPixels(page, '#flame-canvas');
      if (painted <= 2000) await page.waitForTimeout(100);
    }
    assert.ok(painted > 2000, `range flame graph painted (${painted} pixels)`);
    await screenshot(page, 'range');
    await page.click('text=Clear selection');
    await page.waitForFunction(() => !location.hash.includes('range='));
    await noProblems(page);
  });

  test('?url= fetches a relative URL and the hash restores the view', async () => {
    const page = await open(`?url=fixtures/${MAIN}.memlens#mode=total&q=keep`);
    await page.waitForSelector('#command-line');
    assert.match(await page.textContent('#command-line'), /big_alloc\.py/);
    assert.equal(await page.getAttribute('button[data-mode="total"]', 'class'), 'active');
    assert.equal(await page.inputValue('#flame-search'), 'keep');
    await noProblems(page);
  });

  test('?url= with an absolute URL that 404s says so', async () => {
    const page = await open(`?url=${encodeURIComponent(env.server.url + 'fixtures/missing.memlens')}`);
    await page.waitForSelector('#error-banner');
    assert.match(await page.textContent('#error-banner'), /HTTP 404/);
    assert.ok(await page.isVisible('#empty-state'), 'the page is not blank');
    await noProblems(page);
  });

  test('?url= that cannot be reached reports a network error', async () => {
    // Port 9 (discard) on 127.0.0.1: nothing listens there, so the connection is refused.
    const page = await open(`?url=${encodeURIComponent('http://127.0.0.1:9/x.memlens')}`);
    await page.waitForSelector('#error-banner');
    assert.match(await page.textContent('#error-banner'), /Could not fetch .*network error/);
    await noProblems(page);
  });

  test('a file that is not a recording gets an error banner', async () => {
    const page = await open();
    await page.setInputFiles('#file-input', {
      name: 'notes.memlens', mimeType: 'application/octet-stream',
      buffer: Buffer.from('just some text, not a recording\n'.repeat(20)),
    });
    await page.waitForSelector('#error-banner');
    assert.match(await page.textContent('#error-banner'), /notes\.memlens: This is not a memlens recording/);
    assert.ok(await page.isVisible('#empty-state'), 'the page is not blank');
    await screenshot(page, 'error-not-a-recording');
    await noProblems(page);
  });

  test('a recording from a newer memlens asks for a newer viewer', async () => {
    const page = await open();
    const newer = Buffer.from(mainBytes);
    newer.writeUInt16LE(newer.readUInt16LE(8) + 1, 8); // FORMAT.md: u16 version at offset 8
    await page.setInputFiles('#file-input', {
      name: 'newer.memlens', mimeType: 'application/octet-stream', buffer: newer,
    });
    await page.waitForSelector('#error-banner');
    assert.match(await page.textContent('#error-banner'), /format version \d+.*newer memlens/);
    await noProblems(page);
  });

  // A byte near `fraction` of the file that falls inside a chunk, never between two: a file
  // cut between chunks is whole up to there, only not closed (shared/format/FORMAT.md: a
  // 16-byte file header, then chunks: a 16-byte header, its stored length at bytes 4-7, the
  // stored bytes).
  function insideAChunk(bytes, fraction) {
    const target = Math.floor(bytes.length * fraction);
    let at = 16;
    for (;;) {
      const end = at + 16 + bytes.readUInt32LE(at + 4);
      if (end > target) return at + Math.floor((end - at) / 2);
      at = end;
    }
  }

  test('a truncated recording shows what could be read under a warning', async () => {
    const page = await open();
    await page.setInputFiles('#file-input', {
      name: 'cut.memlens', mimeType: 'application/octet-stream',
      buffer: mainBytes.subarray(0, insideAChunk(mainBytes, 0.6)),
    });
    await page.waitForSelector('#warning-banner');
    assert.match(await page.textContent('#warning-banner'), /truncated or damaged/);
    assert.match(await page.textContent('#command-line'), /big_alloc\.py/);
    await screenshot(page, 'warning-truncated');
    await noProblems(page);
  });

  test('dropping a file anywhere on the page opens it', async () => {
    const page = await open();
    await page.evaluate((b64) => {
      const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
      const dt = new DataTransfer();
      dt.items.add(new File([bytes], 'dropped.memlens'));
      document.body.dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
    }, mainBytes.toString('base64'));
    await page.waitForSelector('#command-line');
    assert.match(await page.textContent('#file-name'), /dropped\.memlens/);
    await noProblems(page);
  });

  test('dark theme follows prefers-color-scheme', async () => {
    const page = await open('', { colorScheme: 'dark' });
    await pick(page, mainFile);
    const bg = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
    const [r, g, b] = bg.match(/\d+/g).map(Number);
    assert.ok(r + g + b < 120, `dark background, got ${bg}`);
    assert.ok(await painted(page, '#flame-canvas', 2000), 'flame graph painted');
    await screenshot(page, 'recording-dark');
    await noProblems(page);
  });

  // Every recorded script opens cleanly, including ones that crash, exit early or recurse.
  for (const file of readdirSync(FIXTURES).filter((f) => f.endsWith('.memlens')).sort()) {
    test(`opens ${file}`, async () => {
      const page = await open();
      await pick(page, join(FIXTURES, file));
      assert.equal(await page.locator('#error-banner').count(), 0);
      assert.match(await page.textContent('#command-line'), new RegExp(file.replace('.memlens', '')));
      assert.ok(await painted(page, '#timeline-canvas', 500), 'timeline painted');
      await screenshot(page, `fixture-${file.replace('.memlens', '')}`);
      await noProblems(page);
    });
  }
});
