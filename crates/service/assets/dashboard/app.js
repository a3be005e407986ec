// The engine's dashboard. Plain JavaScript, no dependencies: every URL is relative, so the
// page works wherever a proxy mounts the engine (https://host/engine/ as well as /).
//
// Data comes from one live stream (api/live, Server-Sent Events read with fetch, since
// EventSource cannot send the Authorization header) and from single requests when
// something changes. The only timer that asks the engine again is the open job's log while
// that job runs. Updates write text only where it changed. A module: its names stay its own.

const TOKEN_KEY = 'engine.token';
const WINDOW_MS = 15 * 60 * 1000;
const MAX_SAMPLES = 900;
const LOG_POLL_MS = 1500;
const LOG_MAX_LINES = 2000;
const JOB_LIST_LIMIT = 50;
const FINAL = new Set(['COMPLETE', 'ERROR', 'CANCELLED']);
const STAGES = new Set(['DEV', 'SIT', 'UAT', 'PROD']);

const $ = (id) => document.querySelector(`[data-testid="${id}"]`);

// DOM helpers

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null) continue;
    if (k === 'class') el.className = v;
    else el.setAttribute(k, v);
  }
  for (const c of children) {
    if (c != null) el.append(c);
  }
  return el;
}

function setText(el, value) {
  const t = value == null ? '' : String(value);
  if (el.textContent !== t) el.textContent = t;
}

function setAttr(el, name, value) {
  const v = value == null ? '' : String(value);
  if (el.getAttribute(name) !== v) el.setAttribute(name, v);
}

// A cell of a table row, by its data-field.
function field(row, name) {
  return row.querySelector(`[data-field="${name}"]`);
}

function show(el, on) {
  if (el.hidden === Boolean(on)) el.hidden = !on;
}

function badge(el, text) {
  setText(el, text);
  setAttr(el, 'data-state', text);
}

// Formatting

const intFormat = new Intl.NumberFormat('en-US');

function fmtInt(n) {
  return n == null ? '–' : intFormat.format(n);
}

function fmtRate(x) {
  if (x == null || !Number.isFinite(x)) return '–';
  if (x >= 100) return intFormat.format(Math.round(x));
  if (x >= 10) return x.toFixed(1);
  return x === 0 ? '0' : x.toFixed(2);
}

function fmtBytes(n) {
  if (n == null) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return `${v >= 100 || i === 0 ? Math.round(v) : v.toFixed(1)} ${units[i]}`;
}

function fmtPercent(p) {
  if (p == null || !Number.isFinite(p)) return '–';
  return `${p < 10 ? p.toFixed(1) : Math.round(p)} %`;
}

function fmtDuration(ms) {
  if (ms == null || !Number.isFinite(ms)) return '–';
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return s % 60 ? `${m} min ${pad2(s % 60)} s` : `${m} min`;
  const hours = Math.floor(m / 60);
  if (hours < 48) return `${hours} h ${pad2(m % 60)} min`;
  return `${Math.floor(hours / 24)} d ${hours % 24} h`;
}

function pad2(n) {
  return String(n).padStart(2, '0');
}

function fmtClock(when) {
  const d = new Date(when);
  if (Number.isNaN(d.getTime())) return String(when ?? '');
  return `${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`;
}

function fmtDateTime(when) {
  const d = new Date(when);
  if (Number.isNaN(d.getTime())) return String(when ?? '–');
  return `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())} ${fmtClock(d)}`;
}

function fmtAxis(v) {
  if (v >= 1e6) return `${+(v / 1e6).toFixed(1)}M`;
  if (v >= 1e3) return `${+(v / 1e3).toFixed(1)}k`;
  return `${+v.toFixed(v < 10 ? 2 : 0)}`;
}

// The engine's API

const state = {
  token: sessionStorage.getItem(TOKEN_KEY),
  details: null,
  deploymentId: undefined,
  failureAt: null,
  samples: [],
  jobs: new Map(),
  jobOrder: [],
  activeKey: null,
  countsKey: null,
  selected: null,
  logLines: 0,
  logTimer: 0,
  logBusy: false,
  logAgain: false,
  resultKey: null,
  live: null,
  liveRetry: 0,
  streamRates: new Map(),
  refreshing: false,
  jobsTimer: 0,
  toastTimer: 0,
};

class AuthError extends Error {}

async function errorText(res) {
  const text = await res.text().catch(() => '');
  try {
    const v = JSON.parse(text);
    if (v && typeof v.error === 'string') return v.error;
  } catch {
    // not JSON: the text itself
  }
  return text.trim() || `${res.status} ${res.statusText}`;
}

function authHeaders(extra) {
  const headers = { ...extra };
  if (state.token) headers.Authorization = `Bearer ${state.token}`;
  return headers;
}

async function api(path, options = {}) {
  const headers = authHeaders({ Accept: 'application/json' });
  let body;
  if (options.json !== undefined) {
    headers['Content-Type'] = 'application/json';
    body = JSON.stringify(options.json);
  }
  const res = await fetch(path, { method: options.method || 'GET', headers, body, cache: 'no-store' });
  if (res.status === 401) throw new AuthError(await errorText(res));
  if (!res.ok) throw new Error(await errorText(res));
  if (res.status === 204) return null;
  const type = res.headers.get('content-type') || '';
  return type.includes('json') ? res.json() : res.text();
}

function failed(err) {
  if (err instanceof AuthError) {
    logout('Your session ended: the engine did not accept the token. Sign in again.');
  } else {
    toast(err.message || String(err), true);
  }
}

