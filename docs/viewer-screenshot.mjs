// Makes docs/viewer.png, the README's picture of the viewer: `./dev screenshot` runs it on
// a single-file report of collector/examples/demo.py, in the headless Chromium the browser
// tests use. Usage: node docs/viewer-screenshot.mjs REPORT.html OUT.png NODE_MODULES
import { createRequire } from 'node:module';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const [report, out, modules] = process.argv.slice(2);
const require = createRequire(join(resolve(modules), 'noop.js'));
const { chromium } = require('playwright-core');

const profile = mkdtempSync(join(tmpdir(), 'memlens-screenshot-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.MEMLENS_CHROMIUM ?? '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run'],
  viewport: { width: 1200, height: 1150 },
});
try {
  const page = await context.newPage();
  await page.emulateMedia({ colorScheme: 'light' });
  await page.goto(`file://${resolve(report)}`);
  await page.waitForSelector('#command-line', { timeout: 60000 });
  await page.waitForFunction(() => document.querySelector('#flame-canvas')?.width > 0);
  // The flame graph is drawn on the next animation frames.
  await page.waitForTimeout(1500);
  // Down to the first rows of the call-site table.
  await page.screenshot({ path: out, clip: { x: 0, y: 0, width: 1200, height: 1010 } });
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
