// Viewer benchmark (issue 4): how long a big recording takes to become interactive in headless
// Chromium, and how long zoom, hover, mode and range changes take to redraw. Run it with
// `./dev bench-viewer` (which builds the viewer, records bench/workloads/churn.py and sets the
// environment below); it prints a table and never fails on timings.
//
// Timings come from the User Timing entries the viewer emits: `memlens:first-paint:<canvas>`
// (first paint with data), `memlens:draw:<canvas>` (each paint) and `memlens:<step>` (decode,
// timeline, flame tree, ...). A redraw is measured in the page, from just before the change
// (a hash change or a dispatched pointer event) to the end of the next paint of that canvas.
//
//   MEMLENS_DIST, MEMLENS_FIXTURES (folder holding the recording), MEMLENS_NODE_MODULES,
//   MEMLENS_SCREENSHOTS, MEMLENS_BENCH_FILE (the recording's name in that folder),
//   MEMLENS_BENCH_EVENTS (its number of events, for the table), MEMLENS_BENCH_REPEAT (default 15).
import { browser, openPage, serve } from '../tests/browser/harness.mjs';

const FILE = process.env.MEMLENS_BENCH_FILE ?? 'churn.memlens';
const EVENTS = process.env.MEMLENS_BENCH_EVENTS ?? '?';
const REPEAT = Number(process.env.MEMLENS_BENCH_REPEAT ?? 15);

const server = await serve();
const chrome = await browser();
const rows = [];
const stat = (name, values) => {
  const v = [...values].filter((x) => !Number.isNaN(x)).sort((a, b) => a - b);
  if (v.length < values.length) console.error(`${name}: ${values.length - v.length} change(s) never repainted`);
  const q = (p) => v[Math.min(v.length - 1, Math.floor(p * v.length))];
  rows.push({ name, n: v.length, median: q(0.5), p95: q(0.95), max: v[v.length - 1] });
};

