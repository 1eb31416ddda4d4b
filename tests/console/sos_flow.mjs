// Drives the SOS dispatch console in Debian's headless Chromium while the Rust test
// (tests/tests/sos_console_browser.rs) runs real phones. The two take turns, one JSON line
// each way: this script prints {"step": ...} on stdout and reads the test's answers on stdin.
//
//   node tests/console/sos_flow.mjs <base-url> <shots-dir> <input-json>
//
// <input-json>: {"seoul": {"username", "password", "region"}, "busan": {...},
//                "labels": {<Label name>: English text}}
// Steps: ready → (test: {"incident", "accepted_ms"}) → acted {"message"} →
// (test: {"duress", "busan"}) → done {"ok", "checks", "shots", "latency_ms", "error"?}.
// Screenshots go to <shots-dir>/sos-<nn>-<name>.png.

import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

const [base, shotsDir, inputJson] = process.argv.slice(2);
if (!base || !shotsDir || !inputJson) {
  console.error('usage: sos_flow.mjs <base-url> <shots-dir> <input-json>');
  process.exit(2);
}
const input = JSON.parse(inputJson);
const L = input.labels;
mkdirSync(shotsDir, { recursive: true });

const lines = [];
let waiter = null;
createInterface({ input: process.stdin }).on('line', (line) => {
  if (waiter) { const w = waiter; waiter = null; w(line); } else lines.push(line);
});
const nextLine = () => (lines.length ? Promise.resolve(lines.shift()) : new Promise((r) => { waiter = r; }));
const say = (obj) => process.stdout.write(`${JSON.stringify(obj)}\n`);

const checks = [];
const shots = [];
const pageErrors = [];
let shotNo = 0;
let latencyMs = null;
const check = (name, ok, detail = '') => checks.push({ name, ok: Boolean(ok), detail: String(detail) });
const url = (path) => new URL(path, base).toString();

async function shot(page, name) {
  shotNo += 1;
  const file = `sos-${String(shotNo).padStart(2, '0')}-${name}.png`;
  await page.screenshot({ path: join(shotsDir, file), fullPage: true });
  shots.push(file);
}

async function openDesk(browser, who) {
  const context = await browser.newContext({
    viewport: { width: 1400, height: 900 }, locale: 'en-GB', extraHTTPHeaders: { 'Accept-Language': 'en' },
  });
  context.setDefaultTimeout(30000);
  const page = await context.newPage();
  page.on('console', (msg) => {
    if (msg.type() === 'error' && !msg.text().startsWith('Failed to load resource')) pageErrors.push(msg.text());
  });
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  const desk = `/console/dispatch/${who.region}`;
  await page.goto(url(`/console/login?next=${encodeURIComponent(desk)}`));
  await page.fill('#username', who.username);
  await page.fill('#password', who.password);
  await Promise.all([page.waitForNavigation(), page.click('form[action="/console/login"] button[type=submit]')]);
  await page.waitForSelector('#live-status.live-status--on');
  // Records when each row first appears, in the page, and marks the document: a reload
  // would lose the mark.
  await page.evaluate(() => {
    window.sosSeen = {};
    const note = () => document.querySelectorAll('#incident-rows tr[data-incident]').forEach((tr) => {
      const id = tr.getAttribute('data-incident');
      if (!window.sosSeen[id]) window.sosSeen[id] = Date.now();
    });
    new MutationObserver(note).observe(document.getElementById('incident-rows'), { childList: true, subtree: true });
  });
  return { context, page, path: desk };
}

const rowIds = (page) => page.$$eval('#incident-rows tr[data-incident]', (trs) => trs.map((tr) => tr.getAttribute('data-incident')));

