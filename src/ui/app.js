// The dashboard's script. Served as a file (an ES module, so nothing of it is global): the
// CSP allows no inline script.
//
// Everything shown here that the agent, the repository, the tests or a task file wrote is
// untrusted: plain text goes in through esc(), Markdown arrives sanitized from the server
// (src/ui/markdown.ts), and no action is ever bound inside rendered content.
//
// Re-rendering keeps what a person is doing: a region is replaced only when its HTML
// changed, never while it holds the focused text field or typed text, and the page keeps
// its scroll position.

// ---- The session and the API -------------------------------------------------------------

// The printed URL carries the token; it is kept for this origin (the port is stable, see
// ui.port), so a bookmark of the bare page works too, and the address bar stays clean.
function takeToken() {
  const params = new URLSearchParams(location.search);
  if (params.get('token')) {
    localStorage.setItem('meta-agent-token', params.get('token'));
    history.replaceState(null, '', location.pathname);
  }
  return localStorage.getItem('meta-agent-token') || '';
}
const token = takeToken();

async function api(path, options = {}) {
  const headers = { 'x-meta-agent-token': token };
  if (options.body) headers['content-type'] = 'application/json';
  if (options.action) headers['x-meta-agent-action'] = options.action;
  const res = await fetch(path, { method: options.method || 'GET', body: options.body, headers });
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(body.error || `${res.status}`);
  return body;
}

// ---- Rendering: escaping, badges, regions ------------------------------------------------

