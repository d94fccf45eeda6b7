// Hostile and broken recordings, and a worker that dies: the viewer says what went wrong in an
// error banner instead of showing "Computing the flame graph…" forever (issue 24, item 5).
// The crafted files are made here from a real recording (tests/scripts/big_alloc.py), with
// their chunk checksums fixed so only the payloads are wrong.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';

import { FIXTURES, openPage, screenshot, session } from './harness.mjs';

const recording = readFileSync(join(FIXTURES, 'big_alloc.memlens'));

// FORMAT.md: a 16-byte file header, then chunks of a 16-byte header (tag u8, codec u8,
// reserved u16, stored length u32, raw length u32, CRC-32 of header bytes 0-11 and the stored
// payload) and the payload.
const EVENTS = 6;
const DIGEST = 16;
const ZSTD = 2;

/** A copy of `bytes` in which `change(buffer, chunk)` rewrote the chunks it wanted; their
 *  checksums are computed again. */
function craft(bytes, change) {
  const buf = Buffer.from(bytes);
  for (let pos = 16; pos + 16 <= buf.length;) {
    const chunk = { pos, tag: buf[pos], codec: buf[pos + 1], stored: buf.readUInt32LE(pos + 4) };
    if (change(buf, chunk)) {
      const payload = buf.subarray(pos + 16, pos + 16 + chunk.stored);
      buf.writeUInt32LE(crc32(payload, crc32(buf.subarray(pos, pos + 12))) >>> 0, pos + 12);
    }
    pos += 16 + chunk.stored;
  }
  return buf;
}

const env = session();

async function openFile(name, buffer) {
  const page = await openPage(env.chrome.context, env.server.url);
  await page.setInputFiles('#file-input', { name, mimeType: 'application/octet-stream', buffer });
  return page;
}

/** The page errors and console errors, minus the viewer's own report of the failure. */
const unexpected = (page, expected) => page.problems.filter((p) => !expected.test(p));

describe('failures', () => {
  test('a recording whose event chunks are corrupt shows each view\'s decode error', async () => {
    const garbage = (tags) => (buf, c) => {
      if (!tags.includes(c.tag)) return false;
      buf.fill(0xff, c.pos + 16, c.pos + 16 + c.stored);
      return true;
    };
    // Its directory and aggregates read: the flame graph is drawn from the aggregates, the
    // heap timeline needs the events and says why it cannot be drawn.
    let page = await openFile('corrupt-events.memlens', craft(recording, garbage([EVENTS])));
    await page.waitForSelector('#command-line');
    const timelineError = page.locator('#timeline-panel .banner-error');
    await timelineError.waitFor();
    assert.match(await timelineError.textContent(), /^Could not compute the heap timeline: corrupt (event chunk|chunk payload) at byte offset \d+/);
    assert.equal(await timelineError.getAttribute('role'), 'alert');
    await page.waitForSelector('#flame-panel[data-ready="peak"]');
    assert.deepEqual(unexpected(page, /corrupt (event chunk|chunk payload)/), []);
    await page.close();
    // Without its digest, opening it replays the events to recompute its figures: it fails,
    // and says where and why.
    page = await openFile('corrupt-events-and-digest.memlens', craft(recording, garbage([EVENTS, DIGEST])));
    await page.waitForSelector('#error-banner');
    assert.match(await page.textContent('#error-banner'),
      /corrupt-events-and-digest\.memlens: This recording could not be read: corrupt (event chunk|chunk payload) at byte offset \d+/);
    assert.ok(await page.isVisible('#empty-state'), 'the page is not blank');
    await screenshot(page, 'failure-corrupt-events');
    assert.deepEqual(unexpected(page, /corrupt (event chunk|chunk payload)/), []);
    await page.close();
  });

  test('a chunk that claims to expand far beyond its size is refused, and said so', async () => {
    // The bomb of issue 24: a compressed events chunk declaring 64 MiB of events.
    const bomb = (tags) => {
      let first = true;
      return craft(recording, (buf, c) => {
        if (c.tag === DIGEST && tags.includes(DIGEST)) {
          buf.fill(0xff, c.pos + 16, c.pos + 16 + c.stored);
          return true;
        }
        if (c.tag !== EVENTS || !first) return false;
        first = false;
        buf[c.pos + 1] = ZSTD;
        buf.writeUInt32LE(64 << 20, c.pos + 8);
        return true;
      });
    };
    let page = await openFile('bomb.memlens', bomb([EVENTS]));
    const timelineError = page.locator('#timeline-panel .banner-error');
    await timelineError.waitFor();
    assert.match(await timelineError.textContent(), /claims to hold 67108864: more than any recording does/);
    assert.deepEqual(unexpected(page, /claims to hold/), []);
    await page.close();
    page = await openFile('bomb-without-digest.memlens', bomb([EVENTS, DIGEST]));
    await page.waitForSelector('#error-banner');
    assert.match(await page.textContent('#error-banner'), /claims to hold 67108864/);
    assert.deepEqual(unexpected(page, /claims to hold/), []);
    await page.close();
  });

  test('a worker that traps (RuntimeError: unreachable) is reported, not waited for', async () => {
    // The first question after opening makes the worker's module trap, as an allocation
    // failure in the wasm does: the exception escapes in a promise, which nothing awaits.
    const page = await env.chrome.context.newPage();
    page.problems = [];
    page.on('pageerror', (e) => page.problems.push(`pageerror: ${e}`));
    page.on('console', (m) => m.type() === 'error' && page.problems.push(`console: ${m.text()}`));
    await page.route('**/memlens_worker.js', async (route) => {
      const script = await (await route.fetch()).text();
      const trap = `worker_main();
        const answer = self.onmessage;
        let asked = 0;
        self.onmessage = (e) => {
          if (++asked === 2) Promise.reject(new WebAssembly.RuntimeError("unreachable"));
          else answer(e);
        };`;
      assert.ok(script.includes('worker_main();'));
      await route.fulfill({ contentType: 'text/javascript', body: script.replace('worker_main();', trap) });
    });
    await page.goto(env.server.url);
    await page.setInputFiles('#file-input', join(FIXTURES, 'big_alloc.memlens'));
    const banner = page.locator('#worker-error');
    await banner.waitFor();
    assert.match(await banner.textContent(), /The viewer's worker stopped: RuntimeError: unreachable/);
    assert.equal(await banner.getAttribute('role'), 'alert');
    // Every view waiting for the worker gets the error instead of a spinner.
    await page.waitForSelector('#flame-error');
    assert.match(await page.textContent('#flame-error'), /worker stopped/);
    await page.waitForSelector('#timeline-panel .banner-error');
    await screenshot(page, 'failure-worker-trap');
    assert.deepEqual(unexpected(page, /worker stopped|unreachable/), []);
    await page.close();
  });

  test('a trap of the page itself leaves a banner, not a frozen page', async () => {
    const page = await openPage(env.chrome.context, env.server.url);
    await page.evaluate(() => { setTimeout(() => { throw new WebAssembly.RuntimeError('unreachable'); }); });
    const banner = page.locator('#crash-banner');
    await banner.waitFor();
    assert.match(await banner.textContent(), /The viewer stopped on an internal error \(RuntimeError: unreachable\)\. Reload/);
    await page.close();
  });
});