let error;
const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--autoplay-policy=user-gesture-required'],
});
try {
  const seoul = await openDesk(browser, input.seoul);
  const busan = await openDesk(browser, input.busan);
  const s = seoul.page;
  const b = busan.page;
  check('seoul page opens with an empty list', new URL(s.url()).pathname === seoul.path &&
    (await rowIds(s)).length === 0 && (await s.textContent('#incident-rows')).includes(L.NoIncidents));
  check('busan page opens', new URL(b.url()).pathname === busan.path);
  const bannerShown = await s.isVisible('#sound-banner');
  const toggleText = (await s.textContent('#sound-toggle')).trim();
  await shot(s, 'seoul-waiting');
  await s.click('#sound-toggle');
  check('sound toggle and banner shown', bannerShown && toggleText === L.SoundOff &&
    (await s.getAttribute('#sound-toggle', 'aria-pressed')) === 'true' && !(await s.isVisible('#sound-banner')) &&
    (await s.textContent('#sound-toggle')).trim() === L.SoundOn, `${bannerShown} ${toggleText}`);
  for (const p of [s, b]) await p.evaluate(() => { window.sosNotReloaded = true; });

  say({ step: 'ready' });
  const first = JSON.parse(await nextLine());
  const a = first.incident;
  await s.waitForSelector(`#incident-${a}`);
  const seenAt = await s.evaluate((id) => window.sosSeen[id], a);
  latencyMs = seenAt - first.accepted_ms;
  console.error(`beacon accepted -> row visible: ${latencyMs} ms`);
  check('seoul page shows the incident live', (await s.evaluate(() => window.sosNotReloaded === true)) &&
    (await rowIds(s)).includes(a), `${latencyMs} ms`);
  await s.waitForSelector('#alert-banner:not([hidden])');
  check('new incident alert shown', (await s.textContent('#alert-banner')).trim() === L.NewIncidentAlert);
  await shot(s, 'seoul-new-incident');
  check('busan page does not show the seoul incident', (await b.locator(`#incident-${a}`).count()) === 0);

  // Opened from the keyboard.
  await s.focus(`#incident-${a} button.open-incident`);
  await s.keyboard.press('Enter');
  await s.waitForSelector('#incident-detail:not([hidden])');
  await s.waitForFunction(() => document.querySelectorAll('#map path.leaflet-interactive').length >= 3);
  const paths = await s.locator('#map path.leaflet-interactive').count();
  check('incident opens with its map', paths >= 3, `${paths} paths`);
  const gridLabels = await s.locator('#map .graticule-label').count();
  const tiles = await s.locator('#map img.leaflet-tile').count();
  check('map draws the position without tiles', gridLabels > 0 && tiles === 0, `${gridLabels} labels, ${tiles} tiles`);
  await shot(s, 'seoul-incident-open');

  await s.click('#ack-button');
  await s.waitForFunction((want) => document.getElementById('incident-summary').textContent.includes(want),
    L.SosStateAcknowledged);
  check('acknowledge by click', true);
  const message = 'Police are on the way. Reply yes if you are safe.';
  await s.fill('#message-text', message);
  await s.click('#message-form button[type=submit]');
  await s.waitForFunction((want) => [...document.querySelectorAll('#thread li.from-dispatch')]
    .some((li) => li.textContent.includes(want)), message);
  // The feed may show it before the POST's answer clears the box.
  await s.waitForFunction(() => document.getElementById('message-text').value === '');
  check('message sent by click appears in the thread', true);
  await shot(s, 'seoul-acknowledged-and-messaged');
  say({ step: 'acted', message });

  const more = JSON.parse(await nextLine());
  await s.waitForFunction((want) => [...document.querySelectorAll('#thread li.from-caller')]
    .some((li) => li.textContent.includes(want)), L.QuickCantTalk);
  check("caller's one-tap reply appears in the thread", true);
  await s.waitForSelector(`#incident-${more.duress}`);
  await s.waitForFunction((id) => {
    const first = document.querySelector('#incident-rows tr[data-incident]');
    return first && first.getAttribute('data-incident') === id && first.querySelector('.tag--duress');
  }, more.duress);
  const order = await rowIds(s);
  const badge = (await s.textContent(`#incident-${more.duress} .tag--duress`)).trim();
  check('duress incident listed first with its badge', order[0] === more.duress && order.includes(a) &&
    badge === L.SosStateDuress, `${order} ${badge}`);
  await shot(s, 'seoul-duress-first');

  await b.waitForSelector(`#incident-${more.busan}`);
  check('busan page shows the busan incident live', (await b.evaluate(() => window.sosNotReloaded === true)) &&
    (await rowIds(b)).includes(more.busan));
  const busanRows = await rowIds(b);
  check('busan page never shows the seoul incidents', !busanRows.includes(a) && !busanRows.includes(more.duress),
    busanRows);
  await shot(b, 'busan-desk');

  await s.click('#close-form button[type=submit]');
  await s.waitForSelector('#dispatch-errors .error-summary');
  const summary = await s.evaluate(() => {
    const box = document.querySelector('#dispatch-errors .error-summary');
    const link = box.querySelector('a');
    return { focused: document.activeElement === box, href: link && link.getAttribute('href'),
      text: box.textContent };
  });
  check('close without an outcome shows the error summary', summary.focused && summary.href === '#outcome' &&
    summary.text.includes(L.OutcomeMissing) && summary.text.includes(L.ErrorSummaryTitle), JSON.stringify(summary));
  await shot(s, 'seoul-close-error');
  await s.selectOption('#outcome', 'assisted');
  await s.click('#close-form button[type=submit]');
  await s.waitForSelector(`#incident-${a}`, { state: 'detached' });
  check('close with an outcome removes the row', (await s.locator('#dispatch-errors .error-summary').count()) === 0);
  await shot(s, 'seoul-closed');
  await seoul.context.close();
  await busan.context.close();
} catch (e) {
  error = String(e && e.stack ? e.stack : e);
} finally {
  await browser.close();
}
check('no script errors or CSP violations', pageErrors.length === 0, pageErrors.join('; '));
const ok = !error && checks.every((c) => c.ok);
say({ step: 'done', ok, checks, shots, latency_ms: latencyMs, error });
process.exit(ok ? 0 : 1);
