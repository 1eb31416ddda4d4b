// Drives Sotong's staff console in Debian's headless Chromium, as staff members would.
//
//   node tests/console/flows.mjs <base-url> <shots-dir> <input-json>
//
// <base-url> is http://localhost:PORT (a secure context, so the __Host- cookies work).
// <input-json> holds the three members' credentials and scopes and the labels the pages must
// show, in both languages, straight from the server's i18n table:
//   {"admin": {"username", "password"}, "officer": {"username", "password", "agency"},
//    "dispatcher": {"username", "password", "region"}, "labels": {"ko": {...}, "en": {...}}}
// Prints one JSON object: {"ok", "checks": [{"name", "ok", "detail"}], "shots": [...],
// "a11y": [{"page", "problems"}], "error"?}; exits 0 only when every check passed.
// A screenshot of every page visited goes to <shots-dir>/<nn>-<name>.png (1280×800 viewport,
// whole page).

import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const [base, shotsDir, inputJson] = process.argv.slice(2);
if (!base || !shotsDir || !inputJson) {
  console.error('usage: flows.mjs <base-url> <shots-dir> <input-json>');
  process.exit(2);
}
const input = JSON.parse(inputJson);
const L = input.labels;
mkdirSync(shotsDir, { recursive: true });

const checks = [];
const pageErrors = [];
const shots = [];
const a11y = [];
let shotNo = 0;

function check(name, ok, detail = '') {
  checks.push({ name, ok: Boolean(ok), detail: String(detail) });
}

const url = (path) => new URL(path, base).toString();
const pathOf = (page) => new URL(page.url()).pathname;
const h1 = async (page) => (await page.locator('h1').first().textContent())?.trim() ?? '';
const hasHangul = (s) => /[\uAC00-\uD7A3]/.test(s);

