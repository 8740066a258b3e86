// The hdev dashboard: polls /api/overview every second and redraws what changed; follows
// the selected machine's logs; posts actions with the token in a header of their own.
'use strict';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const token = params.get('token') || sessionStorage.getItem('hdev-token') || '';
if (params.get('token')) {
  sessionStorage.setItem('hdev-token', token);
  // Keep the secret out of the address bar and the history; the cookie carries it now.
  history.replaceState(null, '', location.pathname);
}

let view = null;
let selected = null;
let lastSvg = '';
let logsAfter = 0;
let logsFor = null;

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') e.className = v; else if (k.startsWith('on')) e.addEventListener(k.slice(2), v); else e.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c);
  return e;
}

function age(secs) {
  if (secs < 60) return `${secs} s`;
  if (secs < 3600) return `${Math.floor(secs / 60)} min`;
  if (secs < 86400) return `${Math.floor(secs / 3600)} h`;
  return `${Math.floor(secs / 86400)} d`;
}

function now() { return Math.floor(Date.now() / 1000); }

function say(text, kind) {
  const m = $('message');
  m.textContent = text;
  m.className = kind || '';
  m.hidden = !text;
}

// The state's words with a class for its colour; the words are always shown.
function stateBadge(status, cls) {
  return el('span', { class: `state ${cls || ''}` }, status || 'unknown');
}

async function refresh() {
  try {
    const r = await fetch('/api/overview', { cache: 'no-store', headers: { 'X-Hdev-Token': token } });
    if (r.status === 403) {
      $('updated').textContent = 'refused: open the address `hdev ui` printed';
      return;
    }
    view = await r.json();
    render(view);
  } catch (e) {
    $('updated').textContent = 'the dashboard does not answer (did `hdev ui` stop?)';
  }
}

function render(v) {
  document.title = `hdev: ${v.env || 'dashboard'}`;
  $('env-name').textContent = v.env || '';
  $('env-hash').textContent = v.env_hash || '';
  $('hash-note').textContent = v.recorded_env_hash && v.recorded_env_hash !== v.env_hash
    ? '(the running environment was brought up from another hash; run Up)' : '';
  $('updated').textContent = v.error ? `problem: ${v.error}` : `updated ${age(Math.max(0, now() - (v.at || now())))} ago`;
  $('notes').textContent = (v.notes || []).join(' ');
  renderPicture(v);
  renderMachines(v);
  renderDetails(v);
  renderChecks(v);
  renderSnapshots(v);
  renderAction(v.action);
}

function renderPicture(v) {
  const pic = $('picture');
  if (v.svg && v.svg !== lastSvg) {
    lastSvg = v.svg;
    const old = pic.querySelector('svg');
    const holder = document.createElement('div');
    holder.innerHTML = v.svg.replace(/^<\?xml[^>]*>\s*/, '');
    const svg = holder.querySelector('svg');
    if (old) old.replaceWith(svg); else pic.prepend(svg);
  }
  const seen = new Set();
  for (const n of v.nodes || []) {
    seen.add(n.name);
    let b = pic.querySelector(`button[data-machine="${CSS.escape(n.name)}"]`);
    if (!b) {
      b = el('button', { type: 'button', class: 'node-btn', 'data-machine': n.name, onclick: () => select(n.name) });
      pic.append(b);
    }
    const r = n.rect;
    Object.assign(b.style, {
      left: `${(100 * r.x) / v.width}%`, top: `${(100 * r.y) / v.height}%`,
      width: `${(100 * r.w) / v.width}%`, height: `${(100 * r.h) / v.height}%`,
    });
    b.dataset.status = n.status;
    b.dataset.class = n.class;
    b.setAttribute('aria-label', `${n.name}, ${n.kind}: ${n.status}. Show details`);
    b.setAttribute('aria-pressed', String(n.name === selected));
  }
  for (const b of pic.querySelectorAll('button.node-btn')) if (!seen.has(b.dataset.machine)) b.remove();
}

function renderMachines(v) {
  const body = $('machines').tBodies[0];
  body.replaceChildren(...(v.machines || []).map((m) => {
    const node = (v.nodes || []).find((n) => n.name === m.name);
    return el('tr', { 'data-machine': m.name, 'aria-selected': String(m.name === selected) },
      el('td', {}, el('button', { type: 'button', onclick: () => select(m.name), 'aria-label': `${m.name}: show details` }, m.name)),
      el('td', {}, m.backend === 'libvirt' ? 'VM' : 'container'),
      el('td', {}, m.host),
      el('td', {}, stateBadge(m.status || m.state, node ? node.class : '')),
      el('td', { class: 'mono' }, (m.ports || []).join(', ') || '—'));
  }));
}

