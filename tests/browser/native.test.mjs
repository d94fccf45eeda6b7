// Native stacks (`memlens run --native-stacks`) in the viewer, on a real recording: a C
// extension's functions under the Python line that called it, in their own colour, and a
// toggle (kept in the URL) that hides them, giving their memory back to that line; the
// interpreter's own frames between them hidden with the other CPython internals.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';

import { FIXTURES, openPage, painted, screenshot, session } from './harness.mjs';

const env = session();

const searchResult = async (page, query) => {
  await page.fill('#flame-search', query);
  await page.waitForFunction(() => /match/.test(document.getElementById('search-result').textContent));
  return page.textContent('#search-result');
};

describe('native stacks', () => {
  test('C functions show under the Python line, and hiding them is a toggle kept in the URL', async () => {
    const page = await openPage(env.chrome.context, env.server.url);
    await page.setInputFiles('#file-input', join(FIXTURES, 'native', 'native_stacks.memlens'));
    await page.waitForSelector('#command-line');
    assert.equal(await page.isChecked('#hide-native'), false);
    // The three 1 MiB blocks, malloc'ed in fill_block (inlined into make_buffer): each counts
    // its resident pages, 4 KiB more with the page its allocator's header is on.
    assert.match(await searchResult(page, 'fill_block'), /\(3\.0[01] MiB\)$/);
    assert.ok(await painted(page, '#flame-canvas', 2000), 'flame graph painted');
    await screenshot(page, 'native-frames');
    await page.check('#hide-native');
    await page.waitForFunction(() => location.hash.includes('native=0'));
    await page.waitForFunction(() =>
      document.getElementById('search-result').textContent === 'no matches');
    // The Python line that called into C keeps the memory.
    assert.match(await searchResult(page, 'build'), /\(3\.0[01] MiB\)$/);
    assert.deepEqual(page.problems, []);
    await page.close();
  });

  test('CPython internals between the line and the C code are hidden until asked for', async () => {
    const page = await openPage(env.chrome.context, env.server.url);
    await page.setInputFiles('#file-input', join(FIXTURES, 'native', 'native_stacks.memlens'));
    await page.waitForSelector('#command-line');
    // The interpreter's call into the METH_O function `allocate`, a runtime frame.
    assert.equal(await page.isChecked('#hide-internal'), true);
    assert.equal(await searchResult(page, 'cfunction_vectorcall_O'), 'no matches');
    await page.uncheck('#hide-internal');
    await page.waitForFunction(() => location.hash.includes('internal=1'));
    await page.waitForFunction(() => /\(3\.0[01] MiB\)$/.test(document.getElementById('search-result').textContent));
    assert.match(await page.textContent('#search-result'), /\(3\.0[01] MiB\)$/);
    assert.deepEqual(page.problems, []);
    await page.close();
  });

  test('recordings without native stacks have no native toggle', async () => {
    const page = await openPage(env.chrome.context, env.server.url);
    await page.setInputFiles('#file-input', join(FIXTURES, 'big_alloc.memlens'));
    await page.waitForSelector('#command-line');
    assert.equal(await page.locator('#hide-native').count(), 0);
    await page.close();
  });
});
