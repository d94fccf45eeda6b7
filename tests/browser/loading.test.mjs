// How the viewer reads recordings (issue 18): in a Web Worker that reads only what each view
// needs. On real recordings made by ./dev (tests/scripts/*.py and bench/workloads/churn.py
// 400000, about 22 million events, in $MEMLENS_FIXTURES/big/): with range requests the
// page and its worker download a small part of a big file; without them the file is
// downloaded once and the page says so; a format-3 file opens through the replay path;
// slow networks show progress; damaged chunks and failing networks are reported where the
// view would be, never as an endless "Computing…".
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';

import { FIXTURES, browser, openPage, paintedPixels, serve } from './harness.mjs';

const BIG = 'big/churn.memlens';
const bigSize = statSync(join(FIXTURES, BIG)).size;
const GOLDEN_V3 = resolve('tests/golden/known-program-v3.memlens');

let chrome;
before(async () => {
  chrome = await browser();
});
after(async () => {
  await chrome?.close();
});

/** Opens `query` on a server started with `options`; the test body gets (page, server). */
async function withPage(options, query, body) {
  const server = await serve(options);
  try {
    const page = await openPage(chrome.context, server.url + query);
    try {
      await body(page, server);
    } finally {
      await page.close();
    }
  } finally {
    await server.close();
  }
}

/** Waits until the flame graph shows `mode` and is painted. */
async function flameShows(page, mode) {
  const ready = mode === 'range' ? '[data-ready^="range:"]' : `[data-ready="${mode}"]`;
  await page.waitForSelector(`#flame-panel${ready}`, { timeout: 60000 });
  await page.waitForFunction(() => document.querySelector('#flame-canvas')?.width > 0);
  let painted = 0;
  for (let i = 0; i < 50 && painted <= 2000; i++) {
    painted = await paintedPixels(page, '#flame-canvas');
    if (painted <= 2000) await page.waitForTimeout(100);
  }
  assert.ok(painted > 2000, `flame graph (${mode}) painted: ${painted} pixels`);
}

async function timelinePainted(page) {
  await page.waitForSelector('#timeline-panel[data-ready="1"]', { timeout: 60000 });
  let painted = 0;
  for (let i = 0; i < 50 && painted <= 2000; i++) {
    painted = await paintedPixels(page, '#timeline-canvas');
    if (painted <= 2000) await page.waitForTimeout(100);
  }
  assert.ok(painted > 2000, `timeline painted: ${painted} pixels`);
}

/** Drags across the timeline from fraction `a` to `b` of its plot. */
async function selectRange(page, a, b) {
  const box = await page.locator('#timeline-canvas').boundingBox();
  const [left, right] = [box.x + 70, box.x + box.width - 18]; // the plot inside the axes
  const y = box.y + box.height / 2;
  await page.mouse.move(left + (right - left) * a, y);
  await page.mouse.down();
  await page.mouse.move(left + (right - left) * ((a + b) / 2), y, { steps: 4 });
  await page.mouse.move(left + (right - left) * b, y, { steps: 4 });
  await page.mouse.up();
  await page.waitForFunction(() => /range=\d+-\d+/.test(location.hash));
}

/** Flips one byte in the payload of every chunk with one of `tags`, so its checksum fails
 *  (FORMAT.md: a 16-byte file header, then chunks of a 16-byte header -- tag u8, codec u8,
 *  2 spare bytes, stored length u32 LE, raw length u32 LE, crc32 u32 LE -- and a payload). */
function damageChunks(bytes, tags) {
  const out = Buffer.from(bytes);
  let damaged = 0;
  for (let at = 16; at + 16 <= out.length;) {
    const stored = out.readUInt32LE(at + 4);
    if (tags.includes(out[at]) && stored > 0) {
      out[at + 16] ^= 0xff;
      damaged++;
    }
    at += 16 + stored;
  }
  assert.ok(damaged > 0, 'chunks to damage');
  return out;
}