function toast(text, bad) {
  const el = $('toast');
  setText(el, text);
  el.classList.toggle('bad', Boolean(bad));
  show(el, true);
  clearTimeout(state.toastTimer);
  state.toastTimer = setTimeout(() => show(el, false), bad ? 8000 : 4000);
}

// Login

function showLogin(message) {
  stopLive();
  stopLogPolling();
  document.body.classList.add('logged-out');
  show($('dashboard'), false);
  show($('logout'), false);
  show($('login'), true);
  const err = $('login-error');
  setText(err, message || '');
  show(err, Boolean(message));
  $('login-token').focus();
}

async function login(event) {
  event.preventDefault();
  const input = $('login-token');
  const token = input.value.trim();
  if (!token) return;
  state.token = token;
  const button = $('login-submit');
  button.disabled = true;
  try {
    const details = await api('api/engine');
    sessionStorage.setItem(TOKEN_KEY, token);
    input.value = '';
    enter(details);
  } catch (err) {
    state.token = null;
    sessionStorage.removeItem(TOKEN_KEY);
    const why = err instanceof AuthError ? `The engine did not accept this token (${err.message}).` : err.message;
    setText($('login-error'), why);
    show($('login-error'), true);
  } finally {
    button.disabled = false;
  }
}

function logout(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  state.token = null;
  state.details = null;
  state.deploymentId = undefined;
  state.selected = null;
  state.samples = [];
  state.jobs.clear();
  state.jobOrder = [];
  state.activeKey = null;
  state.countsKey = null;
  $('jobs').replaceChildren();
  closeDetail();
  showLogin(message);
}

function enter(details) {
  document.body.classList.remove('logged-out');
  show($('login'), false);
  show($('dashboard'), true);
  show($('logout'), Boolean(state.token));
  renderDetails(details);
  loadJobs();
  startLive();
}

// Engine and deployed model

function renderTags(d) {
  const list = $('engine-tags');
  const chips = [
    ...d.stageTags.map((t) => h('span', { class: 'tag stage', 'data-testid': 'tag' }, t)),
    ...d.serviceTags.map((t) => h('span', { class: 'tag', 'data-testid': 'tag' }, t)),
  ];
  if (!chips.length) chips.push(h('span', { class: 'muted' }, 'no tags'));
  list.replaceChildren(...chips);
}

function renderDetails(d) {
  state.details = d;
  setText($('engine-name'), d.name);
  document.title = `${d.name} · engine dashboard`;
  badge($('engine-state'), d.state);
  setText($('engine-group'), d.group || '–');
  setText($('engine-release'), d.release);
  $('engine-release').title = `built on ${d.builtOn}`;
  renderTags(d);
  renderModel(d);
  renderStreams(d.streams, Date.now());
  renderCounts(d.jobs);
}

async function refreshDetails() {
  if (state.refreshing) return;
  state.refreshing = true;
  try {
    renderDetails(await api('api/engine'));
  } catch (err) {
    failed(err);
  } finally {
    state.refreshing = false;
  }
}

function renderModel(d) {
  const m = d.deployedModel;
  const failure = d.deploymentFailure;
  const changed = (m ? m.id : null) !== state.deploymentId;
  const failureChanged = (failure ? failure.at : null) !== state.failureAt;
  state.deploymentId = m ? m.id : null;
  state.failureAt = failure ? failure.at : null;
  show($('model'), Boolean(m));
  show($('undeploy'), Boolean(m));
  show($('model-none'), !m);
  show($('deployment-failure'), Boolean(failure));
  if (failure) {
    setText($('deployment-failure-reason'), `${failure.name}: ${failure.reason} (${fmtDateTime(failure.at)})`);
    setText($('deployment-failure-traceback'), failure.traceback || '');
    show($('deployment-failure-traceback'), Boolean(failure.traceback));
  }
  if (m) {
    setText($('model-name'), m.name);
    setText($('model-source'), `${m.source} (${m.language})`);
    const encodings = Object.entries(m.encodings || {})
      .filter(([, e]) => e !== 'json')
      .map(([slot, e]) => `${slot}: ${e}`);
    setText(
      $('model-slots'),
      `in ${m.inputSlots.join(', ')} → out ${m.outputSlots.join(', ')}` +
        (encodings.length ? ` · ${encodings.join(', ')}` : ''),
    );
    const schemas = Object.entries(m.schemas || {}).map(([slot, name]) => `${slot}: ${name}`);
    setText($('model-schemas'), schemas.length ? schemas.join(' · ') : 'none');
    const limits = [];
    if (m.recordTimeoutMs) limits.push(`record limit ${fmtDuration(m.recordTimeoutMs)}`);
    if (m.memoryLimitMib) limits.push(`memory limit ${m.memoryLimitMib} MiB`);
    setText($('model-workers'), [String(m.workers), ...limits].join(' · '));
    setText($('model-since'), fmtDateTime(m.since));
    updateModelLive(m);
    if (changed) renderLibraries(d.platforms, m);
  }
  if (changed || failureChanged) {
    if (m || failure) loadDeploymentLog();
    else $('deployment-log').replaceChildren();
  }
}

function updateModelLive(m) {
  badge($('model-worker-state'), m.workerState);
  setText($('model-scored'), fmtInt(m.recordsScored));
  setText($('model-failed'), fmtInt(m.recordsFailed));
  setText($('model-queue'), `${fmtInt(m.queued)} waiting of ${fmtInt(m.queueBound)}`);
  let problem = m.workerProblem;
  if (!problem && m.lastProblem) problem = `${m.lastProblem} (${fmtDateTime(m.lastProblemAt)})`;
  if (m.workerRestarts) problem = `${problem || 'none now'} · ${fmtInt(m.workerRestarts)} restarts`;
  setText($('model-problem'), problem || '–');
}

