// Portcullis operator console. No framework, no build step: served as is by the control
// listener under a strict CSP (no inline script or style). Every value from the gateway is put
// in the page as text (textContent), never as HTML: event paths and subjects are attacker-chosen.
'use strict';

const KEY = 'portcullis.token';
const POLL_MS = 3000;
const $ = (id) => document.getElementById(id);
let me = null;        // { name, role }
let timer = null;
let pending = null;   // the flip the dialog is confirming

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k.startsWith('data-')) e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const kid of kids) e.append(kid instanceof Node ? kid : document.createTextNode(kid == null ? '' : String(kid)));
  return e;
}

function table(id, head, rows, empty) {
  const t = $(id);
  t.replaceChildren();
  if (head) t.append(el('tr', {}, ...head.map((h) => el('th', { text: h }))));
  if (!rows.length) { t.append(el('tr', {}, el('td', { class: 'muted', text: empty || 'none' }))); return; }
  for (const r of rows) t.append(r instanceof Node ? r : el('tr', {}, ...r.map((c) => c instanceof Node ? el('td', {}, c) : el('td', { text: c == null ? '' : String(c) }))));
}

function when(unix) {
  if (unix == null) return 'until lifted';
  return new Date(unix * 1000).toISOString().replace('.000Z', 'Z');
}

async function api(path, opts) {
  const token = sessionStorage.getItem(KEY);
  const headers = { Accept: 'application/json' };
  if (token) headers.Authorization = 'Bearer ' + token;
  if (opts && opts.body !== undefined) headers['Content-Type'] = 'application/json';
  const r = await fetch(path, { method: (opts && opts.method) || 'GET', headers, body: opts && opts.body !== undefined ? JSON.stringify(opts.body) : undefined, cache: 'no-store', credentials: 'omit' });
  let body = null;
  try { body = await r.json(); } catch (_) { body = null; }
  if (r.status === 401 && path.startsWith('/v1/')) { signOut('The token was refused (401). Sign in again.'); }
  return { status: r.status, ok: r.ok, body };
}

function errorText(res) {
  const b = res.body || {};
  return (b.errors && b.errors.length ? b.errors.join('; ') : b.message || b.code || ('HTTP ' + res.status));
}

// ---- sign-in ---------------------------------------------------------------------------------

async function signIn(token) {
  sessionStorage.setItem(KEY, token);
  const res = await api('/v1/whoami');
  if (!res.ok) {
    sessionStorage.removeItem(KEY);
    $('signin-error').textContent = 'Sign-in failed: ' + errorText(res);
    return;
  }
  me = res.body;
  $('whoami').textContent = 'signed in as ' + me.name + ' (' + me.role + ')';
  $('signin').hidden = true;
  $('app').hidden = false;
  $('signout').hidden = false;
  refresh();
  timer = setInterval(refresh, POLL_MS);
}

function signOut(message) {
  sessionStorage.removeItem(KEY);
  me = null;
  if (timer) clearInterval(timer);
  timer = null;
  $('app').hidden = true;
  $('signout').hidden = true;
  $('signin').hidden = false;
  $('whoami').textContent = '';
  $('signin-error').textContent = message || '';
}

const canOperate = () => me && (me.role === 'operator' || me.role === 'admin');

// ---- views -----------------------------------------------------------------------------------

async function health() {
  const [ready, summary] = await Promise.all([api('/ready'), api('/v1/summary?hours=1')]);
  const s = summary.body || {};
  const score = $('health-score');
  score.textContent = (s.health_score ?? '?') + ' · ' + (s.health_status || 'unknown');
  score.className = 'score ' + (s.health_status || '');
  const checks = (ready.body && ready.body.checks) || {};
  const ev = s.events || {}, sev = ev.by_severity || {}, rq = s.requests || {};
  table('health-inputs', null, [
    ['ready', ready.body && ready.body.ready ? 'yes' : 'NO'],
    ['checks', Object.entries(checks).map(([k, v]) => k + ': ' + (v ? 'ok' : 'FAIL')).join(', ')],
    ['events (1 h)', `${sev.critical || 0} critical, ${sev.warning || 0} warning, ${sev.info || 0} info`],
    ['requests (1 h)', `${rq.total || 0}, 5xx ${rq.errors_5xx || 0} (${((rq.error_rate_5xx || 0) * 100).toFixed(1)} %)`],
  ]);
}

function flipButton(target, label, destructive, body, path) {
  const b = el('button', { type: 'button', text: label, id: 'flip-' + target.replace(':', '-'), 'data-target': target });
  if (!canOperate()) {
    b.disabled = true;
    b.title = 'needs the operator role';
  } else {
    b.addEventListener('click', () => openConfirm({ target, label, destructive, body, path }));
  }
  if (destructive) b.className = 'danger';
  return b;
}

