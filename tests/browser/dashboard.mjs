// The engine's dashboard driven in a real Chromium: run by crates/engine-bin/tests/dashboard.rs
// against an engine it started with a token and a deployed model (and its streams).
//
// Env: ENGINE_URL, ENGINE_TOKEN, ARTIFACTS (screenshots), CHROMIUM (the browser),
// SLOW_MODEL (tests/models/slow-progress/model.py), BROKEN_MODEL (tests/models/init_fails.py).
// Exits 0 when every step passed and the page logged no error or warning of its own.
import http from 'node:http';
import fs from 'node:fs/promises';
import path from 'node:path';
import { chromium } from 'playwright-core';

function need(name) {
  const v = process.env[name];
  if (!v) {
    console.error(`dashboard.mjs: ${name} is not set (crates/engine-bin/tests/dashboard.rs sets it)`);
    process.exit(2);
  }
  return v;
}

const ENGINE = need('ENGINE_URL').replace(/\/$/, '');
const TOKEN = need('ENGINE_TOKEN');
const ARTIFACTS = need('ARTIFACTS');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const SLOW_MODEL = await fs.readFile(need('SLOW_MODEL'), 'utf8');
const BROKEN_MODEL = await fs.readFile(need('BROKEN_MODEL'), 'utf8');
const WAIT = 20000;

const t0 = Date.now();
function step(text) {
  console.log(`[${((Date.now() - t0) / 1000).toFixed(1).padStart(5)} s] ${text}`);
}

function check(ok, what) {
  if (!ok) throw new Error(`check failed: ${what}`);
}

// ---- The engine's API, from node -----------------------------------------------------

async function api(method, route, body) {
  const headers = { Authorization: `Bearer ${TOKEN}` };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(ENGINE + route, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {
    // not JSON
  }
  return { status: res.status, json, text };
}

async function apiOk(method, route, body) {
  const r = await api(method, route, body);
  if (r.status >= 300) throw new Error(`${method} ${route}: ${r.status} ${r.text}`);
  return r.json;
}

function records(n, sleep) {
  return Array.from({ length: n }, (_, i) => `${JSON.stringify({ n: i + 1, sleep })}\n`).join('');
}

async function submitJob(name, source, inputs) {
  const job = await apiOk('POST', '/api/jobs', {
    name,
    jobType: 'MODEL_BATCH_JOB',
    model: {
      storedModel: {
        modelAssets: [
          { name: 'model.py', assetType: 'SOURCE_CODE', assetRole: 'MODEL_SOURCE', primaryModelSource: true, sourceCode: source },
        ],
      },
    },
    inputData: [{ assetType: 'FILE', name: 'in.jsonl', fileContentString: inputs }],
    outputData: [{ assetType: 'FILE', name: 'out.jsonl' }],
  });
  return job.id;
}

async function waitApi(what, probe, timeout = WAIT) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const v = await probe();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

// Scoring requests for `ms`, four at a time, over the roundtrip route and the REST stream;
// one transaction in 25 has a negative amount, which the model refuses.
async function driveLoad(ms) {
  const until = Date.now() + ms;
  let next = 0;
  const seen = { sent: 0, ok: 0, refused: 0 };
  async function client() {
    while (Date.now() < until) {
      next += 1;
      const id = next;
      const amount = id % 25 === 0 ? -5 : (id * 37) % 1000;
      const route = id % 4 === 0 ? '/1/job/input/0' : '/api/roundtrip/0/1';
      const res = await fetch(ENGINE + route, {
        method: 'POST',
        headers: { Authorization: `Bearer ${TOKEN}`, 'Content-Type': 'application/json' },
        body: JSON.stringify({ id, amount }),
      });
      await res.arrayBuffer();
      seen.sent += 1;
      if (res.ok) seen.ok += 1;
      else seen.refused += 1;
    }
  }
  await Promise.all([client(), client(), client(), client()]);
  return seen;
}

// ---- A path prefix: the engine under /engine/, as a reverse proxy mounts it -----------

function startProxy() {
  const target = new URL(ENGINE);
  const stray = [];
  const server = http.createServer((req, res) => {
    if (!req.url.startsWith('/engine/')) {
      stray.push(req.url);
      res.writeHead(404, { 'Content-Type': 'text/plain' });
      res.end('outside /engine/');
      return;
    }
    const upstream = http.request(
      {
        host: target.hostname,
        port: target.port,
        method: req.method,
        path: req.url.slice('/engine'.length),
        headers: { ...req.headers, host: target.host, 'x-forwarded-prefix': '/engine' },
      },
      (up) => {
        res.writeHead(up.statusCode, up.headers);
        up.pipe(res);
      },
    );
    upstream.on('error', (e) => {
      if (!res.headersSent) res.writeHead(502);
      res.end(String(e));
    });
    res.on('close', () => upstream.destroy());
    req.pipe(upstream);
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => resolve({ server, stray, url: `http://127.0.0.1:${server.address().port}/engine/` }));
  });
}