describe('loading recordings through the worker', () => {
  test('a big recording served with ranges opens without downloading it', async () => {
    await withPage({}, `?url=fixtures/${BIG}`, async (page, server) => {
      await page.waitForSelector('#command-line');
      assert.match(await page.textContent('#command-line'), /churn\.py 400000/);
      await flameShows(page, 'peak');
      await timelinePainted(page);
      // Other modes, a range, a thread and a zoom into the timeline: each asks the worker,
      // which reads a few more blocks.
      await page.click('button[data-mode="leaks"]');
      await flameShows(page, 'leaks');
      await page.click('button[data-mode="total"]');
      await flameShows(page, 'total');
      await selectRange(page, 0.3, 0.6);
      await flameShows(page, 'range');
      assert.match(await page.textContent('#timeline-note'), /^Selected .* · peak \d/);
      await page.click('#zoom-to-selection');
      await page.waitForFunction(() => /window=\d+-\d+/.test(location.hash));
      await timelinePainted(page);
      assert.equal(await page.locator('#error-banner, .banner-error').count(), 0);
      const sent = server.sent(`/fixtures/${BIG}`);
      console.log(`# big recording: ${sent} of ${bigSize} bytes sent (${(100 * sent / bigSize).toFixed(1)}%)`);
      assert.ok(sent < bigSize / 3, `${sent} bytes sent for a ${bigSize}-byte recording`);
      assert.deepEqual(page.problems, []);
    });
  });

  test('the same recording from a server without ranges still opens, and says so', async () => {
    const warnings = [];
    await withPage({ ranges: false }, '', async (page, server) => {
      page.on('console', (m) => { if (m.type() === 'warning') warnings.push(m.text()); });
      await page.goto(`${server.url}?url=fixtures/${BIG}`);
      await page.waitForSelector('#warning-banner', { timeout: 60000 });
      assert.match(await page.textContent('.app'), /does not answer range requests/);
      await flameShows(page, 'peak');
      await timelinePainted(page);
      assert.ok(warnings.some((w) => /range requests/.test(w)), `console warning: ${warnings}`);
      assert.equal(server.sent(`/fixtures/${BIG}`), bigSize, 'downloaded once, whole');
      assert.deepEqual(page.problems, []);
    });
  });

  test('a format-3 recording (no aggregates) opens through the replay path', async () => {
    await withPage({}, '', async (page) => {
      await page.setInputFiles('#file-input', GOLDEN_V3);
      await page.waitForSelector('#command-line');
      assert.match(await page.textContent('#file-name'), /known-program-v3\.memlens/);
      await flameShows(page, 'peak');
      await timelinePainted(page);
      await page.click('button[data-mode="leaks"]');
      await flameShows(page, 'leaks');
      await page.waitForSelector('#insights-list, #insights-none');
      assert.equal(await page.locator('.banner-error').count(), 0);
      assert.deepEqual(page.problems, []);
    });
  });

  test('a slow network shows the worker\'s progress, then the recording', async () => {
    await withPage({ delayMs: 300 }, `?url=fixtures/${BIG}`, async (page) => {
      const progress = page.locator('#progress');
      await progress.waitFor();
      // Reads after the first 200 ms are reported with the bytes read so far.
      await page.waitForFunction(
        () => / of [\d.]+ \w?i?B$/.test(document.querySelector('#progress')?.textContent ?? ''),
        null, { timeout: 30000 });
      assert.match(await progress.textContent(), /^Opening .*churn\.memlens: [\d.]+ \w?i?B of /);
      await flameShows(page, 'peak');
      await progress.waitFor({ state: 'detached', timeout: 60000 });
      assert.deepEqual(page.problems, []);
    });
  });

  test('chunks found damaged by a query are reported in the views that needed them', async () => {
    await withPage({}, '', async (page) => {
      // Events (6) and interval (15) chunks are not read at open: the file opens, and each
      // view that reads them says what is wrong instead of computing forever.
      const bytes = damageChunks(readFileSync(join(FIXTURES, 'big_alloc.memlens')), [6, 15]);
      await page.setInputFiles('#file-input', {
        name: 'damaged.memlens', mimeType: 'application/octet-stream', buffer: bytes,
      });
      await page.waitForSelector('#command-line');
      await page.waitForFunction(
        () => /Could not compute the flame graph: .*checksum/.test(document.getElementById('flame-panel').textContent),
        null, { timeout: 30000 });
      await page.waitForFunction(
        () => /Could not compute the heap timeline: .*checksum/.test(document.getElementById('timeline-panel').textContent),
        null, { timeout: 30000 });
      assert.equal(await page.locator('#flame-computing').count(), 0);
      assert.deepEqual(page.problems, []);
    });
  });

  test('a network failure during a query is reported, not computed forever', async () => {
    let failing = false;
    await withPage({ fail: () => failing }, `?url=fixtures/${BIG}`, async (page) => {
      await flameShows(page, 'peak');
      failing = true;
      await selectRange(page, 0.45, 0.55);
      await page.waitForFunction(
        () => /Could not compute the flame graph: .*HTTP 500/.test(document.getElementById('flame-panel').textContent),
        null, { timeout: 30000 });
      assert.equal(await page.locator('#flame-computing').count(), 0);
      failing = false;
      await page.click('button[data-mode="leaks"]');
      await flameShows(page, 'leaks');
      // The browser logs the failed requests itself; nothing else went wrong.
      assert.deepEqual(page.problems.filter((p) => !/500/.test(p)), []);
    });
  });
});
