// Opens the live page served by `inflight run --serve` in headless Chromium and checks that it
// shows decisions (and, for trading, the charts), then takes a full-page screenshot.
//
// usage: node view.mjs <url> <screenshot.png> [pipeline] [--min-rows N]
//
// The page exposes a test hook, window.inflightView = { pipeline, rows, candles, rsiPoints,
// macdPoints, markers, missed }, which is polled until it shows enough; the DOM is checked too
// (decision table rows, non-empty canvases). Any console error or uncaught page error fails the
// run. On success one JSON line {"rows", "candles", "rsiPoints", "macdPoints", "markers"} goes to
// stdout and the exit code is 0; on failure the reason goes to stderr and the exit code is 1.
// Chromium comes from $INFLIGHT_CHROMIUM, default /usr/bin/chromium (playwright-core downloads
// no browser).

import { chromium } from 'playwright-core';

const WAIT_MS = 30_000; // for the hook and the DOM to show enough
const SETTLE_MS = 1_500; // after that, for the charts to finish drawing before the screenshot

function usage(message) {
  console.error(`view.mjs: ${message}`);
  console.error('usage: node view.mjs <url> <screenshot.png> [pipeline] [--min-rows N]');
  process.exit(1);
}

// Arguments: positional url, screenshot, pipeline; --min-rows N (or --min-rows=N) anywhere.
const positional = [];
let minRows = 5;
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  if (a === '--min-rows' || a.startsWith('--min-rows=')) {
    const value = a.includes('=') ? a.slice(a.indexOf('=') + 1) : argv[++i];
    minRows = Number(value);
    if (!Number.isInteger(minRows) || minRows < 0) usage(`--min-rows wants a whole number, got ${value}`);
  } else if (a.startsWith('--')) {
    usage(`unknown option ${a}`);
  } else {
    positional.push(a);
  }
}
if (positional.length < 2 || positional.length > 3) usage('wants a url and a screenshot path');
const [url, screenshot, pipeline] = positional;
const charts = pipeline === 'trading';

const executablePath = process.env.INFLIGHT_CHROMIUM || '/usr/bin/chromium';
// The machine may have no internet: without the background-networking flags Chromium stalls on
// its own update and sync traffic. playwright gives each launch a fresh temporary profile.
const args = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

// What the page shows: the hook's values and what the DOM has. Runs in the page.
function observe() {
  let hook = window.inflightView;
  if (typeof hook === 'function') hook = hook();
  const table =
    (() => {
      const el = document.querySelector('#decisions');
      if (!el) return null;
      return el.tagName === 'TABLE' ? el : el.querySelector('table');
    })() || [...document.querySelectorAll('table')].find((t) => t.querySelector('tbody tr'));
  const canvases = [...document.querySelectorAll('canvas')].filter((c) => {
    const r = c.getBoundingClientRect();
    return c.width > 0 && c.height > 0 && r.width > 0 && r.height > 0;
  }).length;
  return {
    hook: hook && typeof hook === 'object' ? JSON.parse(JSON.stringify(hook)) : hook ?? null,
    table: table ? (table.id ? `table#${table.id}` : 'table') : null,
    tableRows: table ? table.querySelectorAll('tbody tr').length : 0,
    canvases,
  };
}

// Why what the page shows is not enough yet, or null when it is.
function lacking(seen) {
  const h = seen.hook;
  if (!h || typeof h !== 'object') return 'window.inflightView is not set';
  const num = (k) => (typeof h[k] === 'number' ? h[k] : Number.NaN);
  const why = [];
  if (pipeline && h.pipeline !== pipeline) why.push(`inflightView.pipeline is ${JSON.stringify(h.pipeline)}, not "${pipeline}"`);
  if (!(num('rows') >= minRows)) why.push(`inflightView.rows is ${h.rows} (< ${minRows})`);
  if (charts) {
    for (const k of ['candles', 'rsiPoints', 'macdPoints']) if (!(num(k) > 0)) why.push(`inflightView.${k} is ${h[k]}`);
  }
  if (!seen.table) why.push('no decision table (#decisions, or a table with tbody rows)');
  else if (seen.tableRows < minRows) why.push(`${seen.table} has ${seen.tableRows} tbody rows (< ${minRows})`);
  if (charts && seen.canvases < 3) why.push(`${seen.canvases} visible canvases (< 3)`);
  return why.length ? why.join('; ') : null;
}

const errors = [];
let browser;
let code = 1;
try {
  browser = await chromium.launch({ executablePath, args, timeout: WAIT_MS });
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.on('console', (msg) => {
    if (msg.type() === 'error') {
      const loc = msg.location();
      // Chromium asks for /favicon.ico on its own; a server without one is not a page error.
      if (loc && /\/favicon\.ico$/.test(loc.url || '')) return;
      errors.push(`console error: ${msg.text()}${loc && loc.url ? ` (${loc.url}:${loc.lineNumber})` : ''}`);
    }
  });
  page.on('pageerror', (err) => errors.push(`page error: ${err.stack || err.message || err}`));
  page.on('crash', () => errors.push('the page crashed'));

  const response = await page.goto(url, { waitUntil: 'domcontentloaded', timeout: WAIT_MS });
  if (!response || !response.ok()) throw new Error(`GET ${url} answered ${response ? response.status() : 'nothing'}`);

  // Poll rather than page.waitForFunction, so that an error stops the wait at once and a
  // timeout can say what was missing.
  const deadline = Date.now() + WAIT_MS;
  let seen;
  let why;
  for (;;) {
    seen = await page.evaluate(observe);
    why = lacking(seen);
    if (errors.length || !why) break;
    if (Date.now() > deadline) {
      throw new Error(`after ${WAIT_MS / 1000} s the page still lacks: ${why}\nlast seen: ${JSON.stringify(seen)}`);
    }
    await page.waitForTimeout(250);
  }
  if (!errors.length) {
    await page.waitForTimeout(SETTLE_MS);
    seen = await page.evaluate(observe);
    const later = lacking(seen); // values only grow; a page that lost them is broken
    if (later) throw new Error(`the page lost what it showed: ${later}\nlast seen: ${JSON.stringify(seen)}`);
  }
  if (errors.length) throw new Error(`the page reported errors:\n  ${errors.join('\n  ')}\nlast seen: ${JSON.stringify(seen)}`);

  await page.screenshot({ path: screenshot, fullPage: true });
  const h = seen.hook;
  const summary = {
    rows: h.rows,
    candles: h.candles ?? null,
    rsiPoints: h.rsiPoints ?? null,
    macdPoints: h.macdPoints ?? null,
    markers: h.markers ?? null,
  };
  console.error(
    `view.mjs: ${url} ok: pipeline ${h.pipeline}, ${seen.tableRows} rows in ${seen.table}, ` +
      `${seen.canvases} canvases, missed ${h.missed ?? 'n/a'}; screenshot ${screenshot}`,
  );
  console.log(JSON.stringify(summary));
  code = 0;
} catch (err) {
  const message = String(err && err.message ? err.message : err).replace(/\x1b\[[0-9;]*m/g, ''); // no colours
  console.error(`view.mjs: ${url}: ${message}`);
  for (const e of errors) if (!String(err).includes(e)) console.error(`  ${e}`);
} finally {
  if (browser) await browser.close().catch(() => {});
}
process.exit(code);