// ---- The browser -----------------------------------------------------------------------

const problems = [];
const signedOut = new WeakSet();

function watch(page, label) {
  page.on('console', (m) => {
    const type = m.type();
    if (type !== 'error' && type !== 'warning') return;
    const where = m.location().url || '';
    // A signed-out page asks api/engine once to learn whether the engine wants a token;
    // the browser itself logs that 401. Nothing else may be logged.
    if (signedOut.has(page) && /status of 401/.test(m.text()) && where.endsWith('api/engine')) return;
    problems.push(`${label}: console ${type}: ${m.text()} ${where}`);
  });
  page.on('pageerror', (e) => problems.push(`${label}: page error: ${e.stack || e.message}`));
  page.on('requestfailed', (r) => {
    // The live stream is cut when a page closes or signs out; anything else is a problem.
    if (!r.url().endsWith('api/live')) problems.push(`${label}: request failed: ${r.url()} ${r.failure()?.errorText}`);
  });
}

async function shot(page, name, options = {}) {
  await page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`), ...options });
}

const testId = (page, id) => page.getByTestId(id);
const jobRow = (page, id) => page.locator(`tr[data-job-id="${id}"]`);

async function signIn(page) {
  await testId(page, 'login').waitFor();
  await testId(page, 'login-token').fill(TOKEN);
  await testId(page, 'login-submit').click();
  await testId(page, 'dashboard').waitFor();
  signedOut.delete(page);
}

async function waitAttr(locator, name, predicate, what) {
  await locator.waitFor();
  const deadline = Date.now() + WAIT;
  for (;;) {
    const v = await locator.getAttribute(name);
    if (predicate(v)) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what} (${name}=${v})`);
    await new Promise((r) => setTimeout(r, 150));
  }
}