// The model's libraries: those of its own environment (built from its requirements.txt),
// else the platform's of its language.
function renderLibraries(platforms, m) {
  const p = (platforms || []).find((x) => x.language === m.language);
  const own = m.libraries && m.libraries.length ? m.libraries : null;
  const libs = own || (p ? p.libraries : []);
  const name = m.language ? m.language[0].toUpperCase() + m.language.slice(1) : '';
  const platform = p ? `${name} ${p.version}` : name;
  setText($('model-platform'), own ? `own environment (${platform})` : platform);
  $('model-platform').title = (p && p.executable) || '';
  setText($('model-library-count'), fmtInt(libs.length));
  $('library-list').replaceChildren(...libs.map((l) => h('li', { 'data-testid': 'library' }, l)));
  filterLibraries();
}

function filterLibraries() {
  const q = $('library-filter').value.trim().toLowerCase();
  for (const li of $('library-list').children) {
    show(li, !q || li.textContent.toLowerCase().includes(q));
  }
}

async function loadDeploymentLog() {
  const target = $('deployment-log');
  try {
    const v = await api('api/deployment/log');
    renderLines(target, v.lines.slice(-LOG_MAX_LINES), true);
  } catch (err) {
    if (err instanceof AuthError) failed(err);
    else target.replaceChildren(h('div', { class: 'muted' }, err.message));
  }
}

function logLine(l) {
  return h(
    'div',
    { class: 'line', 'data-testid': 'log-line' },
    h('span', { class: 'at', title: l.at }, fmtClock(l.at)),
    h('span', { class: `lvl lvl-${l.level}` }, l.level),
    ' ',
    h('span', { class: 'src' }, l.source),
    l.message,
  );
}

function renderLines(target, lines, replace) {
  const stick = target.scrollHeight - target.scrollTop - target.clientHeight < 24;
  const nodes = lines.map(logLine);
  if (replace) target.replaceChildren(...nodes);
  else target.append(...nodes);
  while (target.childElementCount > LOG_MAX_LINES) target.firstElementChild.remove();
  if (stick || replace) target.scrollTop = target.scrollHeight;
}

async function undeploy() {
  const name = state.details && state.details.deployedModel ? state.details.deployedModel.name : 'the model';
  const ok = await confirmAction(`Undeploy ${name}? Requests to it fail until a model is deployed again.`, 'Undeploy');
  if (!ok) return;
  try {
    await api('api/deployment', { method: 'DELETE' });
    toast(`${name} is undeployed.`);
    await refreshDetails();
  } catch (err) {
    failed(err);
  }
}

function confirmAction(text, okLabel) {
  return new Promise((resolve) => {
    const dialog = $('confirm-dialog');
    setText($('confirm-text'), text);
    setText($('confirm-ok'), okLabel);
    dialog.returnValue = '';
    dialog.addEventListener('close', () => resolve(dialog.returnValue === 'ok'), { once: true });
    dialog.showModal();
  });
}

// Tags

function editTags(on) {
  show($('tags-form'), on);
  show($('tags-edit'), !on);
  show($('engine-tags'), !on);
  if (on) {
    const input = $('tags-input');
    input.value = state.details ? state.details.tags.join(', ') : '';
    input.focus();
  }
}

async function saveTags(event) {
  event.preventDefault();
  const tags = $('tags-input')
    .value.split(',')
    .map((t) => t.trim())
    .filter(Boolean);
  try {
    const v = await api('api/engine/tags', { method: 'PUT', json: { tags } });
    if (state.details) {
      state.details.tags = v.tags;
      state.details.stageTags = v.tags.filter((t) => STAGES.has(t));
      state.details.serviceTags = v.tags.filter((t) => !STAGES.has(t));
      renderTags(state.details);
    }
    editTags(false);
    toast('Tags saved.');
  } catch (err) {
    failed(err);
  }
}

// Live stream

function startLive() {
  stopLive();
  const controller = new AbortController();
  state.live = controller;
  readLive(controller);
}

function stopLive() {
  if (state.live) state.live.abort();
  state.live = null;
  setAttr($('live-status'), 'data-live', 'off');
}

async function readLive(controller) {
  const { signal } = controller;
  try {
    const res = await fetch('api/live', {
      headers: authHeaders({ Accept: 'text/event-stream' }),
      cache: 'no-store',
      signal,
    });
    if (res.status === 401) throw new AuthError(await errorText(res));
    if (!res.ok || !res.body) throw new Error(await errorText(res));
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value.replace(/\r\n?/g, '\n');
      let end;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const frame = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        onFrame(frame);
      }
    }
  } catch (err) {
    if (signal.aborted) return;
    if (err instanceof AuthError) {
      failed(err);
      return;
    }
  }
  if (signal.aborted || state.live !== controller) return;
  // The stream ended (the engine restarted, a proxy timed out): again, waiting longer
  // each time it fails at once.
  setAttr($('live-status'), 'data-live', 'retrying');
  const wait = Math.min(30000, 1000 * 2 ** state.liveRetry);
  state.liveRetry = Math.min(state.liveRetry + 1, 5);
  setTimeout(() => {
    if (state.live === controller) readLive(controller);
  }, wait);
}

