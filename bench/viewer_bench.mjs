// Viewer benchmark (issues 4 and 18): how long a recording takes to become interactive in
// headless Chromium, how long mode, range and zoom changes take to show, and how much memory
// the tab holds. Run it with `./dev bench-viewer [ROWS]` (which builds the viewer, records
// bench/workloads/churn.py ROWS and sets the environment below); it prints a table and never
// fails on timings.
//
// The recording is served with range requests, as `memlens view` serves it. Timings come from
// the User Timing entries the viewer emits: `memlens:first-paint:<canvas>` (first paint with
// data), `memlens:draw:<canvas>` (each paint) and `memlens:<step>` (open, flame, timeline,
// ...). A change is measured in the page, from just before it (a hash change or a dispatched
// pointer event) to the end of the first paint of its result: for the flame graph, the first
// paint after `#flame-panel` says it shows the new mode (`data-ready`: `leaks`, `range:A-B`).
//
// Memory: the renderer process's resident set (the page and its worker run in it: this is
// the tab's memory), the page's JS heap (CDP Performance.getMetrics) and both wasm memories.
//
//   MEMLENS_DIST, MEMLENS_FIXTURES (folder holding the recording), MEMLENS_NODE_MODULES,
//   MEMLENS_SCREENSHOTS, MEMLENS_BENCH_FILE (the recording's name in that folder),
//   MEMLENS_BENCH_EVENTS (its number of events, for the table), MEMLENS_BENCH_REPEAT (default 15).
import { createRequire } from 'node:module';
import { readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';

import { FIXTURES, serve } from '../tests/browser/harness.mjs';

const FILE = process.env.MEMLENS_BENCH_FILE ?? 'churn.memlens';
const EVENTS = process.env.MEMLENS_BENCH_EVENTS ?? '?';
const REPEAT = Number(process.env.MEMLENS_BENCH_REPEAT ?? 15);
const require = createRequire(join(resolve(process.env.MEMLENS_NODE_MODULES), 'noop.js'));
const { chromium } = require('playwright-core');

const server = await serve();
const browser = await chromium.launch({
  executablePath: process.env.MEMLENS_CHROMIUM ?? '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run',
         '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
const rows = [];
const stat = (name, values) => {
  const v = [...values].filter((x) => !Number.isNaN(x)).sort((a, b) => a - b);
  if (v.length < values.length) console.error(`${name}: ${values.length - v.length} change(s) never repainted`);
  const q = (p) => v[Math.min(v.length - 1, Math.floor(p * v.length))];
  rows.push({ name, n: v.length, median: q(0.5), p95: q(0.95), max: v[v.length - 1] });
};
const mib = (bytes) => bytes / (1 << 20);

/** Resident set of the browser's renderer processes, in bytes (CDP names them, Linux /proc
 *  measures them): the page and its worker run in the one renderer of this context. */
async function rendererRss() {
  const cdp = await browser.newBrowserCDPSession();
  const { processInfo } = await cdp.send('SystemInfo.getProcessInfo');
  let rss = 0;
  for (const p of processInfo.filter((p) => p.type === 'renderer')) {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${p.id}/status`, 'utf8'));
    if (m) rss += Number(m[1]) * 1024;
  }
  return rss;
}

try {
  const page = await context.newPage();
  // Long tasks (> 50 ms on the main thread) are what make a page feel frozen.
  await page.addInitScript(() => {
    window.__longtasks = [];
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) window.__longtasks.push(e.duration);
    }).observe({ type: 'longtask', buffered: true });
  });
  // The empty viewer first: what the tab costs before any recording (and its worker).
  await page.goto(server.url);
  await page.waitForSelector('#empty-state');
  const emptyRss = await rendererRss();
  await page.goto(`${server.url}?url=fixtures/${FILE}`);
  await page.waitForFunction(
    () => performance.getEntriesByName('memlens:first-paint:flame-canvas').length > 0
      && performance.getEntriesByName('memlens:first-paint:timeline-canvas').length > 0,
    null, { timeout: 600_000, polling: 50 });
  const load = await page.evaluate(() => {
    const m = (n) => performance.getEntriesByName(n)[0];
    const steps = performance.getEntriesByType('measure')
      .filter((e) => !e.name.startsWith('memlens:draw:'))
      .map((e) => [e.name.replace('memlens:', ''), e.duration]);
    return {
      flame: m('memlens:first-paint:flame-canvas').startTime,
      timeline: m('memlens:first-paint:timeline-canvas').startTime,
      steps,
    };
  });
  rows.push({ name: 'first flame-graph paint (from navigation)', n: 1, median: load.flame });
  rows.push({ name: 'first timeline paint (from navigation)', n: 1, median: load.timeline });
  for (const [name, ms] of load.steps) rows.push({ name: `  step: ${name}`, n: 1, median: ms });

  // In-page helpers: the first paint of a canvas that starts after `since` (NaN after 60 s),
  // and timed changes.
  await page.evaluate(() => {
    const paintAfter = (canvas, since) => new Promise((resolve) => {
      const look = () => {
        if (performance.now() - since > 60_000) return resolve(NaN);
        const e = performance.getEntriesByName(`memlens:draw:${canvas}`, 'measure')
          .find((m) => m.startTime >= since);
        if (e) resolve(e.startTime + e.duration);
        else setTimeout(look, 1);
      };
      look();
    });
    /** Resolves to the time `#flame-panel` first shows `mode` after `since`. */
    const flameReady = (mode) => new Promise((resolve) => {
      const panel = document.getElementById('flame-panel');
      const check = () => panel.dataset.ready === mode;
      const observer = new MutationObserver(() => {
        if (check()) { observer.disconnect(); resolve(performance.now()); }
      });
      observer.observe(panel, { attributes: true, attributeFilter: ['data-ready'] });
    });
    window.__bench = {
      // A hash change that puts the flame graph in `mode`: until its first paint.
      flame: async (hash, mode) => {
        const t0 = performance.now();
        const ready = flameReady(mode);
        location.hash = hash;
        const at = await ready;
        return (await paintAfter('flame-canvas', at - 1)) - t0;
      },
      // A hash change that only redraws `canvas` (a selection, a zoom).
      redraw: async (canvas, hash) => {
        const t0 = performance.now();
        location.hash = hash;
        return (await paintAfter(canvas, t0)) - t0;
      },
      hover: async (canvas, fx, fy) => {
        const c = document.getElementById(canvas);
        const r = c.getBoundingClientRect();
        const t0 = performance.now();
        c.dispatchEvent(new PointerEvent('pointermove', {
          clientX: r.left + r.width * fx, clientY: r.top + r.height * fy, bubbles: true,
        }));
        return (await paintAfter(canvas, t0)) - t0;
      },
    };
  });
  const bench = (fn, ...args) => page.evaluate(([fn, args]) => window.__bench[fn](...args), [fn, args]);

  const hovers = [];
  for (let i = 0; i < REPEAT; i++) hovers.push(await bench('hover', 'flame-canvas', 0.05 + (i % 9) * 0.1, 0.02));
  stat('hover flame graph', hovers);
  // Modes: the first visit asks the worker, later ones come from the page's cache.
  stat('mode change, first visit (worker)', [await bench('flame', '#mode=leaks', 'leaks')]);
  stat('mode change, first visit (worker)', [await bench('flame', '#mode=total', 'total')]);
  const modes = [];
  for (let i = 0; i < REPEAT; i++) {
    const [hash, mode] = [['#mode=peak', 'peak'], ['#mode=leaks', 'leaks'], ['#mode=total', 'total']][i % 3];
    modes.push(await bench('flame', hash, mode));
  }
  stat('mode change, cached', modes);
  // Ranges: each new selection redraws the timeline at once and asks the worker for the
  // flame graph of the range's peak (and the range's peak for the timeline's note).
  const end = await page.$eval('#timeline-panel', (e) => Number(e.dataset.endNs));
  const rangeTl = [];
  const rangeFlame = [];
  for (let i = 0; i < REPEAT; i++) {
    const a = Math.round(end * (0.05 + 0.04 * i));
    const b = Math.round(end * (0.35 + 0.04 * i));
    await bench('flame', '#mode=peak', 'peak');
    rangeTl.push(await bench('redraw', 'timeline-canvas', `#mode=peak&range=${a}-${b}`));
    rangeFlame.push(await bench('flame', `#mode=range&range=${a}-${b}`, `range:${a}-${b}`));
  }
  stat('range change: timeline selection', rangeTl);
  stat('range change: flame graph (worker)', rangeFlame);
  // Zoom the timeline into a window: the worker sums the aggregates for its buckets.
  const zooms = [];
  for (let i = 0; i < Math.min(REPEAT, 8); i++) {
    const a = Math.round(end * (0.1 + 0.08 * i));
    zooms.push(await bench('redraw', 'timeline-canvas', `#window=${a}-${a + Math.round(end * 0.05)}`));
  }
  stat('timeline zoom to a new window (worker)', zooms);
  const longtasks = await page.evaluate(() => window.__longtasks);
  stat('main-thread long tasks (> 50 ms), whole run', longtasks.length ? longtasks : [0]);

  // Memory, after everything above.
  const cdp = await context.newCDPSession(page);
  await cdp.send('Performance.enable');
  const { metrics } = await cdp.send('Performance.getMetrics');
  const jsHeap = metrics.find((m) => m.name === 'JSHeapUsedSize')?.value ?? NaN;
  const pageWasm = await page.evaluate(() => window.memlensWasmMemory?.() ?? NaN);
  const workerWasm = await Promise.all(page.workers().map((w) => w.evaluate(() => self.memlensWasmMemory?.() ?? 0)));
  const rss = await rendererRss();
  rows.push({ name: 'memory: renderer RSS (the tab), MiB', n: 1, median: mib(rss) });
  rows.push({ name: 'memory:   of which the empty viewer, MiB', n: 1, median: mib(emptyRss) });
  rows.push({ name: 'memory: page JS heap used, MiB', n: 1, median: mib(jsHeap) });
  rows.push({ name: 'memory: page wasm memory, MiB', n: 1, median: mib(pageWasm) });
  rows.push({ name: 'memory: worker wasm memory, MiB', n: 1, median: mib(workerWasm.reduce((a, b) => a + b, 0)) });
  const size = statSync(join(FIXTURES, FILE)).size;
  const sent = server.sent(`/fixtures/${FILE}`);
  rows.push({ name: `recording: MiB sent of ${mib(size).toFixed(1)} MiB`, n: 1, median: mib(sent) });
  await page.close();
} finally {
  await browser.close();
  await server.close();
}

const fmt = (v) => (v === undefined ? '' : v.toFixed(1).padStart(9));
console.log(`\nmemlens viewer benchmark: ${FILE}, ${EVENTS} events, headless Chromium\n`);
console.log(`${'what (ms unless said)'.padEnd(46)} ${'n'.padStart(3)} ${'median'.padStart(9)} ${'p95'.padStart(9)} ${'max'.padStart(9)}`);
for (const r of rows) {
  console.log(`${r.name.padEnd(46)} ${String(r.n).padStart(3)} ${fmt(r.median)} ${fmt(r.p95)} ${fmt(r.max)}`);
}