function select(name) {
  selected = name;
  if (view) render(view);
  $('details-title').focus?.();
}

function dd(list, term, value) {
  list.append(el('dt', {}, term), el('dd', {}, value));
}

function renderDetails(v) {
  const m = (v.machines || []).find((x) => x.name === selected);
  $('details-empty').hidden = !!m;
  $('details-body').hidden = !m;
  if (!m) return;
  const d = m.details || {};
  $('details-title').textContent = `Machine details: ${m.name}`;
  const list = $('details-list');
  list.replaceChildren();
  const node = (v.nodes || []).find((n) => n.name === m.name);
  dd(list, 'State', stateBadge(m.status || m.state, node ? node.class : ''));
  dd(list, 'Kind', `${m.backend === 'libvirt' ? 'VM' : 'container'} on host ${m.host}`);
  dd(list, 'Engine id', m.id || '—');
  dd(list, 'Hash (Envfile)', el('code', {}, d.hash || '—'));
  dd(list, 'Definition', m.definition || 'not created');
  dd(list, 'Provisioned', m.provisioned ? 'yes' : 'no');
  dd(list, 'Baseline', d.baseline_at ? `taken ${age(Math.max(0, now() - d.baseline_at))} ago` : (m.baseline ? 'yes' : 'none'));
  dd(list, 'Addresses', Object.entries(m.addresses || {}).map(([n, a]) => `${n}: ${a}`).join(', ') || '—');
  dd(list, 'Ports', (m.ports || []).join(', ') || '—');
  const drift = $('drift');
  drift.replaceChildren();
  if (d.drift) {
    const files = [['added', d.drift.added], ['changed', d.drift.changed], ['deleted', d.drift.deleted]];
    const total = files.reduce((n, [, f]) => n + f.length, 0);
    drift.append(el('p', {}, total ? `${total} file(s) changed since the baseline (checked just now):` : 'No drift: nothing changed since the baseline (checked just now).'));
    const ul = el('ul', { class: 'files mono' });
    for (const [what, fs] of files) for (const f of fs) ul.append(el('li', {}, `${what}: ${f}`));
    if (total) drift.append(ul);
  } else if (m.drifted !== null && m.drifted !== undefined) {
    drift.append(el('p', {}, `${m.drifted ? 'Drifted' : 'No drift'} at the last check, ${age(m.drift_age || 0)} ago (run \`hdev drift ${m.name}\` to check now).`));
  } else {
    drift.append(el('p', { class: 'muted' }, d.drift_error ? `Not known: ${d.drift_error}.` : 'Not checked since hdev last changed it.'));
  }
  const p = d.provision;
  $('provision').textContent = p
    ? `${p.ok ? 'succeeded' : 'FAILED'} ${age(Math.max(0, now() - p.at))} ago${p.dropped ? ` (first ${p.dropped} lines left out)` : ''}\n${p.lines.join('\n')}`
    : 'No provisioning output recorded.';
}

async function followLogs() {
  if (selected !== logsFor) {
    logsFor = selected;
    logsAfter = 0;
    $('logs').textContent = '';
  }
  if (!selected) return;
  try {
    const r = await fetch(`/api/logs?machine=${encodeURIComponent(selected)}&after=${logsAfter}`, { cache: 'no-store' });
    if (!r.ok) return;
    const l = await r.json();
    if (logsFor !== selected) return;
    const pre = $('logs');
    const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    if (l.lines.length) {
      pre.textContent += l.lines.map((x) => x.replace(/\n$/, '')).join('\n') + '\n';
      const lines = pre.textContent.split('\n');
      if (lines.length > 1000) pre.textContent = lines.slice(-1000).join('\n');
      if (atEnd) pre.scrollTop = pre.scrollHeight;
    }
    logsAfter = l.next;
    $('logs-state').textContent = l.following ? '(following)' : '';
  } catch (e) { /* the next poll tries again */ }
}

function renderChecks(v) {
  const t = v.tests;
  const table = $('checks-table');
  if (!t) {
    $('checks-summary').textContent = (v.checks || []).length
      ? `No run of the ${v.checks.length} check(s) recorded: run them with “Run checks”.`
      : 'The Envfile has no [[test]] checks.';
    table.hidden = true;
    return;
  }
  const s = t.summary;
  $('checks-summary').textContent = `Last run ${age(Math.max(0, now() - t.at))} ago: ${s.passed} passed, ${s.failed} failed${t.ok ? '' : ' (FAILED)'}.`;
  table.hidden = false;
  table.tBodies[0].replaceChildren(...t.results.map((r) => el('tr', {},
    el('td', {}, r.name),
    el('td', {}, r.machine),
    el('td', {}, stateBadge(r.passed ? 'passed' : 'failed', r.passed ? 'running' : 'failed'),
      r.failure ? el('div', { class: 'muted' }, r.failure) : null),
    el('td', {}, `${(r.duration_ms / 1000).toFixed(1)} s`))));
}