function onFrame(frame) {
  let event = 'message';
  const data = [];
  for (const line of frame.split('\n')) {
    if (!line || line.startsWith(':')) continue;
    const colon = line.indexOf(':');
    const name = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (name === 'event') event = value;
    else if (name === 'data') data.push(value);
  }
  if (!data.length) return;
  let payload;
  try {
    payload = JSON.parse(data.join('\n'));
  } catch {
    return;
  }
  state.liveRetry = 0;
  setAttr($('live-status'), 'data-live', 'on');
  try {
    if (event === 'history') onHistory(payload);
    else if (event === 'live') onLive(payload);
  } catch (err) {
    // A bug of the page's own: said, and the stream goes on.
    console.error('dashboard: the live event could not be shown:', err);
  }
}

function onHistory(h) {
  state.samples = (h.samples || []).slice(-MAX_SAMPLES);
  drawCharts();
}

function onLive(ev) {
  let changed = false;
  if (ev.engine) {
    // A new state may come with what the event does not carry (a deployment that failed).
    changed = state.details && ev.engine.state !== state.details.state;
    if (changed) state.details.state = ev.engine.state;
    badge($('engine-state'), ev.engine.state);
    setText($('engine-uptime'), fmtDuration(ev.engine.uptimeSeconds * 1000));
  }
  if (ev.sample) {
    const last = state.samples[state.samples.length - 1];
    if (!last || ev.sample.at > last.at) state.samples.push(ev.sample);
    if (state.samples.length > MAX_SAMPLES) state.samples.splice(0, state.samples.length - MAX_SAMPLES);
    drawCharts();
  }
  if (ev.resources) renderResources(ev.resources);
  const id = ev.deployment ? ev.deployment.id : null;
  if (changed || (state.deploymentId !== undefined && id !== state.deploymentId)) refreshDetails();
  else if (ev.deployment) updateModelLive(ev.deployment);
  if (ev.streams) renderStreams(ev.streams, Date.parse(ev.at) || Date.now());
  if (ev.jobs) onJobs(ev.jobs);
}

// Resources and streams

// The rows of `body` that carry `attr`, kept in step with `items` by key: made when new,
// removed when gone. Returns [row, item] pairs.
function keyedRows(body, attr, items, keyOf, make) {
  const seen = new Set();
  const pairs = (items || []).map((item) => {
    const key = String(keyOf(item));
    seen.add(key);
    let row = body.querySelector(`tr[${attr}="${CSS.escape(key)}"]`);
    if (!row) body.append((row = make(key)));
    return [row, item];
  });
  for (const row of [...body.querySelectorAll(`tr[${attr}]`)]) {
    if (!seen.has(row.getAttribute(attr))) row.remove();
  }
  return pairs;
}

function renderResources(r) {
  const engineRow = $('resource-engine');
  if (r.engine) {
    setText(field(engineRow, 'cpu'), fmtPercent(r.engine.cpuPercent));
    setText(field(engineRow, 'mem'), fmtBytes(r.engine.residentBytes));
  }
  const make = (pid) =>
    h(
      'tr',
      { 'data-testid': 'resource-worker', 'data-pid': pid },
      h('td', {}, h('span', { 'data-field': 'name' }), ' ', h('span', { class: 'muted' }, `pid ${pid}`)),
      h('td', { class: 'num', 'data-field': 'cpu' }),
      h('td', { class: 'num', 'data-field': 'mem' }),
    );
  for (const [row, w] of keyedRows($('resources'), 'data-pid', r.workers, (w) => w.pid, make)) {
    setText(field(row, 'name'), w.command);
    setText(field(row, 'cpu'), fmtPercent(w.cpuPercent));
    setText(field(row, 'mem'), fmtBytes(w.residentBytes));
  }
}

function renderStreams(streams, at) {
  const make = (slot) =>
    h(
      'tr',
      { 'data-testid': 'stream-row', 'data-slot': slot },
      h('td', {}, slot),
      h('td', { class: 'endpoint', 'data-field': 'endpoint' }),
      h('td', {}, h('span', { class: 'badge', 'data-field': 'state' })),
      h('td', { class: 'num', 'data-field': 'rate' }, '–'),
      h('td', { class: 'num', 'data-field': 'errors' }),
    );
  const rates = new Map();
  const rows = keyedRows($('streams'), 'data-slot', streams, (s) => s.slot, make);
  for (const [row, s] of rows) {
    const endpoint = field(row, 'endpoint');
    setText(endpoint, s.endpoint);
    endpoint.title = s.endpoint;
    const stateEl = field(row, 'state');
    badge(stateEl, s.state);
    stateEl.title = s.reason || '';
    const errors = field(row, 'errors');
    setText(errors, fmtInt(s.recordsRejected + s.recordsFailed));
    errors.title = `${fmtInt(s.recordsRejected)} rejected, ${fmtInt(s.recordsFailed)} failed`;
    // Records per second from the counts of successive events.
    const key = String(s.slot);
    const prev = state.streamRates.get(key);
    if (prev && at > prev.at) {
      setText(field(row, 'rate'), fmtRate(Math.max(0, ((s.recordsIn - prev.n) * 1000) / (at - prev.at))));
    }
    rates.set(key, { at, n: s.recordsIn });
  }
  state.streamRates = rates;
  show($('streams-none'), rows.length === 0);
}

// Charts

// The top of an axis of four steps, each a round number.
function niceMax(v) {
  if (!(v > 0)) return 1;
  const step = v / 4;
  const exp = 10 ** Math.floor(Math.log10(step));
  const nice = [1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10].find((f) => f * exp >= step);
  return 4 * nice * exp;
}