const $ = (s) => document.querySelector(s);
const esc = (s) => String(s ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
const badge = (v, label) =>
  v === null || v === undefined ? '' : `<span class="badge b-${esc(String(v).split(' ')[0])}">${esc(label ? `${label}: ${v}` : v)}</span>`;
const age = (s) => (s < 120 ? `${s}s` : s < 7200 ? `${Math.round(s / 60)}m` : s < 172800 ? `${Math.round(s / 3600)}h` : `${Math.round(s / 86400)}d`);
// A failed run has no risk worth showing: it gets a failure badge (and its error kind) instead.
const failedBadge = (kind) => `<span class="badge b-failed">failed${kind ? `: ${esc(kind)}` : ''}</span>`;
// A stopped run's work so far (a constant string: nothing from the files goes into it).
const incompleteBadge = (on) =>
  on === true ? '<span class="badge b-incomplete" title="The run stopped before the agent finished; this is its work so far">incomplete</span>' : '';
const regressionsBadge = (n) => (n ? `<span class="badge b-regressions">${Number(n)} regression${n === 1 ? '' : 's'}</span>` : '');
const check = (c) => (c ? (c.passed ? 'passed' : 'failed') : 'not run');
const short = (sha) => esc(String(sha || '').slice(0, 10));
// Counters the browser tests read to know a refresh or a live event went by.
const counters = { refreshes: 0, events: 0 };
const count = (k) => {
  counters[k] += 1;
  document.documentElement.dataset[k] = String(counters[k]);
};

/** A text field the person is in, or one holding text they typed: never replace it. */
function holdsWork(el) {
  const a = document.activeElement;
  if (a && el.contains(a) && a.matches('input, textarea, select')) return true;
  for (const f of el.querySelectorAll('input:not([type=checkbox]), textarea')) if (f.value !== f.defaultValue) return true;
  return false;
}
const rendered = new WeakMap();
/** Sets a region's HTML only when it changed and holds no work; keeps the scroll. Returns whether it changed. */
function put(el, html) {
  if (!el || rendered.get(el) === html || holdsWork(el)) return false;
  const x = scrollX,
    y = scrollY,
    inner = el.scrollTop;
  el.innerHTML = html;
  rendered.set(el, html);
  el.scrollTop = inner;
  if (scrollX !== x || scrollY !== y) scrollTo(x, y);
  return true;
}
const say = (el, kind, text) => {
  el.className = `msg ${kind}`;
  el.textContent = text;
};

/** An element with text, and optionally a class. */
function node(tag, text, cls) {
  const el = document.createElement(tag);
  if (text !== undefined && text !== null) el.textContent = String(text);
  if (cls) el.className = cls;
  return el;
}

// ---- What is open ------------------------------------------------------------------------

const view = {
  openReport: null,
  openPatch: null,
  /** The open pending patch's action tokens (approve, reject); null once used or when not pending. */
  patchActions: null,
  openFailed: null,
};

// ---- Tabs and clicks ---------------------------------------------------------------------

function show(tab) {
  for (const b of document.querySelectorAll('nav button')) b.classList.toggle('active', b.dataset.tab === tab);
  for (const s of document.querySelectorAll('main section')) s.classList.toggle('active', s.id === `tab-${tab}`);
}

// One listener for the dashboard's own controls. Clicks inside rendered content (.md)
// never act, and state changes need a real click (not a script's synthetic one).
function onClick(ev) {
  const t = ev.target instanceof Element ? ev.target : null;
  if (!t || t.closest('.md')) return;
  const tab = t.closest('nav button[data-tab]');
  if (tab) return show(tab.dataset.tab);
  const el = t.closest('[data-act]');
  if (!el) return;
  const { act, arg } = el.dataset;
  if (act === 'report') return void showReport(arg);
  if (act === 'patch') return void showPatch(arg);
  if (act === 'cycle') return void showCycle(arg);
  if (act === 'failed') return void showFailed(arg);
  if (!ev.isTrusted) return;
  if (act === 'open-patch') {
    show('patches');
    return void showPatch(arg);
  }
  if (act === 'approve' || act === 'reject') return void decide(act);
  if (act === 'retry') return void retry(arg);
}

// ---- Refresh: the lists of every tab -----------------------------------------------------

async function refresh() {
  const state = await api('/api/state');
  $('#root').textContent = state.root;
  renderQueue(state);
  put($('#reports'), state.reports.map(reportRow).join(''));
  renderPatchLists(state.patches);
  put(
    $('#cycles'),
    state.cycles
      .map(
        (c) =>
          `<li data-act="cycle" data-arg="${esc(c.cycle_id)}" data-id="${esc(c.cycle_id)}" class="click">${esc(c.goal)} ${badge(c.status)}<div class="mute">${esc(c.finished_at)} \u00b7 ${esc(c.summary)}</div></li>`,
      )
      .join('') || '<li class="mute">no cycles yet</li>',
  );
  const projects = $('#f-project');
  if (!projects.options.length) projects.innerHTML = state.projects.map((p) => `<option>${esc(p)}</option>`).join('');
  if (view.openReport) await showReport(view.openReport, true);
  if (view.openPatch) await showPatch(view.openPatch, true);
  if (view.openFailed) await showFailed(view.openFailed, true);
  count('refreshes');
}

// ---- The queue view ----------------------------------------------------------------------

function renderQueue(state) {
  for (const k of ['inbox', 'processing', 'done', 'failed']) $(`#c-${k}`).textContent = `(${state.counts[k]})`;
  put(
    $('#q-inbox'),
    state.inbox.map((e) => `<li data-name="${esc(e.name)}">${esc(e.name)} <span class="mute">${age(e.age_s)}</span></li>`).join('') ||
      '<li class="mute">empty</li>',
  );
  put(
    $('#q-processing'),
    state.processing
      .map(
        (e) =>
          `<li data-name="${esc(e.name)}">${esc(e.name)} <span class="mute">${e.step ? `step ${Number(e.step)}, ${Number(e.tokens)} tokens` : 'starting'}</span></li>`,
      )
      .join('') || '<li class="mute">idle</li>',
  );
  put(
    $('#q-done'),
    state.done.map((e) => `<li data-name="${esc(e.name)}">${esc(e.name)} <span class="mute">${age(e.age_s)} ago</span></li>`).join('') ||
      '<li class="mute">none</li>',
  );
  put($('#q-failed'), state.failed.map(failedItem).join('') || '<li class="mute">none</li>');
}

/** A failed task; one whose file name is a valid id can be opened and retried. */
function failedItem(e) {
  const name = `<span${e.retry_id ? ` class="click" data-act="failed" data-arg="${esc(e.retry_id)}"` : ''}>${esc(e.name)} ${failedBadge(null)}</span>`;
  const button = e.retry_id ? `<button type="button" class="act small" data-act="retry" data-arg="${esc(e.retry_id)}">Retry</button>` : '';
  return `<li data-name="${esc(e.name)}"><div class="row">${name}${button}</div><div class="mute">${esc(e.reason || '')} \u00b7 ${age(e.age_s)} ago</div></li>`;
}

async function showFailed(id, quiet) {
  view.openFailed = id;
  try {
    const f = await api(`/api/failed/${encodeURIComponent(id)}`);
    const box = $('#failed-view');
    box.hidden = false;
    put(box, `<h2>${esc(id)} ${failedBadge(null)}</h2><div class="md">${f.html}</div>`);
  } catch (e) {
    view.openFailed = null;
    $('#failed-view').hidden = true;
    if (!quiet) say($('#queue-message'), 'error', e.message);
  }
}

async function retry(id) {
  const msg = $('#queue-message');
  try {
    const { actions } = await api(`/api/failed/${encodeURIComponent(id)}`);
    const res = await api(`/api/failed/${encodeURIComponent(id)}/retry`, { method: 'POST', body: '{}', action: actions.retry });
    say(msg, 'ok', `Back in the queue: ${res.moved_to}`);
    if (view.openFailed === id) {
      view.openFailed = null;
      $('#failed-view').hidden = true;
    }
    refresh().catch(() => {});
  } catch (e) {
    say(msg, 'error', e.message);
  }
}

// ---- The report view ---------------------------------------------------------------------

function reportRow(r) {
  const status = `${regressionsBadge(r.regressions)}${badge(r.status)}${badge(r.outcome)}${incompleteBadge(r.incomplete)}${r.approval ? badge(r.approval) : ''}`;
  const verdict = r.status === 'error' ? failedBadge(r.error_kind) : badge(r.risk_level);
  return `<tr class="click" data-act="report" data-arg="${esc(r.task_id)}" data-id="${esc(r.task_id)}"><td>${esc(r.task_id)}<div class="mute">${esc(r.type)} \u00b7 ${esc(String(r.summary).slice(0, 120))}</div></td><td>${status}</td><td>${verdict}</td><td>${badge(r.tests)}${badge(r.dry_run, 'dry')}</td></tr>`;
}

async function showReport(id, quiet) {
  view.openReport = id;
  if (!quiet) show('reports');
  try {
    const { report: r, html } = await api(`/api/reports/${encodeURIComponent(id)}`);
    const changed = put($('#report-view'), reportHtml(r, html));
    // Built as DOM nodes with textContent (the agent's and the repository's words): never parsed as HTML.
    if (changed) {
      fillRegressions($('#report-regressions'), r.regressions || []);
      fillFindings($('#report-findings'), r.findings || []);
      replaceMarkdownFindings($('#report-view .md'), $('#report-findings'));
    }
  } catch (e) {
    if (!quiet) put($('#report-view'), `<span class="msg error">${esc(e.message)}</span>`);
  }
}

/** The report's badges, chart and sanitized Markdown, with empty boxes fillRegressions and fillFindings fill. */
function reportHtml(r, html) {
  const u = r.usage;
  const verdict = r.status === 'error' ? failedBadge(r.error ? r.error.kind : null) : badge(r.risk_level, 'risk');
  const tokens = `<span class="badge">${Number(u.prompt_tokens) + Number(u.completion_tokens)} tokens${u.cost_usd !== null ? `, $${Number(u.cost_usd).toFixed(4)}` : ''}</span>`;
  const regressions = r.regressions?.length ? regressionsBadge(r.regressions.length) : '';
  const badges = `${regressions}${badge(r.status)}${badge(r.outcome)}${incompleteBadge(r.incomplete)}${verdict}${badge(check(r.tests), 'tests')}${badge(check(r.dry_run), 'dry run')}${tokens}${r.approval ? badge(r.approval.decision, 'approval') : ''}`;
  const openPatch = r.patch_files.length
    ? `<p><button type="button" class="act" id="open-patch" data-act="open-patch" data-arg="${esc(patchStem(r.patch_files[0]))}">Open the patch</button></p>`
    : '';
  return `<div id="report-regressions"></div><div id="report-badges">${badges}</div>${r.metrics ? chart(r.metrics) : ''}${openPatch}<div id="report-findings"></div><div class="md">${html}</div>`;
}

/** A backtest's equity curve with its drawdown below. */
function chart(metrics) {
  const pts = metrics.equity_curve;
  if (!pts || pts.length < 2) return '';
  const W = 560,
    H = 160,
    P = 28;
  const eq = pts.map((p) => Number(p.equity));
  let peak = -Infinity;
  const dd = eq.map((e) => {
    peak = Math.max(peak, e);
    return e - peak;
  });
  const min = Math.min(...eq),
    max = Math.max(...eq),
    ddMin = Math.min(...dd, -1e-9);
  const x = (i) => P + (i / (pts.length - 1)) * (W - 2 * P);
  const y = (v) => P + (1 - (v - min) / (max - min || 1)) * (H * 0.62 - P);
  const yd = (v) => H * 0.7 + (v / ddMin) * (H * 0.28);
  const line = eq.map((v, i) => `${i ? 'L' : 'M'}${x(i).toFixed(1)},${y(v).toFixed(1)}`).join('');
  const area = `M${x(0)},${H * 0.7}${dd.map((v, i) => `L${x(i).toFixed(1)},${yd(v).toFixed(1)}`).join('')}L${x(dd.length - 1)},${H * 0.7}Z`;
  return `<svg id="equity-chart" viewBox="0 0 ${W} ${H}" width="100%" role="img" aria-label="equity and drawdown"><path d="${line}" fill="none" stroke="#58a6ff" stroke-width="1.5"/><path d="${area}" fill="#f8514955" stroke="#f85149" stroke-width="1"/><text x="${P}" y="12">equity ${min.toFixed(0)}\u2013${max.toFixed(0)}</text><text x="${P}" y="${H - 4}">drawdown (max ${(-ddMin).toFixed(2)})</text></svg>`;
}

/** What the agent broke and finished anyway: shown above everything else. */
function fillRegressions(box, regressions) {
  box.replaceChildren();
  if (!regressions.length) return;
  const notice = node('div', null, 'notice bad regressions');
  notice.append(
    node(
      'strong',
      `Regressions: ${regressions.length === 1 ? 'a check' : `${regressions.length} checks`} that passed on the base commit fail${regressions.length === 1 ? 's' : ''} with this change`,
    ),
    node('span', ' (the agent was told and finished anyway; risk raised to high)', 'mute'),
  );
  const list = node('ul');
  for (const g of regressions)
    list.append(node('li', `${g.check === 'tests' ? 'tests' : 'dry run'}: ${g.test === null || g.test === undefined ? '(the whole check)' : g.test}`));
  notice.append(list);
  box.append(notice);
}

const SEVERITY_RANK = { high: 0, medium: 1, low: 2, info: 3 };
/** The agent's findings as a table, most severe first. */
function fillFindings(box, findings) {
  box.replaceChildren();
  if (!findings.length) return;
  box.append(node('h3', `Findings (${findings.length})`));
  const table = node('table', null, 'findings');
  const head = node('tr');
  for (const h of ['Severity', 'Location', 'Finding']) head.append(node('th', h));
  table.append(node('thead'), node('tbody'));
  table.tHead.append(head);
  const sorted = [...findings].sort((a, b) => (SEVERITY_RANK[a.severity] ?? 9) - (SEVERITY_RANK[b.severity] ?? 9));
  for (const f of sorted) table.tBodies[0].append(findingRow(f));
  box.append(table);
}

/** One finding; a location that did not check out is marked. */
function findingRow(f) {
  const row = node('tr', null, f.location_valid ? '' : 'invalid');
  row.dataset.severity = String(f.severity);
  const sev = node('td');
  sev.append(node('span', f.severity, `badge sev-${SEVERITY_RANK[f.severity] === undefined ? 'info' : f.severity}`));
  const where = node('td');
  where.append(node('code', `${f.file}${f.line === null || f.line === undefined ? '' : `:${f.line}`}`));
  if (!f.location_valid) where.append(node('div', `not found: ${f.location_problem || 'unknown'}`, 'location-problem'));
  const what = node('td');
  what.append(node('strong', f.title));
  if (f.detail) what.append(node('div', f.detail, 'mute detail'));
  row.append(sev, where, what);
  return row;
}

/** The report's Markdown has the findings as a plain table too: the structured one takes its place. */
function replaceMarkdownFindings(md, box) {
  const heading = md && Array.from(md.querySelectorAll('h2')).find((h) => /^Findings \(\d+\)$/.test(h.textContent || ''));
  if (!heading || !box.childElementCount) return;
  while (heading.nextElementSibling && heading.nextElementSibling.tagName !== 'H2') heading.nextElementSibling.remove();
  heading.replaceWith(box);
}

/** The patch a report names (`patches/pending/<id>.<run_id>.patch` when filed beside a pending one), as the id /api/patches takes. */
const patchStem = (file) =>
  String(file)
    .split(/[\\/]/)
    .pop()
    .replace(/\.patch$/i, '');

// ---- The patch view ----------------------------------------------------------------------

function renderPatchLists(patches) {
  const pending = patches.pending;
  $('#pending-count').textContent = pending.length;
  const item = (p, rest) => `<li data-act="patch" data-arg="${esc(p.id)}" data-id="${esc(p.id)}" class="click">${esc(p.id)}${rest}</li>`;
  put(
    $('#patches-pending'),
    pending
      .map((p) =>
        item(
          p,
          ` ${badge(p.risk_level)}${p.regressions ? regressionsBadge(p.regressions.length) : ''}${incompleteBadge(p.incomplete)}<div class="mute">${esc(p.files.join(', '))} \u00b7 ${age(p.age_s)} old</div>`,
        ),
      )
      .join('') || '<li class="mute">nothing to review</li>',
  );
  put(
    $('#patches-applied'),
    patches.applied.map((p) => item(p, ` <span class="mute">commit ${short(p.commit)}</span>`)).join('') || '<li class="mute">none</li>',
  );
  put(
    $('#patches-rejected'),
    patches.rejected.map((p) => item(p, `<div class="mute">${esc((p.reason || '').slice(0, 200))}</div>`)).join('') || '<li class="mute">none</li>',
  );
}

const KW =
  /^(def|class|return|if|elif|else|for|while|import|from|as|with|try|except|finally|raise|None|True|False|and|or|not|in|is|lambda|const|let|function|async|await|new|export|yield|pass|break|continue)$/;
/** Tokenized before escaping (the `#` of an escaped `'` is no comment); every piece is escaped, also what no token matched. */
function highlight(code) {
  return code.replace(/(#.*$|\/\/.*$)|(".*?"|'.*?')|\b(\d+(?:\.\d+)?)\b|\b([a-zA-Z_]+)\b|([\s\S])/g, (m, com, str, num, word) =>
    com
      ? `<span class="com">${esc(com)}</span>`
      : str
        ? `<span class="str">${esc(str)}</span>`
        : num
          ? `<span class="num">${num}</span>`
          : word
            ? KW.test(word)
              ? `<span class="kw">${word}</span>`
              : word
            : esc(m),
  );
}

/** A unified diff with old and new line numbers (from the hunk headers). */
function renderDiff(diff) {
  const out = [];
  let inHunk = false,
    oldNo = 0,
    newNo = 0;
  const row = (cls, o, n, sign, code) =>
    `<div class="l ${cls}"><span class="ln">${o}</span><span class="ln">${n}</span><span class="sign">${sign}</span><span class="code">${code}</span></div>`;
  for (const line of diff.replace(/\r$/gm, '').split('\n')) {
    if (line.startsWith('diff --git ')) {
      inHunk = false;
      out.push(`<div class="file">${esc(line.replace(/^diff --git a\/(.*) b\/.*$/, '$1'))}</div>`);
      continue;
    }
    const hunk = /^@@ -(\d+)(?:,\d+)? \+(\d+)(?:,\d+)? @@/.exec(line);
    if (hunk) {
      inHunk = true;
      oldNo = Number(hunk[1]);
      newNo = Number(hunk[2]);
      out.push(row('hunk', '', '', '', esc(line)));
      continue;
    }
    if (!inHunk) {
      if (
        /^(new file mode|deleted file mode|old mode|new mode|rename from|rename to|similarity index|Binary files)/.test(line) ||
        /^index \S+ 1[26]0000$/.test(line)
      )
        out.push(`<div class="meta">${esc(line)}</div>`);
      continue;
    }
    if (line.startsWith('+')) out.push(row('add', '', newNo++, '+', highlight(line.slice(1))));
    else if (line.startsWith('-')) out.push(row('del', oldNo++, '', '-', highlight(line.slice(1))));
    else if (line.startsWith(' ')) out.push(row('ctx', oldNo++, newNo++, '', highlight(line.slice(1))));
    else if (line.startsWith('\\')) out.push(`<div class="meta">${esc(line)}</div>`);
  }
  return `<div class="diff">${out.join('')}</div>`;
}

/** Has the branch moved since the patch was made, and does it still apply? */
function baseNotice(b) {
  if (!b) return '';
  if (!b.moved) return `<p class="mute">Made on ${esc(b.branch)} at ${short(b.base_commit)}, which is still its head.</p>`;
  const where = b.head ? `${esc(b.branch)} has moved since this patch was made (base ${short(b.base_commit)}, now ${short(b.head)}).` : `${esc(b.detail)}.`;
  const verdict = {
    clean: ['warn', 'It still applies cleanly.'],
    three_way: ['warn', 'It still applies with a 3-way merge, as the gate applies it; the gate tests it on the new head.'],
    conflicts: ['bad', `It no longer applies: ${esc(b.detail || 'conflicts')}. The gate would reject it (and ask the agent to redo it on the new head).`],
    unknown: ['warn', `Could not check whether it still applies${b.detail && b.head ? `: ${esc(b.detail)}` : ''}.`],
  }[b.applies] || ['warn', ''];
  return `<div id="base-warning" class="notice ${verdict[0]}" data-applies="${esc(b.applies)}">${badge('moved', 'branch')}${badge(b.applies === 'three_way' ? 'clean' : b.applies, 'applies')} ${where} ${verdict[1]}</div>`;
}

async function showPatch(id, quiet) {
  if (id !== view.openPatch) {
    // Another patch: start from an empty view (its own actions, no old message).
    for (const s of ['#patch-head', '#patch-base', '#patch-actions', '#patch-diff']) {
      $(s).innerHTML = '';
      rendered.delete($(s));
    }
    say($('#patch-message'), '', '');
  }
  view.openPatch = id;
  try {
    const p = await api(`/api/patches/${encodeURIComponent(id)}`);
    if (view.openPatch !== id) return;
    view.patchActions = p.actions;
    $('#patch-empty').hidden = true;
    put($('#patch-head'), patchHead(id, p));
    put($('#patch-base'), baseNotice(p.base));
    put($('#patch-actions'), patchActionsHtml(p));
    put($('#patch-diff'), renderDiff(p.diff));
  } catch (e) {
    if (!quiet) say($('#patch-message'), 'error', e.message);
  }
}

/** The patch's regressions first, then its id, risk, checks and summary. */
function patchHead(id, p) {
  const r = p.report;
  const broke = p.sidecar?.regressions || [];
  const regressions = broke.length
    ? `<div class="notice bad regressions" id="patch-regressions"><strong>Regressions:</strong> ${esc(broke.map((g) => (g.test === null || g.test === undefined ? (g.check === 'tests' ? 'the tests' : 'the dry run') : g.test)).join(', '))} passed on the base commit and fail with this patch</div>`
    : '';
  return `${regressions}<h2>${esc(id)}</h2>${badge(p.sidecar?.risk_level, 'risk')}${incompleteBadge(p.sidecar?.incomplete)}${r ? badge(check(r.tests), 'tests') + badge(check(r.dry_run), 'dry run') : ''}<p>${esc(p.sidecar?.summary || r?.summary || '')}</p>`;
}

/** Approve and Reject while pending; afterwards what became of it. */
function patchActionsHtml(p) {
  return p.state === 'pending'
    ? `<div class="actions"><button type="button" class="act primary" id="approve" data-act="approve">Approve</button><input id="reject-reason" placeholder="Reason for rejecting" autocomplete="off"><button type="button" class="act danger" id="reject" data-act="reject">Reject</button></div>`
    : `<p>${badge(p.state)} ${p.result ? `commit <code>${esc(p.result.commit)}</code>` : ''}</p>${p.reason ? `<pre class="md">${esc(p.reason)}</pre>` : ''}`;
}

async function decide(action) {
  const id = view.openPatch;
  const msg = $('#patch-message');
  try {
    if (!view.patchActions) throw new Error('this patch is not pending');
    const body = action === 'reject' ? JSON.stringify({ reason: $('#reject-reason').value }) : '{}';
    const res = await api(`/api/patches/${encodeURIComponent(id)}/${action}`, { method: 'POST', body, action: view.patchActions[action] });
    view.patchActions = null;
    say(msg, 'ok', `${action === 'approve' ? 'Approved: the gate tests and applies it' : 'Rejected'} (${res.moved_to})`);
    for (const b of document.querySelectorAll('#patch-actions button')) b.disabled = true;
    const input = $('#reject-reason');
    if (input) {
      input.value = input.defaultValue;
      input.blur();
    }
  } catch (e) {
    say(msg, 'error', e.message);
    // A used or stale action token: fetch fresh ones, keeping what was typed.
    showPatch(id, true);
  }
}

// ---- Cycles ------------------------------------------------------------------------------

async function showCycle(id) {
  const { html } = await api(`/api/cycles/${encodeURIComponent(id)}`);
  put($('#cycle-view'), `<div class="md">${html}</div>`);
}

// ---- The New task form -------------------------------------------------------------------

async function submitTask(ev) {
  ev.preventDefault();
  if (!ev.isTrusted) return;
  const f = new FormData(ev.target);
  const msg = $('#form-message');
  try {
    const { actions } = await api('/api/tasks/new');
    const body = JSON.stringify({
      project: f.get('project'),
      type: f.get('type'),
      objective: f.get('objective'),
      scope: f.get('scope'),
      tasks: String(f.get('tasks') || '').split('\n'),
      name: f.get('name'),
    });
    const res = await api('/api/tasks', { method: 'POST', action: actions.create, body });
    say(msg, 'ok', `Created ${res.file} (id ${res.id})`);
    ev.target.reset();
  } catch (e) {
    say(msg, 'error', e.message);
  }
}

// ---- Live updates and start --------------------------------------------------------------

function connect() {
  const es = new EventSource(`/api/events?token=${encodeURIComponent(token)}`);
  es.addEventListener('hello', () => {
    $('#live').textContent = 'live';
    $('#live').classList.add('on');
  });
  es.addEventListener('change', () => {
    count('events');
    refresh().catch(() => {});
  });
  es.onerror = () => {
    $('#live').textContent = 'reconnecting';
    $('#live').classList.remove('on');
  };
}

document.addEventListener('click', onClick);
$('#new-task').addEventListener('submit', submitTask);
refresh()
  .then(connect)
  .catch((e) => {
    document.querySelector('main').innerHTML = `<p class="msg error">${esc(e.message)}</p>`;
  });
setInterval(() => refresh().catch(() => {}), 5000);
