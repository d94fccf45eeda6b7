// A recording of several processes (issue 20): tests/scripts/family.py recorded by the real
// collector (./dev records it into $MEMLENS_FIXTURES/family.memlens): a fork pool, a spawn
// pool, a forkserver pool and a ProcessPoolExecutor whose workers each run build(4 MiB) at
// FAMILY_CHILD_LINE, a `python -c` child and a child killed by SIGKILL. The process picker
// lists them, picking one shows its own views, the address keeps the choice, and "All
// processes" stacks their heaps and roots one flame graph at each process.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

import { FIXTURES, accessibilityProblems, openPage, painted, session } from './harness.mjs';

const script = readFileSync(new URL('../scripts/family.py', import.meta.url), 'utf8').split('\n');
const CHILD_LINE = script.findIndex((l) => l.includes('# FAMILY_CHILD_LINE')) + 1;

const env = session();
const open = (query) => openPage(env.chrome.context, env.server.url + query);
const family = (hash = '') => open(`?url=fixtures/family.memlens${hash}`);

/** The call-site table's rows: { fn, place, total } (total in bytes, as shown). */
const siteRows = (page) => page.$$eval('#call-site-table tbody tr', (rows) => rows
  .filter((r) => r.querySelector('td.fn'))
  .map((r) => {
    const cells = r.querySelectorAll('td');
    return { fn: cells[0].textContent, place: cells[1].textContent, total: cells[4].textContent };
  }));

/** Waits until the call-site table's rows satisfy `ok(rows)`; returns them. */
async function sitesWhere(page, ok, what) {
  for (const deadline = Date.now() + 20000; ;) {
    const rows = await siteRows(page);
    if (rows.length > 0 && ok(rows)) return rows;
    if (Date.now() > deadline) {
      assert.fail(`call-site table: ${what}; it shows ${rows.map((r) => r.fn).join(', ')}`);
    }
    await page.waitForTimeout(100);
  }
}

/** "4.00 MiB" -> bytes. */
function bytes(text) {
  const [, n, unit] = /([\d.]+) (B|KiB|MiB|GiB)/.exec(text);
  return Number(n) * { B: 1, KiB: 1024, MiB: 1024 ** 2, GiB: 1024 ** 3 }[unit];
}

/** The picker's rows of processes: { number, pid, text, peak, command (the whole, on
 *  hover) }. */
const pickerRows = (page) => page.$$eval('#process-picker label.process-row[data-pid]', (rows) => rows
  .map((r) => ({
    number: r.dataset.process,
    pid: r.dataset.pid,
    text: r.textContent,
    peak: r.querySelector('.num').textContent,
    command: r.querySelector('.process-command').title,
  })));

const builds = (rows) => rows.filter((r) => r.fn === 'build' && r.place === `family.py:${CHILD_LINE}`);