// The time the charts span and the step of their labels: the last 15 minutes, or less while
// the engine has been up for less (a fresh engine's first minute is not a sliver).
const SPANS = [[60e3, 20e3], [120e3, 30e3], [300e3, 60e3], [600e3, 300e3], [WINDOW_MS, 300e3]];

function timeAxis(samples, end) {
  const have = samples.length ? end - samples[0].at : 0;
  return SPANS.find(([span]) => span >= have) || SPANS[SPANS.length - 1];
}

function fmtAgo(ms) {
  return ms < 120e3 ? `${Math.round(ms / 1000)} s` : `${Math.round(ms / 60e3)} min`;
}

class Chart {
  // series: [{label, color, value(sample), format, axis: 'left'|'right', dash}]
  constructor(root, series, leftFormat, rightFormat) {
    this.root = root;
    this.canvas = root.querySelector('canvas');
    this.series = series;
    this.leftFormat = leftFormat;
    this.rightFormat = rightFormat;
    this.spanLabel = root.querySelector('.card-head .muted');
    this.values = series.map((s) => {
      const value = h('span', { class: 'value' }, '–');
      root.querySelector('.legend').append(
        h('span', { class: 'item' }, h('span', { class: 'swatch', style: `background:${s.color}` }), s.label, value),
      );
      return value;
    });
  }

  update(samples) {
    const last = samples[samples.length - 1];
    this.series.forEach((s, i) => setText(this.values[i], last ? s.format(s.value(last)) : '–'));
    const first = last ? this.series[0].value(last) : null;
    setAttr(this.root, 'data-last', first == null ? '' : first);
    if (!document.hidden) this.draw(samples);
  }

  draw(samples) {
    const canvas = this.canvas;
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth;
    const ht = canvas.clientHeight;
    if (!w || !ht) return;
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(ht * dpr)) {
      canvas.width = Math.round(w * dpr);
      canvas.height = Math.round(ht * dpr);
    }
    const ctx = canvas.getContext('2d');
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, ht);
    const hasRight = this.series.some((s) => s.axis === 'right');
    const left = 40;
    const right = hasRight ? 54 : 8;
    const top = 6;
    const bottom = 18;
    const pw = w - left - right;
    const ph = ht - top - bottom;
    const end = samples.length ? samples[samples.length - 1].at : Date.now();
    const [span, step] = timeAxis(samples, end);
    setText(this.spanLabel, `last ${fmtAgo(span)}`);
    const begin = end - span;
    const shown = samples.filter((s) => s.at >= begin);
    const max = { left: 0, right: 0 };
    for (const s of this.series) {
      const axis = s.axis || 'left';
      for (const x of shown) {
        const v = s.value(x);
        if (v != null && Number.isFinite(v) && v > max[axis]) max[axis] = v;
      }
    }
    max.left = niceMax(max.left * 1.05);
    max.right = niceMax(max.right * 1.05);
    const xOf = (t) => left + ((t - begin) / span) * pw;
    const yOf = (v, axis) => top + ph - (v / max[axis]) * ph;

    ctx.font = '11px system-ui, sans-serif';
    ctx.lineWidth = 1;
    ctx.strokeStyle = '#eef1f5';
    ctx.fillStyle = '#98a2b3';
    ctx.textBaseline = 'middle';
    for (let i = 0; i <= 4; i += 1) {
      const y = Math.round(top + ph - (ph * i) / 4) + 0.5;
      ctx.beginPath();
      ctx.moveTo(left, y);
      ctx.lineTo(left + pw, y);
      ctx.stroke();
      ctx.textAlign = 'right';
      ctx.fillText(this.leftFormat((max.left * i) / 4), left - 6, y);
      if (hasRight) {
        ctx.textAlign = 'left';
        ctx.fillText(this.rightFormat((max.right * i) / 4), left + pw + 6, y);
      }
    }
    ctx.textBaseline = 'alphabetic';
    for (let ago = span; ago >= 0; ago -= step) {
      ctx.textAlign = ago === span ? 'left' : ago === 0 ? 'right' : 'center';
      ctx.fillText(ago ? `−${fmtAgo(ago)}` : 'now', xOf(end - ago), ht - 4);
    }

    for (const s of this.series) {
      const axis = s.axis || 'left';
      ctx.strokeStyle = s.color;
      ctx.lineWidth = 1.6;
      ctx.setLineDash(s.dash ? [4, 3] : []);
      ctx.beginPath();
      let pen = false;
      let prev = 0;
      for (const x of shown) {
        const v = s.value(x);
        if (v == null || !Number.isFinite(v)) {
          pen = false;
          continue;
        }
        // A gap in the samples (the engine was busy or the page asleep) stays a gap.
        if (pen && x.at - prev > 5000) pen = false;
        const px = xOf(x.at);
        const py = yOf(v, axis);
        if (pen) ctx.lineTo(px, py);
        else ctx.moveTo(px, py);
        pen = true;
        prev = x.at;
      }
      ctx.stroke();
    }
    ctx.setLineDash([]);
  }
}

const charts = [];