async function switches() {
  const res = await api('/v1/switches');
  if (!res.ok) return;
  const s = res.body;
  $('switches-note').textContent = canOperate() ? 'Destructive changes ask for a reason and a typed confirmation.' : 'Read-only: your token is a viewer.';
  const rows = [];
  const m = s.maintenance || {};
  const mOn = !!m.active;
  rows.push(el('tr', { 'data-target': 'maintenance' }, el('td', { text: 'maintenance' }), el('td', { class: mOn ? 'off' : 'on', text: mOn ? 'ON' : 'off' }),
    el('td', { class: 'muted', text: m.set_by ? `${m.set_by}: ${m.reason || ''}` : '' }),
    el('td', {}, flipButton('maintenance', mOn ? 'End maintenance' : 'Start maintenance', !mOn, { enabled: !mOn }, '/v1/switches/maintenance'))));
  for (const [name, c] of Object.entries(s.channels || {})) {
    rows.push(el('tr', { 'data-target': 'channel:' + name }, el('td', { text: 'channel ' + name }), el('td', { class: c.enabled ? 'on' : 'off', text: c.enabled ? 'on' : 'OFF' }),
      el('td', { class: 'muted', text: c.set_by ? `${c.set_by}: ${c.reason || ''}` : c.source || '' }),
      el('td', {}, flipButton('channel:' + name, c.enabled ? 'Turn off' : 'Turn on', c.enabled, { enabled: !c.enabled }, '/v1/switches/channels/' + encodeURIComponent(name)))));
  }
  for (const [name, f] of Object.entries(s.flags || {})) {
    if (!f) continue;
    rows.push(el('tr', { 'data-target': 'flag:' + name }, el('td', { text: 'flag ' + name, title: f.description || '' }), el('td', { class: f.enabled ? 'on' : 'off', text: f.enabled ? 'on' : 'off' }),
      el('td', { class: 'muted', text: f.set_by ? `${f.set_by}: ${f.reason || ''}` : f.source || '' }),
      el('td', {}, flipButton('flag:' + name, f.enabled ? 'Turn off' : 'Turn on', f.enabled, { enabled: !f.enabled }, '/v1/flags/' + encodeURIComponent(name)))));
  }
  table('switches-table', ['switch', 'state', 'set by', ''], rows);
}

let typesLoaded = false;
async function events() {
  const q = new URLSearchParams({ limit: '50', hours: $('f-hours').value });
  if ($('f-severity').value) q.set('severity', $('f-severity').value);
  if ($('f-type').value) q.set('type', $('f-type').value);
  if ($('f-tenant').value.trim()) q.set('tenant', $('f-tenant').value.trim());
  const res = await api('/v1/events?' + q);
  if (!res.ok) { table('events-table', null, [[errorText(res)]]); return; }
  const list = res.body.events || [];
  table('events-table', ['time', 'severity', 'type', 'action', 'tenant', 'client', 'request', 'rule / reason'], list.map((e) =>
    el('tr', { class: 'event', 'data-type': e.type },
      el('td', { text: e.time }), el('td', { class: 'sev-' + e.severity, text: e.severity }), el('td', { text: e.type }),
      el('td', { text: e.action }), el('td', { text: e.tenant || '' }), el('td', { text: e.client_ip || '' }),
      el('td', { text: ((e.method || '') + ' ' + (e.path || '')).trim() }),
      el('td', { text: [e.rule_id, e.detail && (e.detail.reason || e.detail.target)].filter(Boolean).join(' · ') }))), 'no events in this window');
  if (!typesLoaded) {
    typesLoaded = true;
    const sum = await api('/v1/summary?hours=1');
    for (const t of Object.keys((sum.body && sum.body.events && sum.body.events.by_type) || {})) $('f-type').append(el('option', { value: t, text: t }));
  }
}

async function threats() {
  const res = await api('/v1/top-threats?hours=24&limit=5');
  if (!res.ok) return;
  const b = res.body;
  const rows = [];
  for (const [k, list] of Object.entries(b)) {
    if (!Array.isArray(list)) continue;
    for (const t of list) rows.push([k.replace(/_/g, ' '), t.ip || t.subject || '?', t.events, Object.keys(t.types || {}).join(', '), t.last_seen]);
  }
  table('threats-table', ['by', 'who', 'events', 'types', 'last seen'], rows, 'nothing in 24 h');
}

async function upstreams() {
  const res = await api('/v1/upstreams');
  if (!res.ok) return;
  const rows = [];
  for (const p of res.body.pools || []) for (const b of p.backends || []) rows.push([p.name, b.address, el('span', { class: b.healthy ? 'on' : 'off', text: b.healthy ? 'healthy' : 'DOWN' })]);
  table('upstreams-table', ['pool', 'backend', 'health'], rows);
}

async function quotas() {
  const res = await api('/v1/quotas');
  if (!res.ok) return;
  const rows = [];
  for (const t of res.body.tenants || []) for (const q of t.quotas || []) rows.push([t.tenant + (t.suspended ? ' (suspended)' : ''), q.rule + (q.subject ? ' / ' + q.subject : ''), `${q.used} / ${q.limit}`, q.resets_at_utc]);
  table('quotas-table', ['tenant', 'quota', 'used', 'resets'], rows, res.body.enforcement ? 'no counters yet' : 'no counters yet (enforcement off)');
}

