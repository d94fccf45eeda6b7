// The published site (`./dev site` -> www/site): its empty page offers the example recording,
// and following the link opens it, served by a plain static server.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { resolve } from 'node:path';

import { browser, openPage, painted, screenshot, serveDir } from './harness.mjs';

const SITE = resolve(process.env.MEMLENS_SITE ?? 'www/site');

let chrome;
let server;
before(async () => {
  chrome = await browser();
  server = await serveDir(SITE);
});
after(async () => {
  await chrome?.close();
  await server?.close();
});

describe('published site', () => {
  test('the empty page opens the example recording', async () => {
    const page = await openPage(chrome.context, server.url);
    const link = page.locator('#example-link a');
    assert.match(await link.textContent(), /example recording/);
    await link.click();
    await page.waitForSelector('#command-line', { timeout: 30000 });
    assert.match(await page.textContent('#command-line'), /demo\.py 4000/);
    assert.match(await page.textContent('.app'), /Peak traced heap/i);
    await page.waitForFunction(() => document.querySelector('#flame-canvas')?.width > 0);
    assert.ok(await painted(page, '#flame-canvas', 1000), 'flame graph painted');
    await screenshot(page, 'site-example');
    assert.deepEqual(page.problems, []);
    await page.close();
  });
});