// Everything a page must have for keyboard and screen-reader users, checked in the page.
function accessibilityProblems() {
  const problems = [];
  const lang = document.documentElement.getAttribute('lang');
  if (lang !== 'ko' && lang !== 'en') problems.push(`html lang is ${lang}`);
  const h1s = document.querySelectorAll('h1').length;
  if (h1s !== 1) problems.push(`${h1s} h1 elements`);
  if (document.querySelectorAll('main').length !== 1) problems.push('not exactly one main');
  if (!document.querySelector('header') || !document.querySelector('footer')) {
    problems.push('no header or footer landmark');
  }
  const skip = document.querySelector('a.skip-link');
  if (!skip || skip.getAttribute('href') !== '#main' || !document.getElementById('main')) {
    problems.push('no skip link to #main');
  }
  if (!document.title.trim()) problems.push('empty title');
  for (const el of document.querySelectorAll('input, select, textarea')) {
    if (el.type === 'hidden' || el.type === 'submit') continue;
    const named = (el.labels && el.labels.length > 0) || el.getAttribute('aria-label') ||
      el.getAttribute('aria-labelledby');
    if (!named) problems.push(`unlabelled ${el.tagName.toLowerCase()} ${el.name}`);
  }
  for (const el of document.querySelectorAll('button, a[href]')) {
    if (!(el.textContent.trim() || el.getAttribute('aria-label'))) {
      problems.push(`${el.tagName.toLowerCase()} without text`);
    }
  }
  for (const img of document.querySelectorAll('img')) {
    if (!img.hasAttribute('alt')) problems.push(`img without alt: ${img.src}`);
  }
  const ids = new Set();
  for (const el of document.querySelectorAll('[id]')) {
    if (ids.has(el.id)) problems.push(`duplicate id ${el.id}`);
    ids.add(el.id);
  }
  // Contrast of every visible text against its first opaque background (WCAG AA, 4.5:1).
  const rgb = (c) => (c.match(/[\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => {
    const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const background = (el) => {
    for (let e = el; e; e = e.parentElement) {
      const c = rgb(getComputedStyle(e).backgroundColor);
      if (c.length >= 3 && (c.length < 4 || c[3] > 0.9)) return c;
    }
    return [255, 255, 255];
  };
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const seen = new Set();
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const el = n.parentElement;
    if (!n.textContent.trim() || !el || seen.has(el)) continue;
    seen.add(el);
    const r = el.getBoundingClientRect();
    if (r.width === 0 || r.height === 0 || el.closest('.visually-hidden, .skip-link')) continue;
    const fg = lum(rgb(getComputedStyle(el).color));
    const bg = lum(background(el));
    const ratio = (Math.max(fg, bg) + 0.05) / (Math.min(fg, bg) + 0.05);
    if (ratio < 4.5) problems.push(`contrast ${ratio.toFixed(2)} for "${n.textContent.trim().slice(0, 30)}"`);
  }
  return problems;
}

// The first Tab lands on the skip link (or, where the error summary took the focus, on its
// first link), which must then show and carry the focus style.
async function focusProblems(page) {
  const fromSummary = await page.evaluate(
    () => Boolean(document.activeElement && document.activeElement.closest('.error-summary')));
  await page.keyboard.press('Tab');
  return page.evaluate((fromSummary) => {
    const el = document.activeElement;
    const problems = [];
    const expected = fromSummary ? el && el.closest('.error-summary') && el.tagName === 'A'
      : el && el.classList.contains('skip-link');
    if (!expected) {
      problems.push(`first Tab focuses ${el ? el.outerHTML.slice(0, 60) : 'nothing'}`);
      return problems;
    }
    const s = getComputedStyle(el);
    const r = el.getBoundingClientRect();
    if (r.width === 0 || r.height === 0 || r.left < 0) problems.push('focused link stays hidden');
    const styled = (s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) > 0) ||
      s.boxShadow !== 'none' || s.backgroundColor === 'rgb(255, 221, 0)';
    if (!styled) problems.push('no visible focus style');
    return problems;
  }, fromSummary);
}

async function shot(page, name) {
  shotNo += 1;
  const file = `${String(shotNo).padStart(2, '0')}-${name}.png`;
  await page.screenshot({ path: join(shotsDir, file), fullPage: true });
  shots.push(file);
  return file;
}

async function visit(page, name) {
  const file = await shot(page, name);
  const problems = await page.evaluate(accessibilityProblems);
  problems.push(...(await focusProblems(page)));
  // Take the focus off again, so the next screenshot shows the page as it loads.
  await page.evaluate(() => document.activeElement && document.activeElement.blur());
  a11y.push({ page: file, problems });
  check(`accessible: ${file}`, problems.length === 0, problems.join('; '));
}

async function signIn(page, who, { totp } = {}) {
  await page.fill('#username', who.username);
  await page.fill('#password', who.password);
  if (totp) await page.fill('#totp', totp);
  await Promise.all([page.waitForNavigation(), page.click('form[action="/console/login"] button[type=submit]')]);
}

async function newPage(browser, locale) {
  const context = await browser.newContext({
    viewport: { width: 1280, height: 800 },
    locale,
    extraHTTPHeaders: { 'Accept-Language': locale },
  });
  context.setDefaultTimeout(15000);
  const page = await context.newPage();
  // Script errors and CSP violations (Chromium logs those as console errors); refused
  // pages' own status lines are expected.
  page.on('console', (msg) => {
    if (msg.type() === 'error' && !msg.text().startsWith('Failed to load resource')) {
      pageErrors.push(msg.text());
    }
  });
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  return { context, page };
}

async function officerFlows(browser) {
  const { officer, dispatcher } = input;
  const { context, page } = await newPage(browser, 'ko-KR');

  // Not signed in: the console sends to the sign-in page, in Korean by default.
  await page.goto(url('/console/'));
  check('anonymous is sent to sign in', pathOf(page) === '/console/login', page.url());
  check('sign-in page in Korean', (await h1(page)) === L.ko.LoginTitle &&
    (await page.getAttribute('html', 'lang')) === 'ko', await h1(page));
  await visit(page, 'login-ko');
  // What keyboard users see: the skip link, then the fields, take a visible focus.
  await page.reload();
  await page.keyboard.press('Tab');
  await shot(page, 'login-focus-skip-link');
  for (let i = 0; i < 10 && !(await page.evaluate(() => document.activeElement.id === 'username')); i += 1) {
    await page.keyboard.press('Tab');
  }
  check('keyboard reaches the username field', await page.evaluate(() => document.activeElement.id === 'username'));
  await shot(page, 'login-focus-username');
  await page.evaluate(() => document.activeElement.blur());

  // The language switch: English, then Korean again.
  await Promise.all([page.waitForNavigation(), page.click('a[hreflang="en"]')]);
  check('language switch shows English', pathOf(page) === '/console/login' &&
    (await h1(page)) === L.en.LoginTitle &&
    (await page.getAttribute('html', 'lang')) === 'en' &&
    (await page.textContent('label[for=username]')).trim() === L.en.Username, await h1(page));
  await visit(page, 'login-en');
  await Promise.all([page.waitForNavigation(), page.click('a[hreflang="ko"]')]);
  check('language switch shows Korean again', (await h1(page)) === L.ko.LoginTitle &&
    (await page.textContent('label[for=username]')).trim() === L.ko.Username, await h1(page));

  // A wrong password: the error summary, linking to the field, and no session.
  await signIn(page, { username: officer.username, password: `${officer.password}-wrong` });
  const summary = page.locator('.error-summary');
  check('wrong password shows the error summary', (await summary.count()) === 1 &&
    (await summary.textContent()).includes(L.ko.LoginRefused), pathOf(page));
  check('error summary links to a field',
    (await summary.locator('a[href="#username"]').count()) === 1 &&
    (await page.locator('#username').count()) === 1);
  check('error summary takes the focus', await page.evaluate(
    () => document.activeElement && document.activeElement.classList.contains('error-summary')));
  await visit(page, 'login-refused');
  // An empty form: one summary entry per missing field.
  await page.fill('#username', '');
  await Promise.all([page.waitForNavigation(), page.click('form[action="/console/login"] button[type=submit]')]);
  check('empty form names both fields', (await page.locator('.error-summary li').count()) === 2 &&
    (await page.locator('.error-summary a[href="#password"]').count()) === 1);
  await visit(page, 'login-empty');

  // A sign-in form without its double-submit token signs no one in.
  await page.evaluate(() => document.querySelector('form[action="/console/login"] input[name=_csrf]').remove());
  await page.fill('#username', officer.username);
  await page.fill('#password', officer.password);
  const [noToken] = await Promise.all([
    page.waitForNavigation(),
    page.click('form[action="/console/login"] button[type=submit]'),
  ]);
  check('sign-in without its CSRF token refused', noToken.status() === 400 &&
    pathOf(page) === '/console/login' &&
    (await page.textContent('.error-summary')).includes(L.ko.LoginFormRenewed), noToken.status());
  await visit(page, 'login-no-token');

  // The officer signs in and sees the officer's home.
  await signIn(page, officer);
  check('officer lands on home', pathOf(page) === '/console/' && (await h1(page)) === L.ko.HomeTitle, page.url());
  const agencyLink = page.locator(`a[href="/console/agency/${officer.agency}"]`);
  check('officer home has the agency card', (await agencyLink.count()) === 1);
  check('officer home has no dispatch or admin card',
    (await page.locator('a[href^="/console/dispatch/"], a[href^="/console/admin/"]').count()) === 0);
  await visit(page, 'officer-home');
  await Promise.all([page.waitForNavigation(), agencyLink.click()]);
  check('officer opens the agency page', pathOf(page) === `/console/agency/${officer.agency}` &&
    (await h1(page)).includes(officer.agency), page.url());
  await visit(page, 'officer-agency');

  // Another role's pages: 403.
  let resp = await page.goto(url(`/console/dispatch/${dispatcher.region}`));
  check('officer refused the dispatch page', resp.status() === 403 &&
    (await h1(page)) === L.ko.Denied403Title, `${resp.status()} ${await h1(page)}`);
  check('refused page keeps the header of who is signed in',
    (await page.locator('form[action="/console/logout"] input[name=_csrf]').count()) === 1 &&
    new URL(await page.getAttribute('a[hreflang="en"]', 'href'), base).searchParams.get('next') ===
      `/console/dispatch/${dispatcher.region}`);
  await visit(page, 'officer-dispatch-403');
  resp = await page.goto(url('/console/admin/audit'));
  check('officer refused the audit page', resp.status() === 403 &&
    (await h1(page)) === L.ko.Denied403Title, `${resp.status()} ${await h1(page)}`);
  await visit(page, 'officer-audit-403');
  resp = await page.goto(url('/console/agency/not-mine'));
  check('officer refused another agency', resp.status() === 403, resp.status());

  // A form posted without its CSRF token is refused, and does nothing.
  await page.goto(url('/console/'));
  await page.evaluate(() => document.querySelector('form[action="/console/logout"] input[name=_csrf]').remove());
  const [csrfResp] = await Promise.all([
    page.waitForNavigation(),
    page.click('form[action="/console/logout"] button[type=submit]'),
  ]);
  check('form without CSRF token refused', csrfResp.status() === 403 &&
    (await h1(page)) === L.ko.CsrfTitle, `${csrfResp.status()} ${await h1(page)}`);
  await visit(page, 'csrf-refused');
  resp = await page.goto(url('/console/'));
  check('still signed in after the refused post', resp.status() === 200 && pathOf(page) === '/console/', page.url());
  // A wrong token is refused too.
  await page.evaluate(() => { document.querySelector('form[action="/console/logout"] input[name=_csrf]').value = 'forged'; });
  const [forged] = await Promise.all([page.waitForNavigation(), page.click('form[action="/console/logout"] button[type=submit]')]);
  check('form with a forged CSRF token refused', forged.status() === 403, forged.status());

  // Sign out; the old cookie, put back, opens nothing.
  await page.goto(url('/console/'));
  const stolen = (await context.cookies()).filter((c) => c.name.startsWith('__Host-sotong-staff'));
  check('session cookie is HttpOnly, Secure, SameSite=Strict', stolen.length === 1 &&
    stolen[0].httpOnly && stolen[0].secure && stolen[0].sameSite === 'Strict', JSON.stringify(stolen.map((c) => c.name)));
  await Promise.all([page.waitForNavigation(), page.click('form[action="/console/logout"] button[type=submit]')]);
  check('sign out lands on the sign-in page', pathOf(page) === '/console/login' &&
    (await page.textContent('main')).includes(L.ko.SignedOut), page.url());
  await visit(page, 'signed-out');
  await context.addCookies(stolen);
  resp = await page.goto(url(`/console/agency/${officer.agency}`));
  check('old cookie refused after sign out', pathOf(page) === '/console/login' &&
    (await h1(page)) === L.ko.LoginTitle, page.url());
  await visit(page, 'old-cookie-to-sign-in');
  const raw = await context.request.get(url('/console/'), { maxRedirects: 0 });
  check('old cookie gets no page', raw.status() === 303 &&
    (raw.headers().location || '').startsWith('/console/login'), raw.status());
  await context.close();
}

async function dispatcherFlows(browser) {
  const { officer, dispatcher } = input;
  const { context, page } = await newPage(browser, 'en-GB');
  await page.goto(url('/console/login'));
  check('sign-in page follows Accept-Language', (await h1(page)) === L.en.LoginTitle);
  await visit(page, 'dispatcher-login-en');
  await signIn(page, dispatcher);
  check('dispatcher lands on home', pathOf(page) === '/console/' && (await h1(page)) === L.en.HomeTitle, page.url());
  const regionLink = page.locator(`a[href="/console/dispatch/${dispatcher.region}"]`);
  check('dispatcher home has the region card', (await regionLink.count()) === 1 &&
    (await page.locator('a[href^="/console/agency/"], a[href^="/console/admin/"]').count()) === 0);
  await visit(page, 'dispatcher-home-en');
  await Promise.all([page.waitForNavigation(), regionLink.click()]);
  check('dispatcher opens the region page', pathOf(page) === `/console/dispatch/${dispatcher.region}`);
  await visit(page, 'dispatcher-region-en');
  const resp = await page.goto(url(`/console/agency/${officer.agency}`));
  check('dispatcher refused the agency page', resp.status() === 403 && (await h1(page)) === L.en.Denied403Title,
    resp.status());
  await visit(page, 'dispatcher-agency-403-en');
  await context.close();
}

async function adminFlows(browser) {
  const { admin, officer, dispatcher } = input;
  const { context, page } = await newPage(browser, 'ko-KR');
  // Signing in from a deep link comes back to it.
  await page.goto(url('/console/admin/staff'));
  check('deep link asks to sign in', pathOf(page) === '/console/login' &&
    new URL(page.url()).searchParams.get('next') === '/console/admin/staff', page.url());
  await visit(page, 'admin-login-deep-link');
  await signIn(page, admin);
  check('admin comes back to the deep link', pathOf(page) === '/console/admin/staff', page.url());
  await page.goto(url('/console/'));
  check('admin home has the audit and staff cards', (await h1(page)) === L.ko.HomeTitle &&
    (await page.locator('a[href="/console/admin/audit"]').count()) === 1 &&
    (await page.locator('a[href="/console/admin/staff"]').count()) === 1);
  await visit(page, 'admin-home');

  await Promise.all([page.waitForNavigation(), page.click('a[href="/console/admin/audit"]')]);
  check('audit page opens', pathOf(page) === '/console/admin/audit' && (await h1(page)) === L.ko.AuditTitle);
  const rows = await page.$$eval('table.audit tbody tr', (trs) => trs.map((tr) => ({
    actor: tr.querySelector('[data-col=actor]')?.textContent.trim(),
    action: tr.querySelector('[data-col=action]')?.textContent.trim(),
  })));
  const has = (actor, action) => rows.some((r) => r.actor === actor && r.action === action);
  check('audit lists the officer sign-in', has(officer.username, 'login'), JSON.stringify(rows.slice(0, 5)));
  check('audit lists the dispatcher sign-in', has(dispatcher.username, 'login'));
  check('audit lists the admin sign-in', has(admin.username, 'login'));
  check('audit lists the failed sign-in', rows.some((r) => r.action === 'login_failed'));
  check('audit lists the refused pages', has(officer.username, 'access_denied'));
  await visit(page, 'admin-audit');

  // Filter by actor with the GET form.
  await page.fill('#actor', officer.username);
  await Promise.all([page.waitForNavigation(), page.click('form.filters button[type=submit]')]);
  const actors = await page.$$eval('table.audit tbody tr [data-col=actor]', (tds) => tds.map((td) => td.textContent.trim()));
  check('audit filter by actor', actors.length > 0 && actors.every((a) => a === officer.username) &&
    new URL(page.url()).searchParams.get('actor') === officer.username, JSON.stringify(actors));
  await visit(page, 'admin-audit-filtered');
  const csvHref = await page.getAttribute('a[data-csv]', 'href');
  const csv = await context.request.get(url(csvHref));
  const csvText = await csv.text();
  check('audit CSV downloads', csv.status() === 200 && (csv.headers()['content-type'] || '').startsWith('text/csv') &&
    csvText.split('\n')[0].includes('action') && csvText.includes(officer.username), `${csv.status()} ${csvHref}`);

  // The same page in English, then Korean again.
  await Promise.all([page.waitForNavigation(), page.click('a[hreflang="en"]')]);
  check('audit page in English keeps the filter', (await h1(page)) === L.en.AuditTitle &&
    new URL(page.url()).searchParams.get('actor') === officer.username);
  await page.goto(url('/console/admin/audit'));
  await visit(page, 'admin-audit-en');
  await Promise.all([page.waitForNavigation(), page.click('a[hreflang="ko"]')]);
  check('audit page back in Korean', (await h1(page)) === L.ko.AuditTitle);

  await page.goto(url('/console/admin/staff'));
  const staffText = await page.textContent('main');
  check('staff page lists the members', (await h1(page)) === L.ko.StaffTitle &&
    [admin, officer, dispatcher].every((m) => staffText.includes(m.username)));
  await visit(page, 'admin-staff');

  // Viewing the audit log is itself audited.
  await page.goto(url(`/console/admin/audit?action=audit_view`));
  const views = await page.$$eval('table.audit tbody tr [data-col=action]', (tds) => tds.map((td) => td.textContent.trim()));
  check('viewing the audit log is audited', views.length >= 2 && views.every((a) => a === 'audit_view'), views.length);
  await visit(page, 'admin-audit-views');

  const resp = await page.goto(url('/console/no-such-page'));
  check('unknown console page is a 404 page', resp.status() === 404 && (await h1(page)) === L.ko.Denied404Title,
    resp.status());
  await visit(page, 'not-found');
  await context.close();
}

let error;
const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  headless: true,
  // Playwright gives every launch a fresh temporary profile (user-data dir) and deletes it.
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
try {
  await officerFlows(browser);
  await dispatcherFlows(browser);
  await adminFlows(browser);
} catch (e) {
  error = String(e && e.stack ? e.stack : e);
} finally {
  await browser.close();
}
check('no script errors or CSP violations', pageErrors.length === 0, pageErrors.join('; '));
const ok = !error && checks.length > 0 && checks.every((c) => c.ok);
process.stdout.write(`${JSON.stringify({ ok, checks, shots, a11y, error })}\n`);
process.exit(ok ? 0 : 1);