async function blocks() {
  const [s, b, t] = await Promise.all([api('/v1/sessions'), api('/v1/blocks'), api('/v1/tenants')]);
  if (s.ok) table('revoked-table', ['session', 'by', 'until'], (s.body.sessions || []).map((x) => [x.session, x.actor, when(x.until)]));
  if (b.ok) {
    table('subjects-table', ['subject', 'by', 'reason', 'until'], (b.body.subjects || []).map((x) => [x.subject, x.actor, x.reason, when(x.until)]));
    table('addresses-table', ['address', 'by', 'reason', 'until'], (b.body.addresses || []).map((x) => [x.address, x.actor, x.reason, when(x.until)]));
  }
  if (t.ok) table('tenants-table', ['tenant', 'by', 'reason', 'until'], (t.body.suspended || []).map((x) => [x.tenant, x.actor, x.reason, when(x.until)]));
}

async function audit() {
  if (!me || me.role !== 'admin') {
    $('audit-note').textContent = 'The audit feed needs the admin role.';
    table('audit-table', null, []);
    return;
  }
  const q = new URLSearchParams({ limit: '50' });
  for (const [id, k] of [['a-actor', 'actor'], ['a-action', 'action'], ['a-target', 'target']]) if ($(id).value.trim()) q.set(k, $(id).value.trim());
  const res = await api('/v1/audit?' + q);
  if (!res.ok) { $('audit-note').textContent = errorText(res); return; }
  $('audit-note').textContent = res.body.next_before ? 'Older records: GET /v1/audit?before=' + res.body.next_before : '';
  table('audit-table', ['seq', 'time', 'actor', 'action', 'target', 'outcome', 'reason'], (res.body.records || []).map((r) =>
    el('tr', { class: 'audit-record', 'data-action': r.action, 'data-target': r.target },
      el('td', { text: r.seq }), el('td', { text: r.time }), el('td', { text: r.actor || '-' }), el('td', { text: r.action }),
      el('td', { text: r.target }), el('td', { class: r.outcome === 'ok' ? 'on' : 'off', text: r.outcome }), el('td', { text: r.reason || '' }))));
}

async function refresh() {
  if (!me) return;
  const parts = [health, switches, events, threats, upstreams, quotas, blocks, audit];
  await Promise.all(parts.map((f) => f().catch((e) => console.error(f.name, e))));
  $('updated').textContent = 'updated ' + new Date().toLocaleTimeString();
}

// ---- confirmation dialog ---------------------------------------------------------------------

function openConfirm(p) {
  pending = p;
  const word = p.target.split(':').pop();
  $('confirm-title').textContent = p.label + ': ' + p.target;
  $('confirm-effect').textContent = p.destructive
    ? 'This refuses traffic or turns a protection off. Give a reason and type the name to confirm.'
    : 'Give a reason (optional).';
  $('confirm-word').textContent = word;
  $('confirm-type-label').hidden = !p.destructive;
  $('confirm-reason').value = '';
  $('confirm-typed').value = '';
  $('confirm-error').textContent = '';
  $('confirm').showModal();
  $('confirm-reason').focus();
}

async function submitConfirm(ev) {
  ev.preventDefault();
  const p = pending;
  if (!p) return;
  const reason = $('confirm-reason').value.trim();
  if (p.destructive) {
    if (!reason) { $('confirm-error').textContent = 'A reason is required.'; return; }
    if ($('confirm-typed').value.trim() !== p.target.split(':').pop()) { $('confirm-error').textContent = 'Type the name exactly to confirm.'; return; }
  }
  const body = Object.assign({}, p.body);
  if (reason) body.reason = reason;
  const res = await api(p.path, { method: 'PUT', body });
  if (!res.ok) { $('confirm-error').textContent = 'Refused: ' + errorText(res); return; }
  pending = null;
  $('confirm').close();
  refresh();
}

// ---- wiring ----------------------------------------------------------------------------------

document.addEventListener('DOMContentLoaded', () => {
  $('signin-form').addEventListener('submit', (e) => { e.preventDefault(); const t = $('token').value.trim(); $('token').value = ''; if (t) signIn(t); });
  $('signout').addEventListener('click', () => signOut('Signed out.'));
  $('confirm-form').addEventListener('submit', submitConfirm);
  $('confirm-cancel').addEventListener('click', () => { pending = null; $('confirm').close(); });
  for (const id of ['f-severity', 'f-type', 'f-hours']) $(id).addEventListener('change', events);
  for (const id of ['f-tenant', 'a-actor', 'a-action', 'a-target']) $(id).addEventListener('input', () => { events(); audit(); });
  for (const f of ['event-filters', 'audit-filters']) $(f).addEventListener('submit', (e) => e.preventDefault());
  const saved = sessionStorage.getItem(KEY);
  if (saved) signIn(saved);
});