describe('a recording of several processes', () => {
  test('the picker lists every process: pid, peak heap, how it ended, command line', async () => {
    const page = await family();
    await page.waitForSelector('#process-picker');
    const rows = await pickerRows(page);
    assert.ok(rows.length >= 9, `the program and at least 8 descendants, got ${rows.length}`);
    assert.equal(rows[0].number, '0', 'the program first');
    for (const r of rows) {
      assert.match(r.text, /^pid \d+[\d.]+ (B|KiB|MiB)(exited|killed|ended|still running)/, r.text);
    }
    assert.ok(rows.some((r) => /killed by signal|ended without saying how/.test(r.text)), 'the killed child');
    const exec = rows.find((r) => r.command.includes('FAMILY_EXEC_LINE'));
    assert.ok(exec, 'the python -c child, its whole command line on hover');
    assert.match(exec.text, /python3[.\d]* -c x = bytearray/, 'shortened in the row');
    // One radio button per process, and one for all of them; the program's is chosen.
    assert.equal(await page.locator('#process-picker input[type="radio"]').count(), rows.length + 1);
    assert.ok(await page.isChecked('#process-picker label[data-process="0"] input'));
    await page.waitForSelector('#flame-panel[data-ready="peak"]');
    assert.deepEqual(await accessibilityProblems(page), []);
    assert.deepEqual(page.problems, []);
    await page.close();
  });

  test('picking a worker shows its flame graph; the address keeps it; Back returns', async () => {
    const read = () => env.server.sent('/fixtures/family.memlens');
    const before = read();
    const page = await family();
    await page.waitForSelector('#process-picker');
    await sitesWhere(page, (rows) => builds(rows).length === 0, 'the program never calls build');
    // A spawned worker that ran build (a pool's worker may have run none of its tasks).
    const { number, pid } = (await pickerRows(page))
      .find((r) => r.command.includes('spawn_main') && bytes(r.peak) >= 4 * 1024 ** 2);
    await page.click(`#process-picker label[data-process="${number}"]`);
    await page.waitForFunction((n) => location.hash.includes(`process=${n}`), number);
    const rows = await sitesWhere(page, (r) => builds(r).length === 1, `build at family.py:${CHILD_LINE}`);
    assert.ok(bytes(builds(rows)[0].total) >= 4 * 1024 ** 2, 'its 4 MiB block, live at its peak');
    assert.equal(await page.textContent('#fact-process .fact-value'), `pid ${pid}`);
    assert.match(await page.textContent('#command-line'), /spawn_main/, 'the worker\'s command line');
    assert.ok(await painted(page, '#timeline-canvas', 500), 'its timeline');
    // Its stream is read through the file's byte ranges: only what its views need.
    const size = statSync(join(FIXTURES, 'family.memlens')).size;
    assert.ok(read() - before < size, `read ${read() - before} bytes of ${size}`);

    // A link to this view opens the same process.
    const again = await openPage(env.chrome.context, page.url());
    await again.waitForSelector('#process-picker');
    assert.ok(await again.isChecked(`#process-picker label[data-process="${number}"] input`));
    await sitesWhere(again, (r) => builds(r).length === 1, 'build, opened from the link');
    assert.deepEqual(again.problems, []);
    await again.close();

    await page.goBack();
    await page.waitForFunction(() => !location.hash.includes('process='));
    await sitesWhere(page, (r) => builds(r).length === 0, 'the program again');
    assert.equal(await page.locator('#fact-process').count(), 0);
    assert.ok(await page.isChecked('#process-picker label[data-process="0"] input'));
    assert.deepEqual(page.problems, []);
    await page.close();
  });

  test('the keyboard moves through the processes', async () => {
    const page = await family();
    await page.waitForSelector('#process-picker');
    await page.focus('#process-picker label[data-process="0"] input');
    await page.keyboard.press('ArrowDown');
    await page.waitForFunction(() => /process=1(&|$)/.test(location.hash));
    await page.waitForSelector('#fact-process');
    await page.keyboard.press('ArrowUp');
    await page.waitForFunction(() => !location.hash.includes('process='));
    await page.keyboard.press('ArrowUp');
    await page.waitForFunction(() => location.hash.includes('process=all'));
    await page.waitForSelector('#family-panel');
    assert.deepEqual(page.problems, []);
    await page.close();
  });

  test('all processes: stacked heaps and a root frame per process', async () => {
    const page = await family('#process=all');
    await page.waitForSelector('#family-panel[data-ready]');
    assert.ok(await painted(page, '#family-canvas', 2000), 'stacked timeline painted');
    assert.match(await page.textContent('#family-note'), /Peak of all processes together [\d.]+ MiB at [\d.]+ m?s/);
    const processes = (await pickerRows(page)).length;
    assert.equal(await page.textContent('#fact-processes .fact-value'), String(processes));

    await page.click('button[data-mode="total"]');
    await page.waitForSelector('#flame-panel[data-ready="total"]');
    // Each process is a root frame ("pid 1234: python3 ..."), over the frames it allocated at.
    await page.fill('#call-site-filter', 'pid ');
    const roots = await sitesWhere(
      page,
      (r) => r.filter((s) => /^pid \d+: /.test(s.fn)).length === processes,
      'a root frame for every process',
    );
    assert.ok(roots.every((r) => /^pid \d+: python3[.\d]* /.test(r.fn) && r.place === ''), roots[0].fn);
    // Four pools ran build(4 MiB) twice each, in their workers: one call site of them all.
    await page.fill('#call-site-filter', 'build');
    const rows = await sitesWhere(page, (r) => builds(r).length === 1, 'build');
    assert.equal(bytes(builds(rows)[0].total), 32 * 1024 ** 2);
    assert.ok(await page.isChecked('#process-picker label[data-process="all"] input'));
    assert.deepEqual(await accessibilityProblems(page), []);
    assert.deepEqual(page.problems, []);
    await page.close();
  });

  test('all processes from the keyboard: a cursor, Shift+arrows select, Enter shows a process', async () => {
    const page = await family('#process=all');
    await page.waitForSelector('#family-panel[data-ready]');
    assert.ok(await painted(page, '#family-canvas', 2000), 'stacked timeline painted');
    assert.equal(await page.getAttribute('#family-canvas', 'role'), 'application');
    await page.focus('#family-canvas');
    // The cursor starts at the highest point of all, and says what each process held there.
    await page.waitForFunction(() => / · Enter shows it; All processes: [\d.]+ (KiB|MiB)/
      .test(document.querySelector('#family-focus').textContent));
    for (let i = 0; i < 5; i++) await page.keyboard.press('Shift+ArrowLeft');
    await page.waitForFunction(() => /range=\d+-\d+/.test(location.hash));
    assert.match(await page.textContent('#family-note'), /^Selected /);
    await page.keyboard.press('Escape');
    await page.waitForFunction(() => !location.hash.includes('range='));
    // Enter shows the process holding the most at the cursor (the program's view has no
    // process= in the address).
    await page.keyboard.press('Enter');
    await page.waitForFunction(() => !location.hash.includes('process=all'));
    assert.ok(!(await page.isChecked('#process-picker label[data-process="all"] input')));
    assert.deepEqual(page.problems, []);
    await page.close();
  });

  test('a recording of one process looks as before: no picker', async () => {
    const page = await open('?url=fixtures/big_alloc.memlens#process=all');
    await page.waitForSelector('#recording-page[data-processes="1"]');
    await page.waitForSelector('#flame-panel[data-ready="peak"]');
    assert.equal(await page.locator('#process-picker').count(), 0);
    assert.equal(await page.locator('#family-panel').count(), 0, 'a link to all processes shows the one');
    assert.deepEqual(page.problems, []);
    await page.close();
  });
});