function setupCharts() {
  const rate = (v) => (v == null ? '–' : `${fmtRate(v)}/s`);
  const ms = (v) => (v == null ? '–' : `${fmtRate(v)} ms`);
  charts.push(
    new Chart(
      $('chart-throughput'),
      [
        { label: 'records', color: '#2563eb', value: (s) => s.recordsPerSecond, format: rate },
        { label: 'requests', color: '#0d9488', value: (s) => s.requestsPerSecond, format: rate },
        { label: 'failures', color: '#dc2626', value: (s) => s.failuresPerSecond, format: rate },
      ],
      fmtAxis,
    ),
    new Chart(
      $('chart-latency'),
      [
        { label: 'p50', color: '#7c3aed', value: (s) => s.latencyP50Ms, format: ms },
        { label: 'p99', color: '#db2777', value: (s) => s.latencyP99Ms, format: ms },
      ],
      fmtAxis,
    ),
    new Chart(
      $('chart-cpu'),
      [
        { label: 'CPU', color: '#ea580c', value: (s) => s.cpuPercent, format: fmtPercent },
        {
          label: 'memory',
          color: '#0891b2',
          value: (s) => s.residentBytes,
          format: fmtBytes,
          axis: 'right',
          dash: true,
        },
      ],
      (v) => `${fmtAxis(v)}%`,
      (v) => fmtBytes(v).replace(/\.\d /, ' '),
    ),
  );
}

let drawPending = false;

function drawCharts() {
  if (drawPending) return;
  drawPending = true;
  requestAnimationFrame(() => {
    drawPending = false;
    for (const c of charts) c.update(state.samples);
  });
}

// Jobs

function renderCounts(c) {
  if (!c) return;
  setText(
    $('job-counts'),
    `${fmtInt(c.running)} running · ${fmtInt(c.waiting)} waiting · ${fmtInt(c.complete)} complete · ` +
      `${fmtInt(c.failed)} failed · ${fmtInt(c.cancelled)} cancelled`,
  );
}

function onJobs(jobs) {
  renderCounts(jobs.counts);
  for (const j of jobs.active || []) updateJob(j);
  // Jobs that started, ended or arrived: the list again, once.
  const activeKey = (jobs.active || []).map((j) => `${j.id}:${j.jobStatus}`).join(',');
  const countsKey = JSON.stringify(jobs.counts);
  if (activeKey !== state.activeKey || countsKey !== state.countsKey) {
    const first = state.activeKey === null;
    state.activeKey = activeKey;
    state.countsKey = countsKey;
    if (!first) scheduleJobsReload();
  }
}

function scheduleJobsReload() {
  clearTimeout(state.jobsTimer);
  state.jobsTimer = setTimeout(loadJobs, 150);
}

async function loadJobs() {
  try {
    const v = await api(`api/jobs?limit=${JOB_LIST_LIMIT}`);
    const order = [];
    for (const j of v.jobs) {
      order.push(j.id);
      updateJob(j, true);
    }
    // The open job stays even when it is older than the list.
    for (const id of [...state.jobs.keys()]) {
      if (!order.includes(id) && id !== state.selected) state.jobs.delete(id);
    }
    state.jobOrder = order;
    placeRows();
  } catch (err) {
    failed(err);
  }
}

function updateJob(j, quiet) {
  const before = state.jobs.get(j.id);
  state.jobs.set(j.id, before ? { ...before, ...j } : j);
  const job = state.jobs.get(j.id);
  if (!before && !quiet) {
    state.jobOrder.unshift(j.id);
    placeRows();
  }
  const row = jobRow(j.id);
  if (row) fillRow(row, job);
  if (state.selected === j.id) renderDetail(job, before);
}

function jobRow(id) {
  return $('jobs').querySelector(`tr[data-job-id="${CSS.escape(id)}"]`);
}

function placeRows() {
  const body = $('jobs');
  const wanted = state.jobOrder.filter((id) => state.jobs.has(id));
  const keep = new Set(wanted);
  for (const row of [...body.children]) {
    if (!keep.has(row.dataset.jobId)) row.remove();
  }
  wanted.forEach((id, i) => {
    let row = jobRow(id);
    if (!row) {
      row = newRow(id);
      fillRow(row, state.jobs.get(id));
    }
    if (body.children[i] !== row) body.insertBefore(row, body.children[i] || null);
  });
  show($('jobs-none'), wanted.length === 0);
}

function progressBar() {
  const attrs = { class: 'progress', 'data-testid': 'job-progress', role: 'progressbar', 'aria-valuemin': '0', 'aria-valuemax': '100' };
  return h('div', attrs, h('div', { class: 'bar' }));
}

function newRow(id) {
  const row = h(
    'tr',
    { 'data-testid': 'job-row', 'data-job-id': id, tabindex: '0' },
    h('td', {}, h('span', { class: 'job-name', 'data-field': 'name' }),
      h('span', { class: 'job-id' }, id.slice(0, 8))),
    h('td', {}, h('span', { class: 'badge', 'data-testid': 'job-status' })),
    h('td', {}, h('div', { class: 'progress-cell' }, progressBar(),
      h('span', { class: 'pct', 'data-field': 'pct' }))),
    h('td', { class: 'num', 'data-field': 'read' }),
    h('td', { class: 'num', 'data-field': 'scored' }),
    h('td', { class: 'num', 'data-field': 'failed' }),
    h('td', { class: 'num', 'data-field': 'rate' }),
    h('td', { class: 'num', 'data-field': 'eta' }),
  );
  row.title = id;
  row.classList.toggle('selected', id === state.selected);
  return row;
}

