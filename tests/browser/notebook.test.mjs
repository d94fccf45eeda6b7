// %%memlens in a notebook (issue 24, item 9): the viewer (~2 MB) is held once per notebook,
// by the first cell's output, and every cell's viewer page takes it from there. The outputs
// are made by the real magic code (collector/python/memlens/ipython.py) with the real
// `memlens report --notebook`, and shown the way notebook front-ends show outputs: one after
// another in the same page, each viewer in a sandboxed `srcdoc` iframe.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

import { FIXTURES, dirSession, screenshot } from './harness.mjs';

const MEMLENS = resolve(process.env.MEMLENS_BIN ?? 'target/release/memlens');

/** Runs the magic's output code on `recordings` (one cell each, in order, as in one kernel);
 *  returns each cell's HTML. */
function cellOutputs(recordings, { standalone = false } = {}) {
  const code = `
import json, sys, tempfile
from memlens import _cli, ipython

class Shell:
    def write_err(self, text):
        sys.stderr.write(text)

outputs = []
for recording in sys.argv[1:]:
    summary = json.loads(_cli.run(["summary", "--json", recording], capture_output=True, check=True).stdout)
    page, viewer = ipython._viewer_pages(Shell(), recording, tempfile.mkdtemp(), ${standalone ? 'True' : 'False'})
    outputs.append(ipython.CellReport(summary, page, None, None, 420, viewer)._repr_html_())
print(json.dumps(outputs))
`;
  const out = execFileSync('python3', ['-c', code, ...recordings], {
    env: { ...process.env, PYTHONPATH: resolve('collector/python'), MEMLENS_BIN: MEMLENS },
    maxBuffer: 64 << 20,
  });
  return JSON.parse(out);
}

const env = dirSession('memlens-notebook-');

/** A page showing `outputs` one after another, as a notebook does. */
function notebook(name, outputs) {
  const cells = outputs.map((o, i) => `<section class="cell" id="cell-${i}">${o}</section>`).join('\n');
  writeFileSync(join(env.work, name), `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>notebook</title><link rel="icon" href="data:,"></head><body>${cells}</body></html>`);
  return env.server.url + name;
}

describe('notebook', () => {
  test('the first cell holds the viewer; every cell shows its own recording with it', async () => {
    const recordings = ['big_alloc', 'recursion', 'threads'].map((n) => join(FIXTURES, `${n}.memlens`));
    const outputs = cellOutputs(recordings);
    const holds = outputs.map((o) => o.includes('window.memlensViewers'));
    assert.deepEqual(holds, [true, false, false]);
    const [first, ...rest] = outputs.map((o) => o.length);
    assert.ok(first > 1_000_000, `the first output holds the viewer (${first} characters)`);
    for (const size of rest) {
      assert.ok(size < first / 4, `later outputs are their recording and a page: ${size} of ${first} characters`);
    }
    const tab = await env.chrome.context.newPage();
    const problems = [];
    tab.on('console', (m) => m.type() === 'error' && problems.push(m.text()));
    await tab.goto(notebook('cells.html', outputs));
    for (const [i, name] of ['big_alloc', 'recursion', 'threads'].entries()) {
      const frame = tab.frameLocator(`#cell-${i} iframe`);
      await frame.locator('#command-line').waitFor({ timeout: 30000 });
      assert.match(await frame.locator('#command-line').textContent(), new RegExp(`${name}\\.py`));
      await frame.locator('#flame-panel[data-ready]').waitFor({ timeout: 30000 });
    }
    await screenshot(tab, 'notebook');
    assert.deepEqual(problems, []);
    await tab.close();
  });

  test('--standalone cells carry a whole viewer of their own', async () => {
    const [output] = cellOutputs([join(FIXTURES, 'big_alloc.memlens')], { standalone: true });
    assert.ok(!output.includes('window.memlensViewers') && output.length > 1_000_000);
    const tab = await env.chrome.context.newPage();
    await tab.goto(notebook('alone.html', [output]));
    const frame = tab.frameLocator('#cell-0 iframe');
    await frame.locator('#command-line').waitFor({ timeout: 30000 });
    await tab.close();
  });
});
