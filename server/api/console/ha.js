// System Console > Environment > High Availability, for Chorus: the cluster's nodes (green or red, and why),
// the database servers and their pools, the jobs, and the two actions an operator takes during an incident.
// Served by every node at /admin/ha (server/api/api_console.cpp) under a CSP without inline scripts or
// styles. Everything taken from the API reaches the page as text nodes or attribute values, never as markup.
'use strict';

(() => {
  const API = new URL('../api/v4/', location.href); // /admin/ha -> /api/v4/
  const POLL_MS = 1000;
  const TIMEOUT_MS = 3000; // a node that does not answer within this is "not answering"
  const TOKEN_KEY = 'chorus.ha.token';
  const ACTIVE_JOBS = { in_progress: 0, cancel_requested: 1, pending: 2 }; // listed first, in this order

  const $ = (id) => document.getElementById(id);

  // An element with attributes (values set as attributes, never parsed) and children (strings become text).
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {}))
      if (v !== undefined && v !== null && v !== false) e.setAttribute(k, v === true ? '' : String(v));
    for (const c of children.flat())
      if (c !== undefined && c !== null && c !== false) e.append(c instanceof Node ? c : String(c));
    return e;
  }

  // --- time
  const pad = (n) => String(n).padStart(2, '0');
  function clock(ms) {
    const d = new Date(ms);
    const time = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
    const today = new Date();
    if (d.toDateString() === today.toDateString()) return time;
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${time}`;
  }
  function ago(ms) {
    const s = Math.max(0, Math.round((Date.now() - ms) / 1000)); // the server's clock may be ahead of ours
    if (s < 120) return `${s} s ago`;
    if (s < 7200) return `${Math.round(s / 60)} min ago`;
    if (s < 172800) return `${Math.round(s / 3600)} h ago`;
    return `${Math.round(s / 86400)} days ago`;
  }
  // A relative time the ticker keeps current ("2 s ago"), with the absolute time on hover.
  const agoSpan = (ms) => el('span', { 'data-ts': ms, title: new Date(ms).toISOString() }, ago(ms));
  const when = (ms) => (Number(ms) > 0 ? el('span', { title: new Date(Number(ms)).toISOString() }, clock(Number(ms))) : '');

  // --- the API
  class ApiError extends Error {
    constructor(status, body, message) {
      super(message);
      this.status = status; // 0: no answer at all
      this.body = body;
    }
  }
  // What an error says: Mattermost's {message, detailed_error, request_id, status_code}, or why there was no answer.
  function describe(e) {
    if (!(e instanceof ApiError)) return String((e && e.message) || e);
    if (e.status === 0) return e.message;
    const b = e.body && typeof e.body === 'object' ? e.body : {};
    let s = `${e.status}: ${b.message || e.message}`;
    if (b.detailed_error) s += ` (${b.detailed_error})`;
    if (b.request_id) s += ` [request ${b.request_id}]`;
    return s;
  }

  async function api(method, path, body) {
    const headers = { 'X-Requested-With': 'XMLHttpRequest' };
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers.Authorization = `Bearer ${token}`;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), TIMEOUT_MS);
    try {
      let res, text;
      try {
        res = await fetch(new URL(path, API), {
          method,
          headers,
          body: body === undefined ? undefined : JSON.stringify(body),
          signal: ctl.signal,
          cache: 'no-store',
          credentials: 'omit', // the token lives in this tab only, not in a cookie
        });
        text = await res.text();
      } catch (e) {
        throw new ApiError(0, null, ctl.signal.aborted ? `no answer within ${TIMEOUT_MS / 1000} s`
                                                       : `cannot reach the server (${e.message || e})`);
      }
      let data = null;
      try {
        data = text ? JSON.parse(text) : null;
      } catch (e) {
        if (res.ok) throw new ApiError(res.status, null, 'the answer is not JSON');
      }
      if (!res.ok) throw new ApiError(res.status, data, (data && data.message) || `HTTP ${res.status}`);
      return { status: res.status, headers: res.headers, data };
    } finally {
      clearTimeout(timer);
    }
  }

  // --- logging in and out
  let me = null;

  function showLogin(message) {
    stopPolling();
    me = null;
    $('console').hidden = true;
    $('who').hidden = true;
    $('login').hidden = false;
    const err = $('login-error');
    err.textContent = message || '';
    err.hidden = !message;
    $('login-submit').disabled = false;
    (($('login-id').value && $('password')) || $('login-id')).focus();
  }

  // Drops the session (revoked on the server when it still answers) and shows the form with why.
  function logout(message) {
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) api('POST', 'users/logout').catch(() => {});
    sessionStorage.removeItem(TOKEN_KEY);
    showLogin(message);
  }

  async function submitLogin(ev) {
    ev.preventDefault();
    const loginId = $('login-id').value.trim();
    const password = $('password').value;
    $('login-error').hidden = true;
    $('login-submit').disabled = true;
    sessionStorage.removeItem(TOKEN_KEY);
    try {
      const r = await api('POST', 'users/login', { login_id: loginId, password });
      const token = r.headers.get('Token');
      if (!token) throw new Error('the server answered without a Token header');
      sessionStorage.setItem(TOKEN_KEY, token);
      $('password').value = '';
      await enter();
    } catch (e) {
      // A refusal says why in the server's words; anything else with its status and request id.
      const why = e.status === 401 && e.body && e.body.message ? e.body.message : describe(e);
      showLogin(`Login failed: ${why}`);
    }
  }

  // With a token: the console if it belongs to a system admin, the form otherwise.
  async function enter() {
    let user;
    try {
      user = (await api('GET', 'users/me')).data || {};
    } catch (e) {
      sessionStorage.removeItem(TOKEN_KEY);
      return showLogin(e.status === 401 ? 'Your session has expired. Log in again.' : `Cannot log in: ${describe(e)}`);
    }
    const roles = String(user.roles || '').split(/\s+/);
    if (!roles.includes('system_admin'))
      return logout(`${user.username || 'This account'} is not a system admin: this page needs the system_admin role.`);
    me = user;
    $('login-error').textContent = '';
    $('who-name').textContent = `${user.username || user.id} (system admin)`;
    $('who').hidden = false;
    $('login').hidden = true;
    $('console').hidden = false;
    startPolling();
  }

  // --- polling
  let generation = 0;
  let pollTimer = null;
  let lastUpdate = 0; // when cluster/status last answered
  let failingSince = 0;

  function stopPolling() {
    generation++;
    clearTimeout(pollTimer);
  }
  function startPolling() {
    stopPolling();
    lastUpdate = 0;
    failingSince = 0;
    poll(generation);
  }

  async function poll(gen) {
    const started = Date.now();
    const [status, db, jobs] = await Promise.allSettled([
      api('GET', 'cluster/status'),
      api('GET', 'cluster/database'),
      api('GET', 'jobs?page=0&per_page=20'),
    ]);
    if (gen !== generation) return; // logged out meanwhile
    // A session gone (401 anywhere), or refused the cluster's status (403): back to the form, saying why.
    const denied = [status, db, jobs].find((r, i) => r.status === 'rejected' &&
                                                     (r.reason.status === 401 || (i === 0 && r.reason.status === 403)));
    if (denied) {
      return logout(denied.reason.status === 401
        ? 'Your session has expired or was revoked. Log in again.'
        : `This session may not see the cluster (system_admin role needed): ${describe(denied.reason)}`);
    }

    if (status.status === 'fulfilled') {
      lastUpdate = Date.now();
      failingSince = 0;
      $('banner').hidden = true;
      $('data').classList.remove('stale');
      $('summary').classList.remove('stale');
      renderNodes(Array.isArray(status.value.data) ? status.value.data : []);
      section('db', db, renderDatabase);
      section('jobs', jobs, renderJobs);
    } else {
      // The node this page talks to does not answer (or answers with an error): keep the last data, greyed.
      if (!failingSince) failingSince = Date.now();
      $('data').classList.add('stale');
      $('summary').classList.add('stale');
      const e = status.reason;
      const what = e.status === 0 || e.status >= 502 ? `This node is not answering: ${describe(e)}.`
                                                     : `The cluster status failed: ${describe(e)}.`;
      $('banner').textContent = `${what} Failing since ${clock(failingSince)}. ` +
        (lastUpdate ? `The data below is from ${clock(lastUpdate)} and may be out of date.` : 'No data yet.');
      $('banner').hidden = false;
    }
    tick();
    pollTimer = setTimeout(() => poll(gen), Math.max(0, POLL_MS - (Date.now() - started)));
  }

  // One table's answer: rendered, or its error noted under the last data (greyed).
  function section(id, result, render) {
    const note = $(`${id}-note`);
    const table = $(id);
    if (result.status === 'fulfilled') {
      table.classList.remove('stale');
      note.hidden = true;
      render(result.value.data);
    } else {
      table.classList.add('stale');
      note.textContent = `Could not load: ${describe(result.reason)}`;
      note.classList.add('error-text');
      note.hidden = false;
    }
  }

  // Once a second and after each poll: the relative times and the "last update" line.
  function tick() {
    for (const e of document.querySelectorAll('[data-ts]')) e.textContent = ago(Number(e.getAttribute('data-ts')));
    $('updated').textContent = lastUpdate
      ? `Last update ${clock(lastUpdate)} (${ago(lastUpdate)}) · every ${POLL_MS / 1000} s`
      : 'Waiting for the first answer…';
  }

  // --- the nodes
  function renderNodes(rows) {
    const self = rows.find((r) => r.state === 'self') || rows[0];
    // Servers without Chorus's status field: red when version or config hash differ from this node's.
    const statusOf = (r) => r.status || (self && (r.version !== self.version || r.config_hash !== self.config_hash)
      ? 'red' : 'green');
    const sorted = [...rows].sort((a, b) => String(a.id).localeCompare(String(b.id)));
    const tbody = $('nodes').tBodies[0];
    tbody.replaceChildren(...sorted.map((r) => {
      const st = statusOf(r) === 'red' ? 'red' : 'green';
      const isSelf = r === self;
      const hash = String(r.config_hash || '');
      const restart = Array.isArray(r.restart_required) ? r.restart_required : [];
      const differs = (field) => (self && !isSelf && r[field] !== self[field] ? 'differs' : null);
      let seen;
      if (r.state === 'self' || (isSelf && !r.last_seen)) seen = el('span', { class: 'muted' }, 'this node');
      else if (Number(r.last_seen) > 0) seen = agoSpan(Number(r.last_seen));
      else seen = el('span', { class: 'muted' }, 'never');
      return el('tr', { 'data-node': r.id, 'data-status': st, 'data-state': r.state, class: `node ${st}` },
        el('td', { class: 'status' }, el('span', { class: `dot ${st}`, 'aria-hidden': 'true' }), ` ${st}`,
          r.state ? el('span', { class: `state ${r.state}` }, r.state) : null),
        el('td', {}, el('code', {}, r.id)),
        el('td', { class: 'wrap' }, r.hostname),
        el('td', { class: differs('version') }, r.version),
        el('td', { class: differs('config_hash') }, el('code', { title: hash }, hash.slice(0, 12))),
        el('td', { class: differs('schema_version') }, r.schema_version),
        el('td', {}, r.leader ? el('span', { class: 'tag leader' }, 'leader') : ''),
        el('td', {}, seen),
        el('td', { class: 'reason' }, r.reason || ''),
        el('td', { class: 'wrap' }, restart.length ? el('span', { class: 'restart' }, restart.join(', ')) : ''));
    }));

    const n = rows.length;
    const red = sorted.filter((r) => statusOf(r) === 'red').length;
    const summary = $('summary');
    const detail = [];
    if (n === 0) {
      summary.textContent = 'High availability is off on this node';
      summary.dataset.state = 'off';
      detail.push('ClusterSettings.Enable is false here: there is no cluster to show.');
    } else {
      summary.textContent = red === 0 ? `All ${n} node${n === 1 ? '' : 's'} green` : `${red} of ${n} nodes red`;
      summary.dataset.state = red === 0 ? 'green' : 'red';
      const leader = rows.find((r) => r.leader);
      if (leader) detail.push(`Leader: ${leader.id}`);
      const suspect = rows.filter((r) => r.state === 'suspect').length;
      if (suspect) detail.push(`${suspect} suspect`);
      if (self) detail.push(`This page talks to ${self.id}${self.hostname ? ` (${self.hostname})` : ''}`);
    }
    $('summary-detail').textContent = detail.join(' · ');
    $('nodes-note').hidden = true;
  }

  // --- the database
  function renderDatabase(d) {
    d = d || {};
    $('db-driver').textContent = d.driver ? `(${d.driver})` : '';
    const servers = Array.isArray(d.servers) ? d.servers : [];
    const num = (v, warn) => el('td', { class: warn && Number(v) > 0 ? 'num warn' : 'num' }, v ?? '');
    $('db').tBodies[0].replaceChildren(...servers.map((s) => {
      const p = s.pool || {};
      const st = s.online ? 'online' : 'offline';
      return el('tr', { 'data-server': s.name, 'data-role': s.role, 'data-online': String(!!s.online) },
        el('td', { class: 'status' }, el('span', { class: `dot ${s.online ? 'green' : 'red'}`, 'aria-hidden': 'true' }),
          ` ${st}`),
        el('td', {}, s.role),
        el('td', {}, el('code', {}, s.name)),
        num(s.reads), num(s.failures, true),
        el('td', { 'data-open': p.open, 'data-busy': p.busy, 'data-idle': p.idle },
          el('meter', { min: 0, max: Math.max(1, Number(p.open) || 0), value: Number(p.busy) || 0, 'aria-hidden': 'true' }),
          ` ${p.open ?? '?'} open: ${p.busy ?? '?'} busy, ${p.idle ?? '?'} idle`),
        num(p.waiting, true), num(p.requests), num(p.waited), num(p.rejected, true),
        el('td', { class: 'num' }, `${p.opened ?? ''} / ${p.closed ?? ''}`), num(p.connect_failures, true));
    }));
    if (!servers.length) {
      $('db-note').textContent = 'No database servers reported.';
      $('db-note').classList.remove('error-text');
      $('db-note').hidden = false;
    }
  }

  // --- the jobs
  function jobData(data) {
    if (!data || typeof data !== 'object') return '';
    return Object.entries(data)
      .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
      .join(', ');
  }
  function renderJobs(list) {
    const jobs = Array.isArray(list) ? list : [];
    const isActive = (j) => Object.hasOwn(ACTIVE_JOBS, j.status);
    const active = jobs.filter(isActive);
    const done = jobs.filter((j) => !isActive(j));
    const byNewest = (a, b) => Number(b.create_at || 0) - Number(a.create_at || 0);
    const byStatus = (a, b) => ACTIVE_JOBS[a.status] - ACTIVE_JOBS[b.status] || byNewest(a, b);
    $('jobs-count').textContent = `(${active.length} running or queued, ${done.length} recent)`;
    const row = (j) => {
      const data = jobData(j.data);
      const p = Number(j.progress);
      const running = j.status === 'in_progress';
      return el('tr', { 'data-job': j.id, 'data-job-status': j.status, class: running ? 'active' : null },
        el('td', {}, el('span', { class: `badge ${String(j.status || '').replace(/[^a-z_]/g, '')}` }, j.status)),
        el('td', {}, j.type),
        el('td', {}, running && p >= 0 ? el('progress', { max: 100, value: Math.min(p, 100) }) : null,
          p >= 0 && j.status !== 'pending' ? ` ${p}%` : ''),
        el('td', {}, when(j.create_at)),
        el('td', {}, when(j.start_at)),
        el('td', {}, Number(j.last_activity_at) > 0 ? agoSpan(Number(j.last_activity_at)) : ''),
        el('td', {}, el('code', {}, j.id)),
        el('td', { class: 'data', title: data }, data.length > 100 ? `${data.slice(0, 100)}…` : data));
    };
    $('jobs').tBodies[0].replaceChildren(...active.sort(byStatus).map(row), ...done.sort(byNewest).map(row));
    if (!jobs.length) {
      $('jobs-note').textContent = 'No jobs yet.';
      $('jobs-note').classList.remove('error-text');
      $('jobs-note').hidden = false;
    }
  }

  // --- actions
  function confirmAction(title, text, ok) {
    const dlg = $('confirm');
    $('confirm-title').textContent = title;
    $('confirm-text').textContent = text;
    $('confirm-ok').textContent = ok;
    dlg.returnValue = '';
    return new Promise((resolve) => {
      dlg.addEventListener('close', () => resolve(dlg.returnValue === 'ok'), { once: true });
      dlg.showModal();
      $('confirm-cancel').focus();
    });
  }

  async function action(button, title, text, ok, path, done) {
    if (!(await confirmAction(title, text, ok))) return;
    const out = $('action-result');
    for (const b of document.querySelectorAll('#console .actions button')) b.disabled = true;
    out.className = 'action-result';
    out.textContent = `${title}…`;
    out.hidden = false;
    try {
      await api('POST', path);
      out.classList.add('ok');
      out.textContent = `${done} (${clock(Date.now())}).`;
    } catch (e) {
      if (e.status === 401) return logout('Your session has expired or was revoked. Log in again.');
      out.classList.add('error');
      out.textContent = `${title} failed: ${describe(e)}`;
    } finally {
      for (const b of document.querySelectorAll('#console .actions button')) b.disabled = false;
    }
  }

  // --- start
  $('login-form').addEventListener('submit', submitLogin);
  $('logout').addEventListener('click', () => logout('You are logged out.'));
  $('act-reload').addEventListener('click', (ev) => action(ev.currentTarget, 'Reload configuration',
    'This node reads its config.json again and applies it. With high availability on, every node must have the ' +
    'same config.json: copy the file to every node, then reload each one.', 'Reload', 'config/reload',
    'Configuration reloaded on this node'));
  $('act-recycle').addEventListener('click', (ev) => action(ev.currentTarget, 'Recycle database connections',
    'This node closes its database connections (master and replicas) and opens new ones, for instance after the ' +
    'master has moved (manual failover).', 'Recycle', 'database/recycle',
    'Database connections recycled on this node'));
  setInterval(() => { if (me) tick(); }, 1000);

  if (sessionStorage.getItem(TOKEN_KEY)) enter();
  else showLogin('');
})();