// How far a job is, 0..1, or null when it cannot be told. `progress.fraction` is the share
// of the inputs read, which runs ahead of the model (inputs are read ahead, a small file at
// once): with the records read so far it tells how many records the inputs hold, and the
// records done (scored, failed, rejected) against those is how far the job is.
function fractionOf(job) {
  const p = job.progress;
  if (job.jobStatus === 'COMPLETE') return 1;
  if (!p) return job.jobStatus === 'RUNNING' ? null : 0;
  if (p.fraction == null) return FINAL.has(job.jobStatus) ? 0 : null;
  if (!(p.fraction > 0) || !p.recordsRead) return FINAL.has(job.jobStatus) ? 0 : p.fraction;
  const done = p.recordsScored + p.recordsFailed + p.recordsRejected;
  return Math.min(1, (done * p.fraction) / p.recordsRead);
}

// The time left at the pace so far, while the job runs.
function etaOf(job) {
  const f = job.jobStatus === 'RUNNING' && job.progress ? fractionOf(job) : null;
  return f > 0 && f < 1 ? (job.progress.elapsedMs * (1 - f)) / f : null;
}

function fillProgress(bar, job) {
  const f = fractionOf(job);
  setAttr(bar, 'data-status', job.jobStatus);
  setAttr(bar, 'data-fraction', f == null ? 'unknown' : f);
  if (f == null) bar.removeAttribute('aria-valuenow');
  else setAttr(bar, 'aria-valuenow', Math.floor(f * 100));
  const width = f == null ? '' : `${Math.min(100, f * 100).toFixed(1)}%`;
  if (bar.firstElementChild.style.width !== width) bar.firstElementChild.style.width = width;
  return f;
}

function fillRow(row, job) {
  const p = job.progress;
  setAttr(row, 'data-status', job.jobStatus);
  setText(field(row, 'name'), job.name || job.jobType);
  badge(row.querySelector('[data-testid="job-status"]'), job.jobStatus);
  const f = fillProgress(row.querySelector('[data-testid="job-progress"]'), job);
  setText(field(row, 'pct'), f == null ? '…' : `${Math.floor(f * 100)}%`);
  setText(field(row, 'read'), p ? fmtInt(p.recordsRead) : '–');
  setText(field(row, 'scored'), p ? fmtInt(p.recordsScored) : '–');
  setText(field(row, 'failed'), p ? fmtInt(p.recordsFailed) : '–');
  setText(field(row, 'rate'), p ? `${fmtRate(p.recordsPerSecond)}/s` : '–');
  const eta = etaOf(job);
  setText(field(row, 'eta'), eta == null ? '–' : fmtDuration(eta));
}

// The open job

async function selectJob(id) {
  if (state.selected === id) return;
  stopLogPolling();
  state.selected = id;
  state.logLines = 0;
  state.resultKey = null;
  for (const row of $('jobs').children) row.classList.toggle('selected', row.dataset.jobId === id);
  $('job-log').replaceChildren();
  clearResult();
  show($('job-detail-empty'), false);
  show($('job-detail-body'), true);
  const known = state.jobs.get(id);
  if (known) renderDetail(known, null);
  try {
    const job = await api(`api/jobs/${encodeURIComponent(id)}?messages=false`);
    if (state.selected !== id) return;
    updateJob(job, true);
    await loadLog(id);
  } catch (err) {
    failed(err);
  }
}

function closeDetail() {
  stopLogPolling();
  state.selected = null;
  show($('job-detail-empty'), true);
  show($('job-detail-body'), false);
  show($('job-cancel'), false);
  show($('job-rerun'), false);
  setText($('job-detail-title'), 'Job');
}

function clearResult() {
  show($('job-result'), false);
  show($('job-traceback'), false);
  setText($('job-traceback'), '');
  $('job-outputs').replaceChildren();
  $('job-problems').replaceChildren();
}

function renderDetail(job, before) {
  const p = job.progress;
  setText($('job-detail-title'), job.name || job.id);
  $('job-detail-title').title = job.id;
  setAttr($('job-detail'), 'data-job-id', job.id);
  badge($('job-detail-status'), job.jobStatus);
  setText($('job-detail-result'), FINAL.has(job.jobStatus) ? job.jobResult : '');
  setText($('job-detail-type'), `${job.jobType} · ${job.id}`);
  fillProgress($('job-detail-progress'), job);
  setText(
    $('job-detail-counts'),
    p
      ? `${fmtInt(p.recordsRead)} read · ${fmtInt(p.recordsScored)} scored · ` +
          `${fmtInt(p.recordsFailed)} failed · ${fmtInt(p.recordsRejected)} rejected`
      : '–',
  );
  let rate = p ? `${fmtRate(p.recordsPerSecond)} records/s` : '–';
  const eta = etaOf(job);
  if (eta != null) rate += ` · ${fmtDuration(eta)} to go`;
  setText($('job-detail-rate'), rate);
  const times = [`created ${fmtDateTime(job.createdAt)}`];
  if (job.startedAt) times.push(`started ${fmtClock(job.startedAt)}`);
  if (job.finishedAt) times.push(`finished ${fmtClock(job.finishedAt)}`);
  if (p) times.push(`${fmtDuration(p.elapsedMs)} elapsed`);
  setText($('job-detail-time'), times.join(' · '));
  setText($('job-detail-runs'), `${job.runs}${job.interrupted ? ' · interrupted by a restart' : ''}`);
  setText($('job-detail-reason'), job.reason || '');
  show($('job-detail-reason'), Boolean(job.reason));
  const final = FINAL.has(job.jobStatus);
  show($('job-cancel'), !final);
  show($('job-rerun'), final || job.interrupted);

  // A rerun starts over: its log and result come again.
  if (before && before.runs !== job.runs) {
    state.logLines = 0;
    $('job-log').replaceChildren();
    clearResult();
  }
  if (job.jobStatus === 'RUNNING') {
    if (!state.logTimer) state.logTimer = setTimeout(pollLog, LOG_POLL_MS);
  } else if (final) {
    const key = `${job.id}:${job.runs}:${job.jobStatus}`;
    if (state.resultKey !== key) {
      state.resultKey = key;
      stopLogPolling();
      loadLog(job.id);
      loadResult(job.id, key);
    }
  }
}

