// `memlens export --format speedscope` read by speedscope itself: its app from the npm
// package (in MEMLENS_NODE_MODULES), given the export with #profileURL= as speedscope.app is,
// in headless Chromium. Its sandwich view lists every function with its total and self
// weight, formatted by speedscope from the file's "bytes" unit: the recording of
// tests/scripts/big_alloc.py allocates 100 MiB in allocate_big and keeps 10 MiB from keep_some.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { cpSync } from 'node:fs';
import { join, resolve } from 'node:path';

import { FIXTURES, dirSession, screenshot } from './harness.mjs';

const MEMLENS = resolve(process.env.MEMLENS_BIN ?? 'target/release/memlens');
const SPEEDSCOPE = join(resolve(process.env.MEMLENS_NODE_MODULES), 'speedscope', 'dist', 'release');

// speedscope's app and the export side by side, as one static site.
const env = dirSession('memlens-speedscope-', (work) => {
  cpSync(SPEEDSCOPE, work, { recursive: true });
  execFileSync(MEMLENS, ['export', join(FIXTURES, 'big_alloc.memlens'), '--format', 'speedscope',
    '-o', join(work, 'big_alloc.speedscope.json')], { stdio: ['ignore', 'ignore', 'inherit'] });
});

/** The sandwich view's rows: [total, self, name] texts, top first. */
async function sandwichRows(page) {
  await page.getByText('Sandwich', { exact: false }).first().click();
  await page.waitForFunction(() => document.querySelectorAll('table tbody tr, tr').length > 1);
  return page.$$eval('tr', (rows) => rows.map((r) => Array.from(r.children, (c) => c.textContent.trim())));
}

/** The row of `name`, as "total self" text. */
function rowOf(rows, name) {
  const row = rows.find((r) => r.at(-1) === name);
  assert.ok(row, `${name} in ${JSON.stringify(rows)}`);
  return row.slice(0, -1).join(' ');
}

describe('speedscope', () => {
  test('opens the export: one profile per view, frames and weights in bytes', async () => {
    const page = await env.chrome.context.newPage();
    const problems = [];
    page.on('pageerror', (e) => problems.push(`pageerror: ${e}`));
    const file = `${env.server.url}big_alloc.speedscope.json`;
    await page.goto(`${env.server.url}index.html#profileURL=${encodeURIComponent(file)}`);
    // The toolbar names the active profile (the peak, first of three) once the import is done.
    await page.waitForFunction(() => document.body.textContent.includes('live at the peak'),
      null, { timeout: 30000 });
    assert.match(await page.textContent('body'), /live at the peak\s*\(1\/3\)/);
    let rows = await sandwichRows(page);
    await screenshot(page, 'speedscope-peak');
    // speedscope's byte formatter: 1024-based, two decimals.
    assert.match(rowOf(rows, 'allocate_big'), /^100\.00 MB.* 100\.00 MB/);
    assert.match(rowOf(rows, 'main'), /^100\.\d\d MB/);
    assert.ok(!rows.some((r) => r.at(-1) === 'keep_some'), 'keep_some is not live at the peak');
    assert.ok(!rows.some((r) => /memlens|_bootstrap/.test(r.at(-1))), 'no memlens frames');

    // The next profile is what was left at exit.
    await page.keyboard.press('n');
    await page.waitForFunction(() => document.body.textContent.includes('live at exit (leaks)'));
    rows = await sandwichRows(page);
    assert.match(rowOf(rows, 'keep_some'), /^10\.00 MB/);
    assert.ok(!rows.some((r) => r.at(-1) === 'allocate_big'), 'allocate_big freed its block');
    assert.deepEqual(problems, []);
  });
});