try {
  // Long tasks (> 50 ms on the main thread) are what make a page feel frozen.
  await chrome.context.addInitScript(() => {
    window.__longtasks = [];
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) window.__longtasks.push(e.duration);
    }).observe({ type: 'longtask', buffered: true });
  });
  const page = await openPage(chrome.context, `${server.url}?url=fixtures/${FILE}`);
  // In-page helpers: wait for the next paint of a canvas after `since`, and time a change.
  await page.evaluate(() => {
    // Resolves to NaN when nothing is painted within 30 s (a change that changed nothing).
    const after = (canvas, since) => new Promise((resolve) => {
      const look = () => {
        if (performance.now() - since > 30_000) return resolve(NaN);
        const e = performance.getEntriesByName(`memlens:draw:${canvas}`, 'measure')
          .find((m) => m.startTime >= since);
        if (e) resolve(e.startTime + e.duration - since);
        else setTimeout(look, 1);
      };
      look();
    });
    window.__bench = {
      hash: async (canvas, hash) => {
        const t0 = performance.now();
        location.hash = hash;
        return after(canvas, t0);
      },
      hover: async (canvas, fx, fy) => {
        const c = document.getElementById(canvas);
        const r = c.getBoundingClientRect();
        const t0 = performance.now();
        c.dispatchEvent(new PointerEvent('pointermove', {
          clientX: r.left + r.width * fx, clientY: r.top + r.height * fy, bubbles: true,
        }));
        return after(canvas, t0);
      },
    };
  });
  await page.waitForFunction(
    () => performance.getEntriesByName('memlens:first-paint:flame-canvas').length > 0,
    null, { timeout: 600_000, polling: 100 });
  const load = await page.evaluate(() => {
    const m = (n) => performance.getEntriesByName(n)[0];
    const steps = performance.getEntriesByType('measure')
      .filter((e) => !e.name.startsWith('memlens:draw:'))
      .map((e) => [e.name.replace('memlens:', ''), e.duration]);
    return {
      interactive: m('memlens:first-paint:flame-canvas').startTime,
      timeline: m('memlens:first-paint:timeline-canvas')?.startTime,
      steps,
    };
  });
  rows.push({ name: 'time to interactive (first flame paint)', n: 1, median: load.interactive });
  if (load.timeline) rows.push({ name: 'first timeline paint', n: 1, median: load.timeline });
  for (const [name, ms] of load.steps) rows.push({ name: `  step: ${name}`, n: 1, median: ms });

  const bench = (fn, ...args) => page.evaluate(([fn, args]) => window.__bench[fn](...args), [fn, args]);
  // Hover: pointer moves across the flame graph's top rows (hit test + tooltip + repaint).
  const hovers = [];
  for (let i = 0; i < REPEAT; i++) hovers.push(await bench('hover', 'flame-canvas', 0.05 + (i % 9) * 0.1, 0.02));
  stat('hover flame graph', hovers);
  const tl = [];
  for (let i = 0; i < REPEAT; i++) tl.push(await bench('hover', 'timeline-canvas', 0.1 + (i % 8) * 0.1, 0.5));
  stat('hover timeline', tl);
  // Zoom: into the root's largest child and back (layout of a new subtree + repaint).
  const child = await page.evaluate(() => {
    const c = document.getElementById('flame-canvas');
    const r = c.getBoundingClientRect();
    c.dispatchEvent(new PointerEvent('pointerdown', { clientX: r.left + 5, clientY: r.top + 30, button: 0, bubbles: true }));
    c.dispatchEvent(new PointerEvent('pointerup', { clientX: r.left + 5, clientY: r.top + 30, button: 0, bubbles: true }));
    return new Promise((ok) => setTimeout(() => ok(location.hash), 200));
  });
  const zooms = [];
  for (let i = 0; i < REPEAT; i++) zooms.push(await bench('hash', 'flame-canvas', i % 2 ? child : ''));
  stat(`zoom in/out (${child || 'no child'})`, zooms);
  // Modes: the first visit replays the recording, later ones come from the cache.
  stat('mode change, first visit (replay)', [await bench('hash', 'flame-canvas', '#mode=leaks')]);
  stat('mode change, first visit (replay)', [await bench('hash', 'flame-canvas', '#mode=total')]);
  const modes = [];
  for (let i = 0; i < REPEAT; i++) modes.push(await bench('hash', 'flame-canvas', ['', '#mode=leaks', '#mode=total'][i % 3]));
  stat('mode change, cached', modes);
  // Range: a new selection redraws the timeline at once and replays for the flame graph.
  const end = await page.evaluate(() => {
    const t = document.querySelector('#fact-duration .fact-value').textContent;
    const v = parseFloat(t);
    return Math.round(t.endsWith('ms') ? v * 1e6 : t.endsWith('µs') ? v * 1e3 : v * 1e9);
  });
  const rangeTl = [];
  const rangeFlame = [];
  for (let i = 0; i < Math.min(REPEAT, 5); i++) {
    const a = Math.round(end * (0.1 + 0.05 * i));
    const b = Math.round(end * (0.4 + 0.05 * i));
    const t0 = await page.evaluate(() => performance.now());
    const tlMs = await bench('hash', 'timeline-canvas', `#mode=range&range=${a}-${b}`);
    rangeTl.push(tlMs);
    rangeFlame.push(await page.evaluate(([t0]) => new Promise((resolve) => {
      const look = () => {
        const e = performance.getEntriesByName('memlens:draw:flame-canvas', 'measure').find((m) => m.startTime >= t0);
        if (e) resolve(e.startTime + e.duration - t0);
        else if (performance.now() - t0 > 60_000) resolve(NaN);
        else setTimeout(look, 5);
      };
      look();
    }), [t0]));
  }
  stat('range change: timeline redraw', rangeTl);
  stat('range change: flame graph (replay)', rangeFlame);
  // n is how many there were (0 shows as one 0 ms entry): the page froze that often.
  const longtasks = await page.evaluate(() => window.__longtasks);
  stat('main-thread long tasks (> 50 ms), whole run', longtasks.length ? longtasks : [0]);
  await page.close();
} finally {
  await chrome.close();
  await server.close();
}

const fmt = (v) => (v === undefined ? '' : v.toFixed(1).padStart(9));
console.log(`\nmemlens viewer benchmark: ${FILE}, ${EVENTS} events, headless Chromium\n`);
console.log(`${'what'.padEnd(46)} ${'n'.padStart(3)} ${'median ms'.padStart(9)} ${'p95 ms'.padStart(9)} ${'max ms'.padStart(9)}`);
for (const r of rows) {
  console.log(`${r.name.padEnd(46)} ${String(r.n).padStart(3)} ${fmt(r.median)} ${fmt(r.p95)} ${fmt(r.max)}`);
}