function stopLogPolling() {
  clearTimeout(state.logTimer);
  state.logTimer = 0;
}

async function pollLog() {
  state.logTimer = 0;
  const id = state.selected;
  if (!id) return;
  await loadLog(id);
  const job = state.jobs.get(id);
  if (state.selected === id && job && job.jobStatus === 'RUNNING' && !state.logTimer) {
    state.logTimer = setTimeout(pollLog, LOG_POLL_MS);
  }
}

async function loadLog(id) {
  // One request at a time; a call meanwhile (the job just ended) asks again after it.
  if (state.logBusy) {
    state.logAgain = true;
    return;
  }
  state.logBusy = true;
  state.logAgain = false;
  try {
    const v = await api(`api/jobs/${encodeURIComponent(id)}/log`);
    if (state.selected !== id) return;
    const target = $('job-log');
    if (v.lines.length < state.logLines) {
      target.replaceChildren();
      state.logLines = 0;
    }
    renderLines(target, v.lines.slice(Math.max(state.logLines, v.lines.length - LOG_MAX_LINES)), false);
    state.logLines = v.lines.length;
  } catch (err) {
    failed(err);
  } finally {
    state.logBusy = false;
  }
  if (state.logAgain && state.selected === id) await loadLog(id);
}

async function loadResult(id, key) {
  try {
    const r = await api(`api/jobs/${encodeURIComponent(id)}/result`);
    if (state.selected !== id || state.resultKey !== key) return;
    const outputs = r.outputs.map((o) => {
      const where = o.embedded ? 'kept with the job' : o.path;
      const text = `slot ${o.slot}: ${o.name} (${o.encoding}), ${fmtInt(o.records)} records, ${where}`;
      const item = h('li', { 'data-testid': 'job-output' }, text);
      if (o.content != null) {
        item.append(h('pre', {}, o.content.length > 4000 ? `${o.content.slice(0, 4000)}…` : o.content));
      }
      return item;
    });
    if (r.trainedDir) {
      outputs.push(h('li', {}, `trained files in ${r.trainedDir}: ${r.trainedFiles.join(', ') || 'none'}`));
    }
    $('job-outputs').replaceChildren(...outputs);
    $('job-problems').replaceChildren(
      ...r.problems.map((p) => {
        const text = p.reason ? `slot ${p.slot}, ${p.position}: ${p.reason}` : JSON.stringify(p);
        return h('li', { 'data-testid': 'job-problem' }, text);
      }),
    );
    show($('job-result'), outputs.length > 0 || r.problems.length > 0);
    setText($('job-traceback'), r.traceback || '');
    show($('job-traceback'), Boolean(r.traceback));
  } catch (err) {
    failed(err);
  }
}

async function jobAction(action) {
  const id = state.selected;
  if (!id) return;
  const button = $(`job-${action}`);
  button.disabled = true;
  try {
    const job = await api(`api/jobs/${encodeURIComponent(id)}/${action}`, { method: 'POST' });
    updateJob(job);
    toast(action === 'cancel' ? 'The job is being cancelled.' : 'The job is queued again.');
  } catch (err) {
    failed(err);
  } finally {
    button.disabled = false;
  }
}

// Start

function wire() {
  $('login-form').addEventListener('submit', login);
  $('logout').addEventListener('click', () => logout(''));
  $('undeploy').addEventListener('click', undeploy);
  $('tags-edit').addEventListener('click', () => editTags(true));
  $('tags-cancel').addEventListener('click', () => editTags(false));
  $('tags-form').addEventListener('submit', saveTags);
  $('library-filter').addEventListener('input', filterLibraries);
  $('deployment-log-refresh').addEventListener('click', () => {
    if (state.details && (state.details.deployedModel || state.details.deploymentFailure)) loadDeploymentLog();
    else refreshDetails();
  });
  $('job-cancel').addEventListener('click', () => jobAction('cancel'));
  $('job-rerun').addEventListener('click', () => jobAction('rerun'));
  const jobs = $('jobs');
  jobs.addEventListener('click', (e) => {
    const row = e.target.closest('tr[data-job-id]');
    if (row) selectJob(row.dataset.jobId);
  });
  jobs.addEventListener('keydown', (e) => {
    const row = e.target.closest('tr[data-job-id]');
    if (row && (e.key === 'Enter' || e.key === ' ')) {
      e.preventDefault();
      selectJob(row.dataset.jobId);
    }
  });
  window.addEventListener('resize', drawCharts);
  document.addEventListener('visibilitychange', () => {
    if (!document.hidden) drawCharts();
  });
}

// The first request tells whether a token is needed: 401 shows the login.
async function connect() {
  try {
    enter(await api('api/engine'));
  } catch (err) {
    if (err instanceof AuthError) {
      const had = Boolean(state.token);
      sessionStorage.removeItem(TOKEN_KEY);
      state.token = null;
      showLogin(had ? 'The engine did not accept the stored token. Sign in again.' : '');
    } else {
      document.body.classList.add('logged-out');
      toast(`The engine does not answer (${err.message}); trying again.`, true);
      setTimeout(connect, 5000);
    }
  }
}

wire();
setupCharts();
connect();