const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'] });
let page;
let exitCode = 0;
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  context.setDefaultTimeout(WAIT);
  page = await context.newPage();
  watch(page, 'page');
  signedOut.add(page);

  step('the page asks for the token');
  await page.goto(`${ENGINE}/`);
  await testId(page, 'login').waitFor();
  check(await testId(page, 'dashboard').isHidden(), 'no dashboard before signing in');
  await shot(page, '01-login');

  step('signed in: the engine and its deployed model');
  await signIn(page);
  check(
    (await page.evaluate(() => Object.values(sessionStorage))).includes(TOKEN) &&
      (await page.evaluate(() => localStorage.length)) === 0 &&
      !page.url().includes(TOKEN),
    'the token is kept in sessionStorage only',
  );
  const details = await apiOk('GET', '/api/engine');
  await page.getByTestId('engine-name').getByText(details.name, { exact: true }).waitFor();
  await page.getByTestId('model-name').getByText(details.deployedModel.name, { exact: true }).waitFor();
  await page.getByTestId('model-schemas').getByText(/transaction/).waitFor();
  await page.locator('[data-testid="stream-row"][data-slot="0"]').waitFor();
  // The model has no requirements.txt: it runs on the platform's libraries.
  check(details.deployedModel.libraries.length === 0, 'no environment of its own');
  const platform = details.platforms.find((p) => p.language === details.deployedModel.language);
  check(platform && platform.libraries.length > 0, 'the engine lists its Python libraries');
  await testId(page, 'model-libraries').locator('summary').click();
  for (const library of [platform.libraries[0], platform.libraries[platform.libraries.length - 1]]) {
    await testId(page, 'library-list').getByText(library, { exact: true }).waitFor();
  }
  check(
    (await testId(page, 'model-library-count').textContent()) ===
      new Intl.NumberFormat('en-US').format(platform.libraries.length),
    'every library is listed',
  );
  await shot(page, '02-model');
  await testId(page, 'model-libraries').locator('summary').click();

  step('a job runs to its end: progress bar at 100%, COMPLETE');
  const quick = await submitJob('quick-batch', SLOW_MODEL, records(40, 0.05));
  const quickRow = jobRow(page, quick);
  await quickRow.waitFor();
  await quickRow.click();
  await waitAttr(quickRow, 'data-status', (v) => v === 'COMPLETE', 'the quick job COMPLETE on the page');
  await waitAttr(quickRow.getByTestId('job-progress'), 'data-fraction', (v) => v === '1', 'its bar at 100%');
  await quickRow.getByText('100%', { exact: true }).waitFor();
  await waitAttr(testId(page, 'job-detail-progress'), 'data-fraction', (v) => v === '1', 'the detail bar at 100%');
  await testId(page, 'job-detail-status').getByText('COMPLETE').waitFor();
  await testId(page, 'job-output').first().waitFor();
  check((await apiOk('GET', `/api/jobs/${quick}`)).jobStatus === 'COMPLETE', 'the API says COMPLETE too');
  check((await testId(page, 'job-log').locator('[data-testid="log-line"]').count()) > 0, 'the job log is shown');
  await shot(page, '03-job-complete');

  step('a slow job runs while the deployed model is under load');
  // Five batches of ten records (ENGINE_JOB_BATCH_SIZE), four seconds each: read ahead at
  // once, scored in steps, still running when it is cancelled below.
  const slow = await submitJob('nightly-rescore', SLOW_MODEL, records(50, 0.4));
  const slowRow = jobRow(page, slow);
  await waitAttr(slowRow, 'data-status', (v) => v === 'RUNNING', 'the slow job RUNNING');
  await slowRow.click();
  await testId(page, 'job-cancel').waitFor();
  const loadStarted = Date.now();
  const load = driveLoad(8000);
  await waitAttr(
    testId(page, 'chart-throughput'),
    'data-last',
    (v) => Number(v) > 0,
    'the throughput chart above zero',
  );
  await waitAttr(testId(page, 'chart-latency'), 'data-last', (v) => v !== '' && Number(v) >= 0, 'a latency');
  // Lines of the running job arrive while it runs.
  await testId(page, 'job-log').locator('[data-testid="log-line"]').first().waitFor();
  await waitAttr(slowRow.getByTestId('job-progress'), 'data-fraction', (v) => Number(v) > 0, 'the slow job under way');
  // The picture for docs/observability.md: some seconds of load on the charts.
  await page.waitForTimeout(Math.max(500, 6500 - (Date.now() - loadStarted)));
  await shot(page, 'dashboard', { fullPage: true });
  const sent = await load;
  check(sent.ok > 0, `scoring answered (${JSON.stringify(sent)})`);
  step(`load: ${JSON.stringify(sent)}`);

  step('cancelled from the page');
  check((await apiOk('GET', `/api/jobs/${slow}?messages=false`)).jobStatus === 'RUNNING', 'still running');
  await testId(page, 'job-cancel').click();
  await waitAttr(slowRow, 'data-status', (v) => v === 'CANCELLED', 'the slow job CANCELLED');
  await testId(page, 'job-detail-status').getByText('CANCELLED').waitFor();
  check((await apiOk('GET', `/api/jobs/${slow}?messages=false`)).jobStatus === 'CANCELLED', 'the API says CANCELLED');
  await shot(page, '04-cancelled');

  step("a job whose model fails: its reason and traceback");
  const broken = await submitJob('broken-model', BROKEN_MODEL, records(3, 0));
  const brokenRow = jobRow(page, broken);
  await waitAttr(brokenRow, 'data-status', (v) => v === 'ERROR', 'the broken job ERROR');
  await brokenRow.click();
  await testId(page, 'job-traceback').getByText(/RuntimeError: cannot load weights/).waitFor();
  await testId(page, 'job-traceback').getByText(/Traceback \(most recent call last\)/).waitFor();
  await testId(page, 'job-detail-reason').getByText(/cannot load weights/).waitFor();
  await shot(page, '05-traceback');

  step('re-run from the page');
  await quickRow.click();
  await testId(page, 'job-rerun').waitFor();
  await testId(page, 'job-rerun').click();
  await waitApi('the re-run to end', async () => {
    const j = await apiOk('GET', `/api/jobs/${quick}?messages=false`);
    return j.runs === 2 && j.jobStatus === 'COMPLETE';
  });
  await testId(page, 'job-detail-runs').getByText(/^2/).waitFor();
  await waitAttr(quickRow, 'data-status', (v) => v === 'COMPLETE', 'the re-run COMPLETE on the page');
  await shot(page, '06-rerun');

  step('tags changed from the page');
  await testId(page, 'tags-edit').click();
  await testId(page, 'tags-input').fill('UAT, cc-fraud, eu-west');
  await testId(page, 'tags-save').click();
  await testId(page, 'engine-tags').getByText('eu-west', { exact: true }).waitFor();
  const tags = (await apiOk('GET', '/api/engine/tags')).tags;
  check(['UAT', 'cc-fraud', 'eu-west'].every((t) => tags.includes(t)) && !tags.includes('DEV'), `tags ${tags}`);

  step('behind a path prefix (/engine/)');
  const proxy = await startProxy();
  try {
    const prefixed = await context.newPage();
    watch(prefixed, 'prefixed page');
    signedOut.add(prefixed);
    await prefixed.goto(proxy.url);
    await signIn(prefixed);
    await prefixed.getByTestId('model-name').getByText(details.deployedModel.name, { exact: true }).waitFor();
    await waitAttr(prefixed.getByTestId('live-status'), 'data-live', (v) => v === 'on', 'live data through the proxy');
    await jobRow(prefixed, quick).waitFor();
    await shot(prefixed, '07-prefix');
    await prefixed.close();
    check(proxy.stray.length === 0, `requests outside the prefix: ${proxy.stray.join(', ')}`);
  } finally {
    proxy.server.closeAllConnections();
    proxy.server.close();
  }

  step('undeployed from the page');
  await testId(page, 'undeploy').click();
  await testId(page, 'confirm-dialog').waitFor();
  await testId(page, 'confirm-ok').click();
  await testId(page, 'model-none').waitFor();
  check((await api('GET', '/api/deployment')).status === 404, 'the API has no deployment');
  await shot(page, '08-undeployed');

  step('a deployment that cannot start: its reason and traceback');
  const refused = await api('PUT', '/api/deployment', {
    name: 'broken-deployment',
    deployableModel: {
      storedModel: { modelAssets: [{ name: 'model.py', assetType: 'SOURCE_CODE', sourceCode: BROKEN_MODEL }] },
    },
  });
  check(refused.status === 400, `the broken deployment is refused (${refused.status})`);
  await testId(page, 'deployment-failure-traceback').getByText(/RuntimeError: cannot load weights/).waitFor();
  await testId(page, 'deployment-log').getByText(/cannot load weights/).first().waitFor();
  await testId(page, 'engine-state').getByText('ERROR').waitFor();
  await shot(page, '09-deployment-failed');

  step('log out');
  await testId(page, 'logout').click();
  await testId(page, 'login').waitFor();
  check((await page.evaluate(() => sessionStorage.length)) === 0, 'the token is gone');

  await context.close();
  if (problems.length) throw new Error(`the page logged problems:\n  ${problems.join('\n  ')}`);
  step('all steps passed');
} catch (err) {
  exitCode = 1;
  console.error(`FAILED: ${err.stack || err}`);
  if (problems.length) console.error(`console problems:\n  ${problems.join('\n  ')}`);
  if (page && !page.isClosed()) {
    await shot(page, 'failure', { fullPage: true }).catch(() => {});
  }
} finally {
  await browser.close();
}
process.exit(exitCode);