function renderSnapshots(v) {
  const pick = $('snapshot-pick');
  const names = Object.keys(v.snapshots || {}).filter((n) => n !== 'baseline');
  const have = [...pick.options].map((o) => o.value);
  if (names.join('\n') === have.join('\n')) return;
  const keep = pick.value;
  pick.replaceChildren(...names.map((n) => el('option', { value: n }, n)));
  if (names.includes(keep)) pick.value = keep;
  pick.disabled = names.length === 0;
  $('restore-form').querySelector('button').disabled = names.length === 0;
}

function renderAction(a) {
  const line = $('action-line');
  const log = $('action-log');
  $('actions').setAttribute('aria-busy', String(!!(a && a.running)));
  $('action-progress').hidden = !(a && a.running);
  if (!a) return;
  const secs = (a.elapsed_ms / 1000).toFixed(1);
  if (a.running) {
    line.textContent = `Running: ${a.label} (${secs} s)…`;
    line.className = '';
  } else {
    line.textContent = `${a.label}: ${a.outcome} (${secs} s)`;
    line.className = a.ok ? 'ok' : 'failed';
  }
  const text = a.lines.join('\n');
  if (log.textContent !== text) {
    log.textContent = text;
    log.scrollTop = log.scrollHeight;
  }
  log.hidden = a.lines.length === 0;
}

// Asks before a destructive action; resolves to whether the answer was yes.
function confirmAction(text) {
  const d = $('confirm');
  $('confirm-text').textContent = text;
  return new Promise((resolve) => {
    d.addEventListener('close', () => resolve(d.returnValue === 'yes'), { once: true });
    d.returnValue = '';
    d.showModal();
    $('confirm-no').focus();
  });
}

async function act(body, question) {
  if (question && !(await confirmAction(question))) return;
  say('');
  try {
    const r = await fetch('/api/action', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'X-Hdev-Token': token },
      body: JSON.stringify(body),
    });
    const j = await r.json().catch(() => ({}));
    if (r.status === 202) {
      say(`Started: ${describe(body)}.`, 'info');
    } else if (r.status === 409) {
      say(`Refused: ${j.error}`);
    } else {
      say(`Refused (${r.status}): ${j.error || 'unknown error'}`);
    }
  } catch (e) {
    say('The dashboard does not answer (did `hdev ui` stop?)');
  }
  refresh();
}

function describe(body) {
  switch (body.kind) {
    case 'reset': return body.machines.length ? `reset ${body.machines.join(' ')}` : 'reset of every machine';
    case 'save': return `snapshot save ${body.name}`;
    case 'restore': return `snapshot restore ${body.name}`;
    case 'test': return 'the checks';
    default: return body.kind;
  }
}

function wire() {
  for (const b of document.querySelectorAll('button[data-action]')) {
    b.addEventListener('click', () => {
      switch (b.dataset.action) {
        case 'up': return act({ kind: 'up' });
        case 'test': return act({ kind: 'test' });
        case 'halt': return act({ kind: 'halt' }, 'Halt: stop every machine of the environment? Up starts them again.');
        case 'reset-all': return act({ kind: 'reset', machines: [] }, 'Reset every machine to its baseline? Every change made since the baseline is lost.');
      }
    });
  }
  $('reset-machine').addEventListener('click', () => {
    if (selected) act({ kind: 'reset', machines: [selected] }, `Reset ${selected} to its baseline? Every change made in it since the baseline is lost.`);
  });
  $('save-form').addEventListener('submit', (e) => {
    e.preventDefault();
    act({ kind: 'save', name: $('snapshot-name').value.trim() });
  });
  $('restore-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const name = $('snapshot-pick').value;
    if (name) act({ kind: 'restore', name }, `Restore snapshot ${name}? Every machine goes back to it; changes since are lost.`);
  });
  $('copy-hash').addEventListener('click', async () => {
    const text = $('env-hash').textContent;
    try {
      await navigator.clipboard.writeText(text);
    } catch (e) {
      const r = document.createRange();
      r.selectNodeContents($('env-hash'));
      getSelection().removeAllRanges();
      getSelection().addRange(r);
      document.execCommand('copy');
    }
    $('copy-hash').textContent = 'Copied';
    setTimeout(() => { $('copy-hash').textContent = 'Copy'; }, 1500);
  });
}

wire();
refresh();
setInterval(refresh, 1000);
setInterval(followLogs, 1000);
