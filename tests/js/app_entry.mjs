// The entry sequences of Mattermost's two official apps, call for call as their source makes them, against
// two Chorus nodes behind NGINX (tests/client_nginx_test.cpp sets them up):
//
//   node app_entry.mjs <url-A> <url-B>
//
// url-A prefers node 1, url-B node 2. Alice uses the mobile app (mattermost-mobile: its own REST client,
// `Authorization: BEARER <token>`, its own WebSocket client) through A; Bob uses the web app (the official
// @mattermost/client: Client4 and WebSocketClient, authenticated by the session cookies as a browser is)
// through B. Each step names the app function it follows (mobile: app/actions/remote/*.ts and
// app/client/rest/*.ts at mattermost-mobile 06ed862d; web: webapp/channels/src/packages/mattermost-redux/
// src/actions/*.ts, components/team_controller, actions/websocket_actions.jsx, and the Client4 of
// tests/js/package.json). It expects a fresh database: the first user it creates becomes the system admin.
//
// Exit code 0 when everything held; the first thing that does not hold prints FAIL and the reason, and exits
// 1. Every step is printed. Every wait is bounded; the whole run has a 90 s deadline.
import WebSocket from 'ws';
import client from '@mattermost/client';

const { Client4, WebSocketClient } = client;

const [urlA, urlB] = process.argv.slice(2);
if (!urlA || !urlB) {
  console.error('usage: node app_entry.mjs <url-A> <url-B>');
  process.exit(2);
}

// ------------------------------------------------------------------------------------------------------
// Plumbing: log, fail, waits.

const t0 = Date.now();
const log = (...args) => console.log(`[${((Date.now() - t0) / 1000).toFixed(3)}s]`, ...args);
let finishing = false;
function fail(why) {
  console.error(`FAIL: ${why}`);
  process.exit(1);
}
process.on('unhandledRejection', (e) => fail(`unhandled: ${e?.stack || e}`));
process.on('uncaughtException', (e) => fail(`uncaught: ${e?.stack || e}`));
const deadline = setTimeout(() => fail('the whole run took more than 90 s'), 90_000);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const step = (n, title) => log(`=== ${n}. ${title}`);
const need = (cond, why) => {
  if (!cond) fail(why);
};
const show = (v) => {
  const s = typeof v === 'string' ? v : JSON.stringify(v);
  return s === undefined ? 'undefined' : s.length > 400 ? `${s.slice(0, 400)}...` : s;
};

// Polls fn until it returns true (or ''), at most ms; fn returns a string saying what is still wrong.
// Used for reads through the other node: lists come from the read replica, a moment behind the master.
async function eventually(what, fn, ms = 5000) {
  const end = Date.now() + ms;
  for (;;) {
    const r = await fn();
    if (r === true || r === '') return;
    if (Date.now() > end) fail(`${what}: still not so after ${ms} ms: ${r}`);
    await sleep(50);
  }
}

// The first event after `from` on a socket that satisfies pred, waiting at most ms.
async function waitEvent(sock, what, pred, from = 0, ms = 10_000) {
  const end = Date.now() + ms;
  for (;;) {
    const e = sock.events.slice(from).find(pred);
    if (e) return e;
    if (Date.now() > end) {
      const got = sock.events.slice(from).map((x) => x.event).join(', ') || 'nothing';
      fail(`timed out after ${ms} ms waiting for ${what} on ${sock.name}'s WebSocket (it got: ${got})`);
    }
    await sleep(20);
  }
}

const isStr = (v) => typeof v === 'string';
const isNum = (v) => typeof v === 'number' && Number.isFinite(v);
const isObj = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);
// Checks that obj has each field with the type given ('string', 'number', 'boolean', 'object', 'array').
function shape(what, obj, spec) {
  need(isObj(obj), `${what}: expected an object, got ${show(obj)}`);
  for (const [k, type] of Object.entries(spec)) {
    const v = obj[k];
    const ok = type === 'array' ? Array.isArray(v) : type === 'object' ? isObj(v) : type === 'number' ? isNum(v) : typeof v === type;
    need(ok, `${what}: field "${k}" should be ${type}, got ${show(v)} in ${show(obj)}`);
  }
}
const semver = (v) => {
  const p = String(v).split('.');
  return [parseInt(p[0], 10), parseInt(p[1] || '0', 10), parseInt(p[2] || '0', 10)];
};
const atLeast = (v, min) => {
  const a = semver(v);
  const b = semver(min);
  for (let i = 0; i < 3; i++) if (a[i] !== b[i]) return a[i] > b[i];
  return true;
};
const dmName = (a, b) => (a < b ? `${a}__${b}` : `${b}__${a}`);  // model.GetDMNameFromIds
const PNG = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

// ------------------------------------------------------------------------------------------------------
// The browser, for the web app. Client4 runs in a browser, where the cookie jar, Origin and document.cookie
// come for free; Node has none of them, so this script supplies them and nothing else:
//  - Client4.setAuthHeader = false, as the web app sets it (no Authorization header; the session is the
//    MMAUTHTOKEN cookie), and the token Client4.login read from the Token header is cleared;
//  - a cookie jar per browser: a Client4 subclass adds the jar's Cookie header in getOptions (the method
//    Client4's doFetch builds every request with) and tags the request with the jar; a wrapper around the
//    global fetch (Client4 calls the global fetch) stores the response's Set-Cookie headers in that jar,
//    as a browser does for `credentials: 'include'`;
//  - X-CSRF-Token: in a browser Client4 reads MMCSRF from document.cookie (getCSRFFromCookie); here the
//    same value is given to it with setCSRF after the login. X-Requested-With: XMLHttpRequest Client4 sends
//    itself;
//  - the WebSocket: WebSocketClient's newWebSocketFn (its own option) opens a `ws` socket with the jar's
//    Cookie and the page's Origin, which a browser sends on the upgrade; no authentication challenge (the
//    web app initializes it without a token: websocket_actions.jsx initialize()).
const JAR = Symbol('browser cookie jar');

class Browser {
  constructor(name, origin) {
    this.name = name;
    this.origin = new URL(origin).origin;
    this.cookies = new Map();  // name -> {value, attrs}
  }
  store(setCookies) {
    for (const line of setCookies) {
      const [pair, ...attrs] = line.split(';').map((s) => s.trim());
      const eq = pair.indexOf('=');
      if (eq <= 0) continue;
      const name = pair.slice(0, eq);
      const value = pair.slice(eq + 1);
      const lower = attrs.map((a) => a.toLowerCase());
      const expired = lower.some((a) => a === 'max-age=0' || (a.startsWith('expires=') && Date.parse(a.slice(8)) < Date.now()));
      if (expired || value === '') this.cookies.delete(name);
      else this.cookies.set(name, { value, attrs: lower });
    }
  }
  get(name) {
    return this.cookies.get(name)?.value;
  }
  cookieHeader() {
    return [...this.cookies].map(([k, v]) => `${k}=${v.value}`).join('; ');
  }
}

class BrowserClient4 extends Client4 {
  constructor(browser) {
    super();
    this.browser = browser;
    this.setUrl(browser.origin);
    this.setAuthHeader = false;
  }
  getOptions(options) {
    const o = super.getOptions(options);
    const cookie = this.browser.cookieHeader();
    if (cookie) o.headers.Cookie = cookie;
    o[JAR] = this.browser;
    return o;
  }
}

// Every request of this script goes through here. A 401 on a request that carries a session (other than
// the login) is what makes both apps log the user out (forceLogoutIfNecessary): it ends the run.
const realFetch = globalThis.fetch;
globalThis.fetch = async (url, init = {}) => {
  const res = await realFetch(url, init);
  if (init[JAR]) init[JAR].store(res.headers.getSetCookie());
  const h = new Headers(init.headers || {});
  const authed = h.has('authorization') || /(^|;\s*)MMAUTHTOKEN=/.test(h.get('cookie') || '');
  if (res.status === 401 && authed && !String(url).includes('/api/v4/users/login'))
    fail(`HTTP 401 on ${init.method || 'GET'} ${url}: the app would log the user out (forceLogoutIfNecessary)`);
  return res;
};
globalThis.WebSocket = WebSocket;  // WebSocketClient reads WebSocket.OPEN; Node 20 has no global WebSocket
// WebSocketClient builds a CloseEvent on a ping timeout or a sequence mismatch; Node 20 has none.
globalThis.CloseEvent ??= class CloseEvent extends Event {
  constructor(type, init = {}) {
    super(type);
    this.code = init.code;
    this.reason = init.reason || '';
    this.wasClean = Boolean(init.wasClean);
  }
};

// A web app call: Client4 throws a ClientError; the run fails with what was asked and what came back.
async function web(what, promise) {
  try {
    return await promise;
  } catch (e) {
    fail(`web (${what}): ${e.status_code ?? ''} ${e.server_error_id ?? ''} ${e.message} ${e.url ?? ''}`);
  }
}

function webSocket(name, browser) {
  const s = { name, events: [] };
  const ws = new WebSocketClient({
    newWebSocketFn: (url) => new WebSocket(url, { headers: { Cookie: browser.cookieHeader(), Origin: browser.origin } }),
    minWebSocketRetryTime: 300,
    reconnectJitterRange: 200,
    maxWebSocketRetryTime: 2000,
  });
  ws.addMessageListener((msg) => {
    if (msg.event) s.events.push(msg);
  });
  // A close means the server closed it, or WebSocketClient found a gap in seq (it then reconnects and the
  // web app re-syncs): neither should happen here.
  ws.addCloseListener((failCount) => {
    if (!finishing) fail(`${name}: the web app's WebSocket closed (fail count ${failCount}); its events: ${s.events.map((e) => `${e.seq}:${e.event}`).join(' ')}`);
  });
  // posted_ack=true as the web app (websocket_actions.jsx initialize: WebSocketClient.initialize(connUrl, undefined, true)).
  ws.initialize(`${browser.origin.replace(/^http/, 'ws')}/api/v4/websocket`, undefined, true);
  s.ws = ws;
  return s;
}

// ------------------------------------------------------------------------------------------------------
// The mobile app's REST client (app/client/rest/base.ts, tracking.ts; NetworkManager's default headers):
// Accept: application/json, X-Requested-With: XMLHttpRequest, `Authorization: BEARER <token>` (HEADER_BEARER
// is upper case), JSON bodies. Like tracking.ts it reads X-Version-Id on every answer (ignored when the
// answer has Cache-Control) and fails when the version is below the app's hard minimum, 9.11.0.
const MIN_REQUIRED_VERSION = '9.11.0';  // app/constants/supported_server.ts

class Mobile {
  constructor(name, base) {
    this.name = name;
    this.base = base;
    this.token = '';
    this.serverVersion = '';
    this.versionHeaders = 0;
  }
  async raw(method, path, body, extraHeaders = {}) {
    const headers = { Accept: 'application/json', 'X-Requested-With': 'XMLHttpRequest', ...extraHeaders };
    if (this.token) headers.Authorization = `BEARER ${this.token}`;
    let payload;
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      payload = typeof body === 'string' ? body : JSON.stringify(body);
    }
    const res = await fetch(this.base + path, { method, headers, body: payload });
    const version = res.headers.get('x-version-id');
    if (version) {
      this.versionHeaders++;
      if (!res.headers.get('cache-control')) {
        const v = semver(version).join('.');
        need(atLeast(v, MIN_REQUIRED_VERSION), `${this.name}: X-Version-Id "${version}" on ${method} ${path} is below ${MIN_REQUIRED_VERSION}: the app shows "Server upgrade required" and logs out`);
        this.serverVersion = v;
      }
    }
    const type = res.headers.get('content-type') || '';
    let data;
    if (type.startsWith('application/json')) {
      const text = await res.text();
      try {
        data = JSON.parse(text);
      } catch {
        fail(`${this.name}: ${method} ${path} answered invalid JSON: ${show(text)}`);
      }
    } else if (type.startsWith('image/') || type.startsWith('application/octet-stream')) {
      data = new Uint8Array(await res.arrayBuffer());
    } else {
      data = await res.text();
    }
    return { status: res.status, headers: res.headers, data, type };
  }
  async call(method, path, body, extraHeaders) {
    const r = await this.raw(method, path, body, extraHeaders);
    if (r.status < 200 || r.status > 299) fail(`${this.name}: ${method} ${path} answered ${r.status}: ${show(r.data)}`);
    return r;
  }
  async get(path) {
    return (await this.call('GET', path)).data;
  }
  async post(path, body) {
    return (await this.call('POST', path, body)).data;
  }
  async put(path, body) {
    return (await this.call('PUT', path, body)).data;
  }
}

// The mobile app's WebSocket (app/client/websocket/index.ts), as on Android: the URL carries
// connection_id and sequence_number (reliable WebSockets, server >= 6.5), the upgrade carries Origin and
// `Authorization: Bearer <token>`, then it sends the authentication challenge and a ping. It checks what
// the app checks: the first event is hello (seq 0) with a connection_id, every event's seq is the next one
// (a mismatch makes the app drop the socket and re-sync), and the ping is answered with a pong.
class MobileSocket {
  constructor(name, base, token) {
    this.name = name;
    this.events = [];
    this.replies = new Map();
    this.nextSeq = 1;
    this.expect = 0;
    this.closing = false;
    const origin = new URL(base).origin;
    const url = `${base.replace(/^http/, 'ws')}/api/v4/websocket?connection_id=&sequence_number=0`;
    this.ws = new WebSocket(url, { headers: { Origin: origin, Authorization: `Bearer ${token}` } });
    this.ws.on('unexpected-response', (req, res) => fail(`${name}: the WebSocket upgrade was answered HTTP ${res.statusCode}`));
    this.ws.on('error', (e) => fail(`${name}: WebSocket error: ${e.message}`));
    this.ws.on('close', (code, reason) => {
      if (!this.closing && !finishing) fail(`${name}: the server closed the mobile WebSocket (${code} ${reason}): the app reconnects and re-syncs everything`);
    });
    this.ws.on('open', () => {
      this.send('authentication_challenge', { token });
      this.pingSeq = this.send('ping');
    });
    this.ws.on('message', (buf) => {
      let msg;
      try {
        msg = JSON.parse(buf.toString());
      } catch {
        fail(`${name}: a WebSocket frame that is not JSON: ${show(buf.toString())}`);
      }
      if (msg.seq_reply) {
        this.replies.set(msg.seq_reply, msg);
        return;
      }
      if (msg.seq !== this.expect)
        fail(`${name}: event "${msg.event}" has seq ${msg.seq}, expected ${this.expect}: the app closes the socket and re-syncs`);
      if (this.expect === 0 && (msg.event !== 'hello' || !isStr(msg.data?.connection_id) || !msg.data.connection_id))
        fail(`${name}: the first event must be hello with data.connection_id (reliable WebSockets), got ${show(msg)}`);
      this.expect++;
      this.events.push(msg);
    });
  }
  send(action, data) {
    const seq = this.nextSeq++;
    this.ws.send(JSON.stringify(data === undefined ? { action, seq } : { action, seq, data }));
    return seq;
  }
  async ready() {
    await waitEvent(this, 'hello', (e) => e.event === 'hello');
    const end = Date.now() + 10_000;
    while (!this.replies.has(this.pingSeq)) {
      if (Date.now() > end) fail(`${this.name}: no answer to the ping within 10 s: the app would drop the socket`);
      await sleep(20);
    }
    const pong = this.replies.get(this.pingSeq);
    need(pong.status === 'OK' && pong.data?.text === 'pong', `${this.name}: the ping's reply should be {status:"OK", seq_reply, data:{text:"pong"}}, got ${show(pong)}`);
    return this.events[0].data;
  }
  close() {
    this.closing = true;
    this.ws.close();
  }
}

// ------------------------------------------------------------------------------------------------------
// Shapes the apps read.

// An error the apps can read (ClientError takes id, message and status_code from the body).
function errorShape(what, r, statuses) {
  need(statuses.includes(r.status), `${what}: expected HTTP ${statuses.join(' or ')}, got ${r.status}: ${show(r.data)}`);
  need(isObj(r.data), `${what}: the error body should be a JSON object, got ${r.type}: ${show(r.data)}`);
  need(isStr(r.data.id) && r.data.id !== '', `${what}: the error body needs a non-empty "id": ${show(r.data)}`);
  need(isStr(r.data.message), `${what}: the error body needs "message": ${show(r.data)}`);
  need(r.data.status_code === r.status, `${what}: the error body's status_code ${r.data.status_code} should be the HTTP status ${r.status}`);
}

function checkConfig(who, config) {
  need(isObj(config), `${who}: config/client?format=old should be an object, got ${show(config)}`);
  for (const [k, v] of Object.entries(config)) need(isStr(v), `${who}: config value ${k} should be a string (format=old), got ${show(v)}`);
  need(config.DiagnosticId, `${who}: config DiagnosticId must be non-empty (mobile shows an error screen otherwise)`);
  need(isStr(config.Version) && atLeast(config.Version, '10.11.0'), `${who}: config Version should be >= 10.11.0 (mobile's supported version), got ${show(config.Version)}`);
  need(config.EnableSignInWithEmail === 'true' && config.EnableSignInWithUsername === 'true', `${who}: EnableSignInWithEmail/EnableSignInWithUsername should be "true", got ${show(config.EnableSignInWithEmail)}/${show(config.EnableSignInWithUsername)}`);
  need(isStr(config.SiteName), `${who}: config SiteName missing`);
}
function checkLicense(who, license) {
  need(isObj(license) && license.IsLicensed === 'false', `${who}: license/client?format=old should have IsLicensed "false", got ${show(license)}`);
  for (const [k, v] of Object.entries(license)) need(isStr(v), `${who}: license value ${k} should be a string, got ${show(v)}`);
}

function checkPreferences(who, prefs, userId) {
  need(Array.isArray(prefs), `${who}: preferences should be an array, got ${show(prefs)}`);
  for (const p of prefs) {
    shape(`${who}: preference`, p, { user_id: 'string', category: 'string', name: 'string', value: 'string' });
    need(p.user_id === userId, `${who}: a preference of someone else: ${show(p)}`);
  }
}
const hasPref = (prefs, p) => prefs.some((x) => x.category === p.category && x.name === p.name && x.value === p.value);

function checkMe(who, me, id) {
  shape(`${who}: users/me`, me, { id: 'string', username: 'string', roles: 'string', locale: 'string', timezone: 'object', notify_props: 'object', delete_at: 'number' });
  need('email' in me && isStr(me.email), `${who}: users/me must contain "email" (mobile says "User not found" otherwise): ${show(me)}`);
  if (id) need(me.id === id, `${who}: users/me is ${me.id}, expected ${id}`);
}

function checkTeams(who, teams, members, userId, expectTeamIds) {
  need(Array.isArray(teams), `${who}: users/me/teams should be an array, got ${show(teams)}`);
  need(Array.isArray(members), `${who}: users/me/teams/members should be an array, got ${show(members)}`);
  for (const t of teams) shape(`${who}: team`, t, { id: 'string', name: 'string', display_name: 'string', type: 'string', delete_at: 'number' });
  for (const m of members) {
    shape(`${who}: team member`, m, { team_id: 'string', user_id: 'string', roles: 'string', delete_at: 'number' });
    need(m.delete_at === 0, `${who}: team member delete_at should be the number 0 (mobile picks no team otherwise): ${show(m)}`);
    need(m.user_id === userId, `${who}: a team member of someone else: ${show(m)}`);
  }
  const ids = teams.map((t) => t.id).sort().join();
  need(ids === [...expectTeamIds].sort().join(), `${who}: teams ${ids}, expected ${[...expectTeamIds].sort().join()}`);
  need(members.map((m) => m.team_id).sort().join() === ids, `${who}: team members (${members.map((m) => m.team_id)}) do not match the teams (${ids})`);
}

function checkChannels(who, channels, teamId) {
  need(Array.isArray(channels), `${who}: channels should be an array, got ${show(channels)}`);
  for (const c of channels) {
    shape(`${who}: channel`, c, { id: 'string', team_id: 'string', type: 'string', name: 'string', display_name: 'string', total_msg_count: 'number', last_post_at: 'number', delete_at: 'number' });
    if (c.type === 'D' || c.type === 'G') need(c.team_id === '', `${who}: a ${c.type} channel's team_id should be "", got ${show(c.team_id)}`);
    else if (teamId) need(c.team_id === teamId, `${who}: channel ${c.name} of team ${c.team_id} in team ${teamId}'s list`);
  }
}
function checkChannelMembers(who, members, userId) {
  need(Array.isArray(members), `${who}: channel members should be an array, got ${show(members)}`);
  for (const m of members) {
    shape(`${who}: channel member`, m, { channel_id: 'string', user_id: 'string', roles: 'string', last_viewed_at: 'number', msg_count: 'number', mention_count: 'number', notify_props: 'object' });
    if (userId) need(m.user_id === userId, `${who}: a channel member of someone else: ${show(m)}`);
  }
}
// The channels and the memberships must be the same set (mobile keeps only memberships of listed channels).
function sameChannelSets(who, channels, members) {
  const a = channels.map((c) => c.id).sort().join();
  const b = members.map((m) => m.channel_id).sort().join();
  need(a === b, `${who}: channel list (${a}) and membership list (${b}) differ`);
}

// The sidebar (mobile fetchCategories, web fetchMyCategories): built only from categories.
function checkCategories(who, res, userId, teamId, channels) {
  need(isObj(res) && Array.isArray(res.categories) && Array.isArray(res.order), `${who}: categories should be {categories:[...], order:[...]}, got ${show(res)}`);
  for (const c of res.categories) {
    shape(`${who}: category`, c, { id: 'string', team_id: 'string', user_id: 'string', type: 'string', display_name: 'string', sorting: 'string', channel_ids: 'array', collapsed: 'boolean', muted: 'boolean', sort_order: 'number' });
    need(c.team_id === teamId && c.user_id === userId, `${who}: category ${c.id} is for team ${c.team_id} / user ${c.user_id}, expected ${teamId} / ${userId}`);
  }
  const types = new Set(res.categories.map((c) => c.type));
  for (const t of ['favorites', 'channels', 'direct_messages']) need(types.has(t), `${who}: no "${t}" category (types: ${[...types]})`);
  need(res.order.slice().sort().join() === res.categories.map((c) => c.id).sort().join(), `${who}: order ${show(res.order)} should list every category id once`);
  const where = new Map();
  for (const c of res.categories) {
    for (const id of c.channel_ids) {
      need(!where.has(id), `${who}: channel ${id} is in two categories (${where.get(id)} and ${c.type})`);
      where.set(id, c.type);
    }
  }
  for (const ch of channels) {
    need(where.has(ch.id), `${who}: channel ${ch.name} (${ch.type}) is in no category: the sidebar would not show it`);
    if (ch.type === 'D' || ch.type === 'G') need(where.get(ch.id) === 'direct_messages', `${who}: ${ch.type} channel ${ch.id} is in "${where.get(ch.id)}", expected direct_messages`);
  }
  const ids = new Set(channels.map((c) => c.id));
  for (const id of where.keys()) need(ids.has(id), `${who}: a category lists channel ${id}, which is not one of the user's channels`);
}

// POST /roles/names: every asked role comes back with its permissions; what the apps check for posting.
function checkRoles(who, roles, asked) {
  need(Array.isArray(roles), `${who}: roles/names should answer an array, got ${show(roles)}`);
  const byName = new Map();
  for (const r of roles) {
    shape(`${who}: role`, r, { name: 'string', permissions: 'array' });
    need(r.permissions.every(isStr), `${who}: role ${r.name} permissions should be strings`);
    byName.set(r.name, r);
  }
  for (const n of asked) need(byName.has(n), `${who}: role ${n} was asked for and not returned (got ${[...byName.keys()]})`);
  const granted = new Set();
  for (const n of ['system_user', 'team_user', 'channel_user']) for (const p of byName.get(n)?.permissions || []) granted.add(p);
  const wanted = asked.includes('channel_user')
    ? ['create_post', 'create_direct_channel', 'create_group_channel', 'edit_post', 'delete_post', 'add_reaction', 'remove_reaction', 'upload_file']
    : ['create_direct_channel', 'create_group_channel'];
  for (const p of wanted) need(granted.has(p), `${who}: no role among ${asked} grants "${p}" (the app hides the action): ${[...granted].sort()}`);

  if (byName.has('system_user')) need(byName.get('system_user').permissions.includes('create_direct_channel'), `${who}: system_user should grant create_direct_channel (a system-scope permission)`);
}
const rolesToAsk = (user, teamMembers = [], channelMembers = []) => {
  const s = new Set(user.roles.split(' '));
  for (const m of [...teamMembers, ...channelMembers]) for (const r of m.roles.split(' ')) s.add(r);
  s.delete('');
  return [...s];
};

// A PostList: order, posts, and next/prev cursors that are strings ("" at the ends, or "load more" never stops).
function checkPostList(who, list, { atEnds = true } = {}) {
  shape(`${who}: PostList`, list, { order: 'array', posts: 'object', next_post_id: 'string', prev_post_id: 'string' });
  if (atEnds) need(list.next_post_id === '' && list.prev_post_id === '', `${who}: all posts fit, so next_post_id and prev_post_id should be "", got ${show(list.next_post_id)} / ${show(list.prev_post_id)}`);
  for (const id of list.order) {
    const p = list.posts[id];
    need(p, `${who}: order lists ${id}, which is not in posts`);
    shape(`${who}: post`, p, { id: 'string', create_at: 'number', update_at: 'number', edit_at: 'number', delete_at: 'number', user_id: 'string', channel_id: 'string', root_id: 'string', message: 'string', type: 'string', props: 'object', metadata: 'object' });
  }
  for (let i = 1; i < list.order.length; i++) need(list.posts[list.order[i - 1]].create_at >= list.posts[list.order[i]].create_at, `${who}: order should be newest first`);
}

function checkUsers(who, users, mustHave = [], mustNotHave = []) {
  need(Array.isArray(users), `${who}: expected an array of users, got ${show(users)}`);
  for (const u of users) shape(`${who}: user`, u, { id: 'string', username: 'string' });
  const ids = new Set(users.map((u) => u.id));
  for (const u of mustHave) need(ids.has(u.id), `${who}: ${u.username} missing from ${show(users.map((x) => x.username))}`);
  for (const u of mustNotHave) need(!ids.has(u.id), `${who}: ${u.username} should not be in ${show(users.map((x) => x.username))}`);
}

// ------------------------------------------------------------------------------------------------------
// The mobile app's sequences.

const DEVICE_TIMEZONE = 'Europe/Berlin';
const MOBILE_VERSION = '2.30.0';

// systems.ts fetchConfigAndLicense: both in parallel (app/client/rest/general.ts getClientConfigOld, getClientLicenseOld).
async function mobileConfigAndLicense(m) {
  const [config, license] = await Promise.all([m.get('/api/v4/config/client?format=old'), m.get('/api/v4/license/client?format=old')]);
  checkConfig(m.name, config);
  checkLicense(m.name, license);
  return { config, license };
}

// The server-add screen and login: general.ts ping (doFetch with returnDataOnly=false), then
// fetchConfigAndLicense; users.ts login (the Token header becomes the bearer token).
async function mobileConnect(m) {
  const ping = await m.call('GET', `/api/v4/system/ping?time=${Date.now()}`);
  need(ping.headers.get('x-version-id'), `${m.name}: no X-Version-Id header on system/ping`);
  const { config, license } = await mobileConfigAndLicense(m);
  need(m.versionHeaders > 0, `${m.name}: no X-Version-Id header on any answer`);
  log(`${m.name}: ping OK, config Version ${config.Version}, X-Version-Id ${m.serverVersion || '(every answer had Cache-Control)'}, licensed ${license.IsLicensed}, CollapsedThreads "${config.CollapsedThreads}"`);
  return { config, license };
}
async function mobileLogin(m, loginId, password) {
  const r = await m.call('POST', '/api/v4/users/login', { device_id: '', voip_device_id: '', login_id: loginId, password, token: '' }, { 'Cache-Control': 'no-store' });
  const token = r.headers.get('token');
  need(token, `${m.name}: the login answer has no Token header (mobile stores it as the bearer token)`);
  m.token = token;
  shape(`${m.name}: login`, r.data, { id: 'string', username: 'string' });
  return r.data;
}

// websocket/index.ts handleFirstConnect: setExtraSessionProps and autoUpdateTimezone (not awaited by the app).
async function mobileFirstConnect(m, me) {
  // entry/common.ts setExtraSessionProps: server >= 10.1 always; no push token on this device (device_id "").
  await m.put('/api/v4/users/sessions/device', { device_id: '', device_notification_disabled: 'true', mobile_version: MOBILE_VERSION });
  // user.ts autoUpdateTimezone: the device's zone differs from the stored automatic one.
  const tz = me.timezone || {};
  if ((tz.useAutomaticTimezone ?? 'true') === 'true' && tz.automaticTimezone !== DEVICE_TIMEZONE) {
    const patched = await m.put('/api/v4/users/me/patch', { timezone: { useAutomaticTimezone: 'true', automaticTimezone: DEVICE_TIMEZONE, manualTimezone: tz.manualTimezone || '' } });
    checkMe(`${m.name}: users/me/patch`, patched, me.id);
    need(patched.timezone.automaticTimezone === DEVICE_TIMEZONE && patched.timezone.useAutomaticTimezone === 'true', `${m.name}: users/me/patch should answer the new timezone, got ${show(patched.timezone)}`);
    log(`${m.name}: session device props set, timezone patched to ${DEVICE_TIMEZONE}`);
  } else {
    log(`${m.name}: session device props set, timezone already ${DEVICE_TIMEZONE}`);
  }
}

// channel.ts fetchMyChannelsForTeam: channels (include_deleted=false, last_delete_at=since), members and
// categories (category.ts fetchCategories: getCategories('me', team)) in parallel.
async function mobileTeamChannels(m, userId, teamId, since) {
  const [channels, members, categories] = await Promise.all([
    m.get(`/api/v4/users/me/teams/${teamId}/channels?include_deleted=false&last_delete_at=${since}`),
    m.get(`/api/v4/users/me/teams/${teamId}/channels/members`),
    m.get(`/api/v4/users/me/teams/${teamId}/channels/categories`),
  ]);
  checkChannels(`${m.name} team channels`, channels, teamId);
  checkChannelMembers(`${m.name} team channel members`, members, userId);
  sameChannelSets(`${m.name} team ${teamId}`, channels, members);
  checkCategories(`${m.name} categories`, categories, userId, teamId, channels);
  return { channels, members, categories };
}

// entry/common.ts entryRest, then (websocket/index.ts doReconnect) entry/deferred.ts restDeferredAppEntryActions.
async function mobileEntry(m, userId, expectTeamIds, since = 0) {
  // entryRest: config+license and preferences in parallel.
  const [{ config }, prefs] = await Promise.all([mobileConfigAndLicense(m), m.get('/api/v4/users/me/preferences')]);
  checkPreferences(`${m.name} preferences`, prefs, userId);
  // team.ts fetchMyTeams (teams, members) and user.ts fetchMe (me, status 'me') in parallel.
  const [[teams, teamMembers], [me, status]] = await Promise.all([
    Promise.all([m.get('/api/v4/users/me/teams'), m.get('/api/v4/users/me/teams/members')]),
    Promise.all([m.get('/api/v4/users/me'), m.get('/api/v4/users/me/status')]),
  ]);
  checkTeams(m.name, teams, teamMembers, userId, expectTeamIds);
  checkMe(m.name, me, userId);
  shape(`${m.name} status`, status, { user_id: 'string', status: 'string' });
  // The initial team: memberships with delete_at === 0, sorted by display name (helpers/api/team selectDefaultTeam).
  const live = new Set(teamMembers.filter((x) => x.delete_at === 0).map((x) => x.team_id));
  const myTeams = teams.filter((t) => live.has(t.id)).sort((a, b) => a.display_name.localeCompare(b.display_name));
  const perTeam = new Map();
  if (myTeams.length) perTeam.set(myTeams[0].id, await mobileTeamChannels(m, userId, myTeams[0].id, since));
  log(`${m.name}: entry: ${prefs.length} preferences, ${teams.length} teams, initial team ${myTeams[0]?.name ?? '(none)'}`);

  // Deferred (setTimeout in the app): DM/GM profiles (channel.ts fetchMissingDirectChannelsInfo:
  // users?in_channel= per DM, users/group_channels for the GMs), can-join-teams (team.ts updateCanJoinTeams),
  // the other teams' channels, the roles (role.ts fetchRoles, force), the unread channels' posts.
  for (const t of myTeams.slice(1)) perTeam.set(t.id, await mobileTeamChannels(m, userId, t.id, since));
  const channels = new Map();
  const members = new Map();
  for (const { channels: cs, members: ms } of perTeam.values()) {
    for (const c of cs) channels.set(c.id, c);
    for (const x of ms) members.set(x.channel_id, x);
  }
  const dms = [...channels.values()].filter((c) => c.type === 'D');
  const gms = [...channels.values()].filter((c) => c.type === 'G');
  for (const dm of dms) {
    const users = await m.get(`/api/v4/users?in_channel=${dm.id}`);
    const others = dm.name.split('__');
    checkUsers(`${m.name} users?in_channel=<DM>`, users, others.map((id) => ({ id, username: id })));
  }
  if (gms.length) {
    const byChannel = await m.post('/api/v4/users/group_channels', gms.map((g) => g.id));
    need(isObj(byChannel), `${m.name}: users/group_channels should answer {channel_id: [users]}, got ${show(byChannel)}`);
    for (const g of gms) checkUsers(`${m.name} users/group_channels[${g.id}]`, byChannel[g.id] || null);
  }
  const myTeamsAgain = await m.get('/api/v4/users/me/teams');
  need(Array.isArray(myTeamsAgain), `${m.name}: users/me/teams should be an array`);
  const allTeams = await m.get('/api/v4/teams?page=0&per_page=60&include_total_count=false');
  need(Array.isArray(allTeams), `${m.name}: teams?page=0&per_page=60 should be an array, got ${show(allTeams)}`);
  const asked = rolesToAsk(me, teamMembers, [...members.values()]);
  const roles = await m.post('/api/v4/roles/names', asked);
  checkRoles(`${m.name} roles/names`, roles, asked);
  let unread = 0;
  for (const x of members.values()) {
    const c = channels.get(x.channel_id);
    if (c && c.total_msg_count - x.msg_count > 0) {
      unread++;
      checkPostList(`${m.name} posts of unread ${c.name}`, await m.get(`/api/v4/channels/${c.id}/posts?page=0&per_page=60&collapsedThreads=false&collapsedThreadsExtended=false`));
    }
  }
  log(`${m.name}: deferred entry: ${dms.length} DMs, ${gms.length} GMs, ${asked.length} roles (${asked.join(' ')}), ${unread} unread channels fetched`);
  return { config, prefs, teams, teamMembers, me, status, perTeam, channels, members, roles };
}

// ------------------------------------------------------------------------------------------------------
// The web app's sequences.

// actions/views/root.ts loadConfigAndMe, then mattermost-redux users.ts loadMe (only with the MMUSERID cookie).
async function webLoad(w, browser, expectTeamIds) {
  const [config, license] = await Promise.all([web('getClientConfig', w.getClientConfig()), web('getClientLicenseOld', w.getClientLicenseOld())]);
  checkConfig(browser.name, config);
  checkLicense(browser.name, license);
  need(browser.get('MMUSERID'), `${browser.name}: no MMUSERID cookie: the web app does not even load the user`);
  const [, , me, prefs, teams, teamMembers] = await Promise.all([
    web('getClientConfig', w.getClientConfig()),
    web('getClientLicenseOld', w.getClientLicenseOld()),
    web('getMe', w.getMe()),
    web('getMyPreferences', w.getMyPreferences()),
    web('getMyTeams', w.getMyTeams()),
    web('getMyTeamMembers', w.getMyTeamMembers()),
  ]);
  checkMe(browser.name, me, browser.get('MMUSERID'));
  checkPreferences(`${browser.name} preferences`, prefs, me.id);
  checkTeams(browser.name, teams, teamMembers, me.id, expectTeamIds);
  // getMe and getMyTeamMembers load their roles (roles.ts loadRolesIfNeeded: one getRolesByNames).
  const asked = rolesToAsk(me, teamMembers);
  checkRoles(`${browser.name} roles`, await web('getRolesByNames', w.getRolesByNames(asked)), asked);
  const unreads = await web('getMyTeamUnreads', w.getMyTeamUnreads(false));
  need(Array.isArray(unreads), `${browser.name}: users/me/teams/unread should be an array, got ${show(unreads)}`);
  for (const u of unreads) shape(`${browser.name} team unread`, u, { team_id: 'string', msg_count: 'number', mention_count: 'number' });
  // limits.ts getUsersLimits is for admins only; Bob is not one.
  log(`${browser.name}: loadConfigAndMe: ${prefs.length} preferences, ${teams.length} teams, roles ${asked.join(' ')}, Client4 server version ${w.getServerVersion() || '(none)'}`);
  return { config, me, prefs, teams, teamMembers, unreads };
}

// The plugins probe (plugins/index.ts loadPluginsIfNecessary: Client4.getWebappPlugins): may be missing, never 401.
async function pluginsProbe(who, headers) {
  const r = await fetch(`${urlB}/api/v4/plugins/webapp`, { headers });
  if (r.status === 200) {
    const body = await r.json();
    need(Array.isArray(body), `${who}: plugins/webapp should be an array, got ${show(body)}`);
  } else {
    need([404, 501].includes(r.status) || (!headers.Cookie && r.status === 401), `${who}: plugins/webapp answered ${r.status}; expected 200 [] or 404/501`);
  }
  return r.status;
}

// components/team_controller: on mount fetchAllMyTeamsChannelsAndChannelMembersREST (channels.ts:
// getAllChannelsMembers(me, page, 200) until a short page, then getAllTeamsChannels); the team:
// fetchChannelsAndMembers (getMyChannels + getMyChannelMembers); the sidebar: fetchMyCategories
// (getChannelCategories with the user's real id); its DMs and GMs: getProfilesByIds, getProfilesInGroupChannels,
// getStatusesByIds.
async function webTeam(w, browser, me, team) {
  const allMembers = await web('getAllChannelsMembers', w.getAllChannelsMembers(me.id, 0, 200));
  checkChannelMembers(`${browser.name} users/${me.id}/channel_members`, allMembers, me.id);
  const allChannels = await web('getAllTeamsChannels', w.getAllTeamsChannels());
  checkChannels(`${browser.name} users/me/channels`, allChannels);
  sameChannelSets(`${browser.name} all teams`, allChannels, allMembers);
  const [channels, members] = await Promise.all([web('getMyChannels', w.getMyChannels(team.id, false)), web('getMyChannelMembers', w.getMyChannelMembers(team.id))]);
  checkChannels(`${browser.name} team channels`, channels, team.id);
  checkChannelMembers(`${browser.name} team channel members`, members, me.id);
  sameChannelSets(`${browser.name} team ${team.name}`, channels, members);
  const asked = rolesToAsk(me, [], members);
  checkRoles(`${browser.name} channel roles`, await web('getRolesByNames', w.getRolesByNames(asked)), asked);
  const categories = await web('getChannelCategories', w.getChannelCategories(me.id, team.id));
  checkCategories(`${browser.name} categories`, categories, me.id, team.id, channels);
  const dms = channels.filter((c) => c.type === 'D');
  const gms = channels.filter((c) => c.type === 'G');
  const teammates = dms.map((d) => d.name.split('__').find((id) => id !== me.id) || me.id);
  if (teammates.length) checkUsers(`${browser.name} getProfilesByIds (DMs)`, await web('getProfilesByIds', w.getProfilesByIds(teammates)), teammates.map((id) => ({ id, username: id })));
  if (gms.length) {
    const byChannel = await web('getProfilesInGroupChannels', w.getProfilesInGroupChannels(gms.map((g) => g.id)));
    need(isObj(byChannel), `${browser.name}: users/group_channels should be {channel_id: [users]}, got ${show(byChannel)}`);
    for (const g of gms) checkUsers(`${browser.name} group_channels[${g.id}]`, byChannel[g.id] || null);
  }
  if (teammates.length) {
    const statuses = await web('getStatusesByIds', w.getStatusesByIds(teammates));
    need(Array.isArray(statuses), `${browser.name}: users/status/ids should be an array`);
  }
  log(`${browser.name}: team ${team.name}: ${channels.length} channels (${dms.length} DM, ${gms.length} GM), ${categories.categories.length} categories`);
  return { allChannels, allMembers, channels, members, categories };
}

// Opening a channel by URL: the channel route (getChannelByNameAndTeamName, include_deleted), channels.ts
// viewChannel (first the channel_approximate_view_time preference, then viewMyChannel), the posts
// (actions/views/channel.ts: getPostsUnread with the real user id, 30/30), their decoration
// (profiles_statuses_groups.ts: getProfilesByIds, getStatusesByIds, getProfilesByUsernames) and the stats.
async function webOpenChannel(w, browser, me, team, channel, mentionUsernames) {
  const byName = await web('getChannelByNameAndTeamName', w.getChannelByNameAndTeamName(team.name, channel.name, true));
  need(byName.id === channel.id, `${browser.name}: teams/name/${team.name}/channels/name/${channel.name} is ${byName.id}, expected ${channel.id}`);
  await web('savePreferences', w.savePreferences(me.id, [{ user_id: me.id, category: 'channel_approximate_view_time', name: channel.id, value: String(Date.now()) }]));
  const view = await web('viewMyChannel', w.viewMyChannel(channel.id));
  need(view.status === 'OK', `${browser.name}: view should answer status OK, got ${show(view)}`);
  const list = await web('getPostsUnread', w.getPostsUnread(channel.id, me.id));
  checkPostList(`${browser.name} posts/unread of ${channel.name}`, list);
  const authors = [...new Set(Object.values(list.posts).map((p) => p.user_id))];
  if (authors.length) {
    checkUsers(`${browser.name} authors`, await web('getProfilesByIds', w.getProfilesByIds(authors)), authors.map((id) => ({ id, username: id })));
    need(Array.isArray(await web('getStatusesByIds', w.getStatusesByIds(authors))), `${browser.name}: statuses should be an array`);
  }
  if (mentionUsernames.length) {
    const users = await web('getProfilesByUsernames', w.getProfilesByUsernames(mentionUsernames));
    need(Array.isArray(users) && mentionUsernames.every((n) => users.some((u) => u.username === n)), `${browser.name}: users/usernames ${mentionUsernames} answered ${show(users)}`);
  }
  const stats = await web('getChannelStats', w.getChannelStats(channel.id));
  shape(`${browser.name} channel stats`, stats, { channel_id: 'string', member_count: 'number' });
  return { list, stats };
}

// ======================================================================================================
// 1. Connect, as each app does before its login screen.
step(1, 'connect like the apps');
const alice = new Mobile('alice (mobile, A)', urlA);
const aliceOnB = new Mobile('alice (mobile, B)', urlB);
await mobileConnect(alice);
await mobileConnect(aliceOnB);
const bobBrowser = new Browser('bob (web, B)', urlB);
const bob = new BrowserClient4(bobBrowser);
{
  const [config, license] = await Promise.all([web('getClientConfig', bob.getClientConfig()), web('getClientLicenseOld', bob.getClientLicenseOld())]);
  checkConfig(bobBrowser.name, config);
  checkLicense(bobBrowser.name, license);
  log(`${bobBrowser.name}: config and license through Client4 OK (Client4 server version ${bob.getServerVersion() || '(none: Cache-Control)'})`);
}

// ======================================================================================================
// 2. Accounts (the first is the system admin, who creates the others), then the logins.
step(2, 'log in: alice mobile-style through A, bob web-style through B');
const admin = new Mobile('admin (A)', urlA);
const adminUser = await admin.post('/api/v4/users', { username: 'admin', email: 'admin@example.com', password: 'admin-password' });
need(adminUser.roles.includes('system_admin'), `the first user should be system admin (start from an empty database), got roles "${adminUser.roles}"`);
await mobileLogin(admin, 'admin', 'admin-password');
const newUser = (u) => admin.post('/api/v4/users', { username: u, email: `${u}@example.com`, password: `${u}-password` });
const [aliceUser, bobUser, carolUser] = [await newUser('alice'), await newUser('bob'), await newUser('carol')];
for (const u of [aliceUser, bobUser, carolUser]) need(!u.roles.includes('system_admin'), `${u.username} should be a plain user: ${u.roles}`);

const aliceMe = await mobileLogin(alice, 'alice', 'alice-password');
need(aliceMe.id === aliceUser.id, 'alice logged in as someone else');
log(`alice: logged in through A, bearer token from the Token header`);

await web('login', bob.login('bob', 'bob-password'));
for (const name of ['MMAUTHTOKEN', 'MMUSERID', 'MMCSRF']) need(bobBrowser.get(name), `bob: the login set no ${name} cookie (cookies: ${[...bobBrowser.cookies.keys()]})`);
need(bobBrowser.cookies.get('MMAUTHTOKEN').attrs.includes('httponly'), 'bob: MMAUTHTOKEN should be HttpOnly');
need(!bobBrowser.cookies.get('MMCSRF').attrs.includes('httponly'), 'bob: MMCSRF must not be HttpOnly (the web app reads it from document.cookie)');
need(bobBrowser.get('MMUSERID') === bobUser.id, `bob: MMUSERID is ${bobBrowser.get('MMUSERID')}, expected ${bobUser.id}`);
bob.setToken('');  // the session is the cookie only (setAuthHeader is false anyway)
bob.setCSRF(bobBrowser.get('MMCSRF'));  // what getCSRFFromCookie reads from document.cookie in a browser
log(`bob: logged in through B, cookies ${[...bobBrowser.cookies.keys()].join(', ')}`);

// ======================================================================================================
// 3. Entry on an empty account: mobile (loginEntry, the WebSocket, handleFirstConnect, entry, deferred)
// and web (loadConfigAndMe, the WebSocket, plugins).
step(3, 'first entry of both apps (no teams yet)');
await mobileConfigAndLicense(alice);  // entry/login.ts loginEntry, then the WebSocket opens
const aliceSock = new MobileSocket('alice (mobile, node 1)', urlA, alice.token);
const aliceHello = await aliceSock.ready();
await mobileFirstConnect(alice, aliceMe);  // the app has the user the login answered
const firstEntryAt = Date.now();
const aliceEntry1 = await mobileEntry(alice, aliceUser.id, []);
need(aliceEntry1.teams.length === 0 && aliceEntry1.perTeam.size === 0, 'alice should have no team yet');
{
  const emoji = await alice.get('/api/v4/emoji?page=0&per_page=60&sort=');
  need(Array.isArray(emoji) && emoji.length === 0, `GET /emoji should be [], got ${show(emoji)}`);
  const img = await alice.call('GET', `/api/v4/users/${aliceUser.id}/image`);
  need(img.data instanceof Uint8Array && PNG.every((b, i) => img.data[i] === b), `users/${aliceUser.id}/image should be a PNG (${img.type}, ${img.data.length} bytes)`);
}

const bobLoad1 = await webLoad(bob, bobBrowser, []);
const bobSock = webSocket('bob (web, node 2)', bobBrowser);
await waitEvent(bobSock, 'hello', (e) => e.event === 'hello');
const bobHello = bobSock.events[0].data;
log(`sockets: alice's on ${aliceHello.server_hostname}, bob's on ${bobHello.server_hostname}`);
need(aliceHello.server_hostname !== bobHello.server_hostname, 'the two sockets should be on different nodes');
log(`plugins/webapp: ${await pluginsProbe('bob', { Cookie: bobBrowser.cookieHeader(), 'X-Requested-With': 'XMLHttpRequest' })} with the session cookie`);
{
  const anon = await pluginsProbe('anonymous', {});
  if (anon === 401) log('NOTE: plugins/webapp answers 401 without a session; Mattermost serves it without one (APIHandler)');
  const r = await fetch(`${urlB}/api/v4/users/${aliceUser.id}/image`, { headers: { Cookie: bobBrowser.cookieHeader() } });
  const bytes = new Uint8Array(await r.arrayBuffer());
  need(r.status === 200 && PNG.every((b, i) => bytes[i] === b), `bob: users/${aliceUser.id}/image through B with the cookie should be a PNG, got ${r.status} ${r.headers.get('content-type')}`);
}
void bobLoad1;

// ======================================================================================================
// 4. A team, a channel, posts from the other node, unread counts on both nodes, and the view.
step(4, 'team, channel, unread across nodes, view');
const team = await alice.post('/api/v4/teams', { name: 'entry-team', display_name: 'Entry team', type: 'O' });
shape('team', team, { id: 'string', name: 'string' });
for (const u of [bobUser, carolUser]) await alice.post(`/api/v4/teams/${team.id}/members`, { team_id: team.id, user_id: u.id });
const channel = await alice.post('/api/v4/channels', { team_id: team.id, name: 'entry-channel', display_name: 'Entry channel', type: 'O' });
// Bob joins through node 2 (a cookie-authenticated write, with X-CSRF-Token) a moment after alice made the
// channel and added him to the team through node 1: if node 2 reads either from a replica that is still
// behind, the join is refused, and the user tries again; it must succeed within the staleness bound.
for (let tries = 1; ; tries++) {
  try {
    await bob.addToChannel(bobUser.id, channel.id);
    if (tries > 1) log(`NOTE: bob's join through node 2 needed ${tries} tries (a replica behind the master)`);
    break;
  } catch (e) {
    if (![403, 404].includes(e.status_code) || tries >= 50) fail(`web (addToChannel): ${e.status_code} ${e.server_error_id} ${e.message}`);
    await sleep(100);
  }
}
log(`team ${team.id}, channel ${channel.id}; bob joined it, carol is in the team only`);

let mark = aliceSock.events.length;
const bobPosts = [];
for (let i = 1; i <= 3; i++) bobPosts.push(await web('createPost', bob.createPost({ channel_id: channel.id, message: `from node 2 #${i}` })));
for (const p of bobPosts) {
  await waitEvent(aliceSock, `posted "${p.message}"`, (e) => e.event === 'posted' && isStr(e.data?.post) && JSON.parse(e.data.post).id === p.id, mark);
}
log('alice (node 1) got the 3 posts bob made on node 2');

// alice's member is behind the channel's total, and the team is unread, asked through each node. The team's
// msg_count is the sum over its channels of total_msg_count - msg_count (Mattermost's GetTeamsUnreadForUser),
// so after the view it is what the other channels still have unread: 0 unless the server posts there itself.
async function aliceUnread(m, wantUnread) {
  await eventually(`${m.name}: the channel ${wantUnread ? 'unread' : 'read'}`, async () => {
    const [channels, members] = await Promise.all([m.get(`/api/v4/users/me/teams/${team.id}/channels`), m.get(`/api/v4/users/me/teams/${team.id}/channels/members`)]);
    const c = channels.find((x) => x.id === channel.id);
    const mm = members.find((x) => x.channel_id === channel.id);
    if (!c || !mm) return `channel or member missing (${show(channels.map((x) => x.name))})`;
    const behind = c.total_msg_count - mm.msg_count;
    if (wantUnread ? behind < 3 : behind !== 0) return `total_msg_count ${c.total_msg_count}, member msg_count ${mm.msg_count}`;
    let others = 0;
    for (const x of channels) {
      const xm = members.find((y) => y.channel_id === x.id);
      if (x.id !== channel.id && x.team_id === team.id && xm) others += x.total_msg_count - xm.msg_count;
    }
    const unread = await m.get('/api/v4/users/me/teams/unread');
    if (!Array.isArray(unread)) return `teams/unread is not an array: ${show(unread)}`;
    const t = unread.find((x) => x.team_id === team.id);
    if (!t) return `teams/unread has no entry for the team: ${show(unread)}`;
    if (!isNum(t.msg_count) || !isNum(t.mention_count)) return `teams/unread entry without numbers: ${show(t)}`;
    if (wantUnread ? !(t.msg_count >= 3) : t.msg_count !== others) return `teams/unread msg_count ${t.msg_count} (the team's other channels have ${others} unread)`;
    return '';
  });
}
aliceOnB.token = alice.token;  // the same session, asked through node 2
await aliceUnread(alice, true);
await aliceUnread(aliceOnB, true);
log('alice\'s channel is 3 behind and her team unread, on node 1 and on node 2');

// channel.ts markChannelAsRead -> client viewMyChannel: {channel_id, prev_channel_id (undefined: left out), collapsed_threads_supported}.
mark = aliceSock.events.length;
const view = await alice.post('/api/v4/channels/members/me/view', { channel_id: channel.id, collapsed_threads_supported: true });
need(view.status === 'OK' && isObj(view.last_viewed_at_times), `view should answer {status:"OK", last_viewed_at_times:{...}}, got ${show(view)}`);
need(isNum(view.last_viewed_at_times[channel.id]), `last_viewed_at_times should have the viewed channel (it had unreads), got ${show(view.last_viewed_at_times)}`);
// Mattermost (app/channel.go MarkChannelsAsViewed) publishes multiple_channels_viewed {channel_times}; mobile
// also handles the older channel_viewed {channel_id}; the web app only the former.
const viewed = await waitEvent(aliceSock, 'multiple_channels_viewed (or channel_viewed) for the channel',
  (e) => (e.event === 'multiple_channels_viewed' && isObj(e.data?.channel_times) && isNum(e.data.channel_times[channel.id])) || (e.event === 'channel_viewed' && e.data?.channel_id === channel.id), mark);
if (viewed.event === 'channel_viewed') log('NOTE: the view sent channel_viewed; Mattermost sends multiple_channels_viewed {channel_times}, the only one the web app handles');
await aliceUnread(alice, false);
await aliceUnread(aliceOnB, false);
log(`alice viewed the channel: ${viewed.event} on node 1, unread 0 on both nodes`);

// ======================================================================================================
// 5. Preferences between two sessions of alice on two nodes.
step(5, 'preferences across sessions and nodes');
const alice2 = new Mobile('alice (2nd device, B)', urlB);
await mobileConnect(alice2);
await mobileLogin(alice2, 'alice', 'alice-password');
await mobileConfigAndLicense(alice2);
const alice2Sock = new MobileSocket('alice (2nd device, node 2)', urlB, alice2.token);
const alice2Hello = await alice2Sock.ready();
need(alice2Hello.server_hostname === bobHello.server_hostname, `alice's 2nd session should be on node 2 (${bobHello.server_hostname}), is on ${alice2Hello.server_hostname}`);
const pref = { user_id: aliceUser.id, category: 'display_settings', name: 'use_military_time', value: 'true' };
mark = alice2Sock.events.length;
// preference.ts savePreference -> client savePreferences(userId): PUT /users/<the real id>/preferences.
await alice.put(`/api/v4/users/${aliceUser.id}/preferences`, [pref]);
const changed = await waitEvent(alice2Sock, 'preferences_changed', (e) => e.event === 'preferences_changed', mark);
need(isStr(changed.data?.preferences), `preferences_changed data.preferences should be a JSON string, got ${show(changed.data)}`);
need(hasPref(JSON.parse(changed.data.preferences), pref), `preferences_changed should carry the preference: ${changed.data.preferences}`);
await eventually('the preference through node 2', async () => (hasPref(await alice2.get('/api/v4/users/me/preferences'), pref) ? '' : 'not there'));
log('saved on node 1: preferences_changed on node 2, and GET through B has it');
mark = alice2Sock.events.length;
// The app deletes with its real id too (client deletePreferences(userId)); `me` here, which Mattermost also takes.
await alice.post('/api/v4/users/me/preferences/delete', [pref]);
const deleted = await waitEvent(alice2Sock, 'preferences_deleted', (e) => e.event === 'preferences_deleted', mark);
need(isStr(deleted.data?.preferences) && JSON.parse(deleted.data.preferences).some((p) => p.category === pref.category && p.name === pref.name), `preferences_deleted should carry the preference as a JSON string, got ${show(deleted.data)}`);
await eventually('the preference gone through node 2', async () => {
  const prefs = await alice2.get('/api/v4/users/me/preferences');
  return prefs.some((p) => p.category === pref.category && p.name === pref.name) ? 'still there' : '';
});
log('deleted: preferences_deleted on node 2, and it is gone through B');

// ======================================================================================================
// 6. Direct and group messages.
step(6, 'direct and group messages');
mark = bobSock.events.length;
// channel.ts createDirectChannel -> client.createDirectChannel([userId, currentUser.id]).
const dmR = await alice.call('POST', '/api/v4/channels/direct', [bobUser.id, aliceUser.id]);
const dm = dmR.data;
if (dmR.status !== 201) log(`NOTE: channels/direct answered ${dmR.status}; Mattermost answers 201`);
shape('DM', dm, { id: 'string', type: 'string', name: 'string', team_id: 'string' });
need(dm.type === 'D' && dm.name === dmName(aliceUser.id, bobUser.id) && dm.team_id === '', `DM should be type D, name ${dmName(aliceUser.id, bobUser.id)}, team_id "", got ${show(dm)}`);
const dmAgain = await alice.post('/api/v4/channels/direct', [bobUser.id, aliceUser.id]);
need(dmAgain.id === dm.id, `a second channels/direct should answer the same channel, got ${dmAgain.id} vs ${dm.id}`);
// The app then saves direct_channel_show and channel_open_time (savePreference, the real user id).
await alice.put(`/api/v4/users/${aliceUser.id}/preferences`, [
  { user_id: aliceUser.id, category: 'direct_channel_show', name: bobUser.id, value: 'true' },
  { user_id: aliceUser.id, category: 'channel_open_time', name: dm.id, value: String(Date.now()) },
]);
// Both apps read the channel from broadcast.channel_id (mobile handleDirectAddedEvent, web handleDirectAddedEvent).
const added = await waitEvent(bobSock, 'direct_added', (e) => e.event === 'direct_added', mark);
need(added.data?.teammate_id === aliceUser.id, `direct_added data.teammate_id should be alice (${aliceUser.id}), got ${show(added.data)}`);
need(added.broadcast?.channel_id === dm.id, `direct_added broadcast.channel_id should be the DM (both apps read it), got ${show(added.broadcast)}`);
log(`DM ${dm.name}; bob (node 2) got direct_added`);

// The DM in both users' team lists and direct_messages categories.
await eventually('the DM in alice\'s lists', async () => {
  const [chs, cats] = await Promise.all([alice.get(`/api/v4/users/me/teams/${team.id}/channels`), alice.get(`/api/v4/users/me/teams/${team.id}/channels/categories`)]);
  if (!chs.some((c) => c.id === dm.id)) return 'not in users/me/teams/<team>/channels';
  return cats.categories.find((c) => c.type === 'direct_messages')?.channel_ids.includes(dm.id) ? '' : 'not in the direct_messages category';
});
await eventually('the DM in bob\'s lists', async () => {
  const [chs, cats] = await Promise.all([web('getMyChannels', bob.getMyChannels(team.id)), web('getChannelCategories', bob.getChannelCategories(bobUser.id, team.id))]);
  if (!chs.some((c) => c.id === dm.id)) return 'not in bob\'s channels of the team';
  return cats.categories.find((c) => c.type === 'direct_messages')?.channel_ids.includes(dm.id) ? '' : 'not in bob\'s direct_messages category';
});

// Messages both ways: mobile createPost's body (post.ts createPost), web Client4.createPost.
mark = bobSock.events.length;
const pending = `${aliceUser.id}:${Date.now()}`;
const now = Date.now();
const aliceDmPost = await alice.post('/api/v4/posts', { channel_id: dm.id, message: 'hi bob, from node 1', root_id: '', user_id: aliceUser.id, props: {}, file_ids: [], id: '', pending_post_id: pending, create_at: 0, update_at: now, delete_at: 0 });
need(aliceDmPost.pending_post_id === pending, `the created post should echo pending_post_id ${pending}, got ${show(aliceDmPost.pending_post_id)}`);
const bobGot = await waitEvent(bobSock, 'alice\'s DM post', (e) => e.event === 'posted' && isStr(e.data?.post) && JSON.parse(e.data.post).id === aliceDmPost.id, mark);
need(JSON.parse(bobGot.data.post).message === 'hi bob, from node 1', 'bob got the wrong message');
mark = aliceSock.events.length;
const bobDmPost = await web('createPost', bob.createPost({ channel_id: dm.id, message: 'hi alice, from node 2' }));
await waitEvent(aliceSock, 'bob\'s DM reply', (e) => e.event === 'posted' && isStr(e.data?.post) && JSON.parse(e.data.post).id === bobDmPost.id, mark);
log('DM posts crossed the nodes both ways');

// channel.ts createGroupChannel -> client.createGroupChannel(userIds): the others only; the server adds the caller.
mark = bobSock.events.length;
const gmR = await alice.call('POST', '/api/v4/channels/group', [bobUser.id, carolUser.id]);
const gm = gmR.data;
if (gmR.status !== 201) log(`NOTE: channels/group answered ${gmR.status}; Mattermost answers 201`);
need(gm.type === 'G' && gm.team_id === '', `GM should be type G with team_id "", got ${show(gm)}`);
const gAdded = await waitEvent(bobSock, 'group_added', (e) => e.event === 'group_added', mark);
need(isStr(gAdded.data?.teammate_ids), `group_added data.teammate_ids should be a JSON string, got ${show(gAdded.data)}`);
const mates = JSON.parse(gAdded.data.teammate_ids);
for (const u of [aliceUser, bobUser, carolUser]) need(mates.includes(u.id), `group_added teammate_ids should include ${u.username}: ${gAdded.data.teammate_ids}`);
need(gAdded.broadcast?.channel_id === gm.id, `group_added broadcast.channel_id should be the GM, got ${show(gAdded.broadcast)}`);
await eventually('the GM in both users\' lists', async () => {
  const [a, b] = await Promise.all([alice.get(`/api/v4/users/me/teams/${team.id}/channels`), web('getMyChannels', bob.getMyChannels(team.id))]);
  return a.some((c) => c.id === gm.id) && b.some((c) => c.id === gm.id) ? '' : 'missing';
});
log(`GM ${gm.id} with alice, bob and carol; bob got group_added`);

// ======================================================================================================
// 3 (again). Entry with data: alice's app re-syncs on node 1 (doReconnect), her second device enters on
// node 2, bob's browser reloads on node 2; then each opens the channel.
step('3b', 'entry with teams, channels, DMs and GMs');
const aliceEntry2 = await mobileEntry(alice, aliceUser.id, [team.id], firstEntryAt);
const mustHave = [channel.id, dm.id, gm.id];
for (const e of [aliceEntry2]) for (const id of mustHave) need(e.channels.has(id), `alice's entry misses channel ${id}`);
let alice2Me;
await eventually('the timezone patched through node 1, read through node 2', async () => {
  alice2Me = await alice2.get('/api/v4/users/me');
  return alice2Me.timezone?.automaticTimezone === DEVICE_TIMEZONE ? '' : `timezone ${show(alice2Me.timezone)}`;
});
await mobileFirstConnect(alice2, alice2Me);
const alice2Entry = await mobileEntry(alice2, aliceUser.id, [team.id]);
for (const id of mustHave) need(alice2Entry.channels.has(id), `alice's 2nd device (node 2) misses channel ${id}`);

// Opening the channel on the 2nd device (post.ts fetchPostsForChannel, channel.ts markChannelAsRead,
// fetchChannelStats, fetchMyChannel's member 'me'; post authors and @mentions: users/ids, users/usernames).
{
  const m = alice2;
  const list = await m.get(`/api/v4/channels/${channel.id}/posts?page=0&per_page=60&collapsedThreads=false&collapsedThreadsExtended=false`);
  checkPostList(`${m.name} channel posts`, list);
  for (const p of bobPosts) need(list.order.includes(p.id), `${m.name}: the channel's posts miss "${p.message}"`);
  const v = await m.post('/api/v4/channels/members/me/view', { channel_id: channel.id, collapsed_threads_supported: true });
  need(v.status === 'OK', `${m.name}: view should answer status OK, got ${show(v)}`);
  const stats = await m.get(`/api/v4/channels/${channel.id}/stats`);
  shape(`${m.name} stats`, stats, { channel_id: 'string', member_count: 'number' });
  need(stats.member_count === 2, `${m.name}: the channel has alice and bob, member_count is ${stats.member_count}`);
  const mine = await m.get(`/api/v4/channels/${channel.id}/members/me`);
  checkChannelMembers(`${m.name} members/me`, [mine], aliceUser.id);
  need(mine.channel_id === channel.id, `${m.name}: members/me is for ${mine.channel_id}`);
  checkUsers(`${m.name} users/ids`, await m.post('/api/v4/users/ids', [bobUser.id]), [bobUser]);
  checkUsers(`${m.name} users/usernames`, await m.post('/api/v4/users/usernames', ['bob', 'carol']), [bobUser, carolUser]);
  // The add-members screen (user.ts fetchProfilesNotInChannel) and the DM picker (searchProfiles; searchUsers
  // -> autocompleteUsers with in_team, in_channel, name).
  checkUsers(`${m.name} users?in_team&not_in_channel`, await m.get(`/api/v4/users?in_team=${team.id}&not_in_channel=${channel.id}&page=0&per_page=60`), [carolUser], [aliceUser, bobUser]);
  checkUsers(`${m.name} users?in_channel`, await m.get(`/api/v4/users?in_channel=${channel.id}`), [aliceUser, bobUser], [carolUser]);
  checkUsers(`${m.name} users/search`, await m.post('/api/v4/users/search', { term: 'car', team_id: team.id }), [carolUser], [bobUser]);
  const auto = await m.get(`/api/v4/users/autocomplete?in_team=${team.id}&in_channel=${channel.id}&name=bo&limit=25`);
  need(isObj(auto) && Array.isArray(auto.users), `${m.name}: users/autocomplete should answer {users:[...], out_of_channel:[...]}, got ${show(auto)}`);
  checkUsers(`${m.name} autocomplete users`, auto.users, [bobUser]);
  const autoOut = await m.get(`/api/v4/users/autocomplete?in_team=${team.id}&in_channel=${channel.id}&name=car&limit=25`);
  need(isObj(autoOut) && Array.isArray(autoOut.users) && Array.isArray(autoOut.out_of_channel), `${m.name}: users/autocomplete with in_channel should answer {users, out_of_channel}, got ${show(autoOut)}`);
  checkUsers(`${m.name} autocomplete out_of_channel`, autoOut.out_of_channel, [carolUser]);
  checkUsers(`${m.name} autocomplete users (in channel)`, autoOut.users, [], [carolUser]);
  log(`${m.name}: opened ${channel.name}: posts, view, stats, member, profiles, search and autocomplete`);
}

const bobLoad2 = await webLoad(bob, bobBrowser, [team.id]);
const bobTeam = await webTeam(bob, bobBrowser, bobLoad2.me, team);
for (const id of mustHave) need(bobTeam.channels.some((c) => c.id === id) && bobTeam.allChannels.some((c) => c.id === id), `bob's lists miss channel ${id}`);
const bobOpen = await webOpenChannel(bob, bobBrowser, bobLoad2.me, team, channel, ['alice']);
for (const p of bobPosts) need(bobOpen.list.order.includes(p.id), `bob: posts/unread misses "${p.message}"`);
need(bobOpen.stats.member_count === 2, `bob: the channel's member_count is ${bobOpen.stats.member_count}, expected 2`);
log('bob: reload, team, sidebar and the channel by URL');

// ======================================================================================================
// 7. Bad input: Mattermost's answer and error body, and nothing changed.
step(7, 'bad input');
const prefsOf = async (m) => JSON.stringify((await m.get('/api/v4/users/me/preferences')).map((p) => `${p.category}/${p.name}=${p.value}`).sort());
{
  errorShape('GET /channels/notanid/members/me', await alice.raw('GET', '/api/v4/channels/notanid/members/me'), [400]);

  const before = await prefsOf(alice);
  errorShape('a preference category of 33 characters', await alice.raw('PUT', '/api/v4/users/me/preferences', [{ user_id: aliceUser.id, category: 'c'.repeat(33), name: 'x', value: 'y' }]), [400]);
  need(await prefsOf(alice) === before, 'a rejected preference changed alice\'s preferences');

  // Mattermost (model.Preference.IsValid) checks only the length (1..32), not the case.
  const upper = { user_id: aliceUser.id, category: 'Display_Settings', name: 'use_military_time', value: 'true' };
  const ru = await alice.raw('PUT', '/api/v4/users/me/preferences', [upper]);
  if (ru.status === 200) {
    log('NOTE: an upper-case preference category was accepted, as Mattermost accepts it');
    await alice.post('/api/v4/users/me/preferences/delete', [upper]);
  } else {
    errorShape('an upper-case preference category', ru, [400]);
    need(await prefsOf(alice) === before, 'a rejected preference changed alice\'s preferences');
  }

  const bobBefore = JSON.stringify(await web('getMyPreferences', bob.getMyPreferences()));
  errorShape('a preference for another user', await alice.raw('PUT', '/api/v4/users/me/preferences', [{ user_id: bobUser.id, category: 'display_settings', name: 'use_military_time', value: 'true' }]), [403]);
  need(JSON.stringify(await web('getMyPreferences', bob.getMyPreferences())) === bobBefore, 'a refused preference changed bob\'s preferences');
  need(await prefsOf(alice) === before, 'a refused preference changed alice\'s preferences');

  const big = [];
  for (let i = 0; big.length * 100 < 1_200_000; i++) big.push({ user_id: aliceUser.id, category: 'oversized_test', name: `n${i}`, value: 'v'.repeat(50) });
  const rb = await alice.raw('PUT', '/api/v4/users/me/preferences', big);
  errorShape(`a ${big.length}-preference body over 1 MB`, rb, [400, 413]);
  need(await prefsOf(alice) === before, 'an oversized body changed alice\'s preferences');
  log(`bad ids 400, long category 400, upper-case category ${ru.status}, another user's preference 403, oversized body ${rb.status}`);
}
{
  const channelsBefore = (await alice.get('/api/v4/users/me/channels')).map((c) => c.id).sort().join();
  const ghost = 'qz' + Array.from({ length: 24 }, () => 'abcdefghijklmnopqrstuvwxyz0123456789'[Math.floor(Math.random() * 36)]).join('');
  // app/channel.go createDirectChannel: an unknown user is 400 api.channel.create_direct_channel.invalid_user.app_error.
  errorShape('a DM with a user that does not exist', await alice.raw('POST', '/api/v4/channels/direct', [ghost, aliceUser.id]), [400, 404]);
  errorShape('a DM with one id', await alice.raw('POST', '/api/v4/channels/direct', [aliceUser.id]), [400]);
  errorShape('a DM with a malformed id', await alice.raw('POST', '/api/v4/channels/direct', [aliceUser.id, 'notanid']), [400]);
  need((await alice.get('/api/v4/users/me/channels')).map((c) => c.id).sort().join() === channelsBefore, 'a refused DM created a channel');

  // A DM with oneself is allowed (app/channel.go: "we allow a user to create a direct channel with themselves").
  const selfR = await alice.call('POST', '/api/v4/channels/direct', [aliceUser.id, aliceUser.id]);
  const self = selfR.data;
  need(self.type === 'D' && self.name === `${aliceUser.id}__${aliceUser.id}` && self.team_id === '', `a self-DM should be type D named ${aliceUser.id}__${aliceUser.id}, got ${show(self)}`);
  need((await alice.post('/api/v4/channels/direct', [aliceUser.id, aliceUser.id])).id === self.id, 'a second self-DM should be the same channel');
  const selfStats = await alice.get(`/api/v4/channels/${self.id}/stats`);
  need(selfStats.member_count === 1, `a self-DM has one member, member_count is ${selfStats.member_count}`);
  await eventually('the self-DM in alice\'s channels and direct_messages category', async () => {
    const [all, cats] = await Promise.all([alice.get('/api/v4/users/me/channels'), alice.get(`/api/v4/users/me/teams/${team.id}/channels/categories`)]);
    if (!all.some((c) => c.id === self.id)) return 'not in users/me/channels';
    return cats.categories.find((c) => c.type === 'direct_messages')?.channel_ids.includes(self.id) ? '' : 'not in direct_messages';
  });
  log(`DM with a ghost refused, malformed DMs 400, self-DM ${self.id} (HTTP ${selfR.status})`);
}
{
  errorShape('GET /api/v4/nonexistent with a session', await alice.raw('GET', '/api/v4/nonexistent'), [404]);
  const anon = new Mobile('anonymous', urlB);
  errorShape('GET /api/v4/nonexistent without a session', await anon.raw('GET', '/api/v4/nonexistent'), [404]);
  log('unknown route: 404, with or without a session');
}

// ======================================================================================================
// 8. A conversation: a mention, a reply, an edit, reactions, a pin and a delete, each made by one app
// through one node and seen by the other app's socket through the other node.
step(8, 'a conversation: mention, reply, edit, reactions, pin, delete');
{
  // Alice (mobile, node 1) asks Bob a question (app/actions/remote/post.ts createPost).
  const fromA = aliceSock.events.length, fromB = bobSock.events.length;
  const question = await alice.post('/api/v4/posts', { channel_id: channel.id, message: 'a question for @bob', pending_post_id: `${aliceUser.id}:conv1`, root_id: '' });
  const posted = await waitEvent(bobSock, 'posted (the question)', (e) => e.event === 'posted' && JSON.parse(e.data.post).id === question.id, fromB);
  need(posted.data.sender_name === '@alice', `posted.sender_name should be "@alice", got ${show(posted.data.sender_name)}`);
  need(isStr(posted.data.mentions) && JSON.parse(posted.data.mentions).includes(bobUser.id), `posted.mentions should name bob, got ${show(posted.data.mentions)}`);
  await eventually('bob\'s mention_count in the channel', async () => {
    const m = await web('getMyChannelMember', bob.getMyChannelMember(channel.id));
    return m.mention_count >= 1 ? '' : `mention_count ${m.mention_count}`;
  });
  // Bob (web) replies in the thread (mattermost-redux actions/posts.ts createPost with root_id).
  const reply = await web('createPost', bob.createPost({ channel_id: channel.id, message: 'an answer', root_id: question.id, pending_post_id: `${bobUser.id}:conv2` }));
  await waitEvent(aliceSock, 'posted (the reply)', (e) => e.event === 'posted' && JSON.parse(e.data.post).root_id === question.id, fromA);
  await eventually('the thread with its reply (a read replica may lag)', async () => {
    const thread = await alice.get(`/api/v4/posts/${question.id}/thread?skipFetchThreads=false&collapsedThreads=false&collapsedThreadsExtended=false&direction=down&perPage=60`);
    return thread.order.length === 2 && thread.posts[question.id]?.reply_count === 1 ? '' : `thread ${show(thread)}`;
  });
  // Alice edits her question (mobile editPost -> PATCH-like PUT /posts/{id}/patch).
  const edited = await alice.put(`/api/v4/posts/${question.id}/patch`, { message: 'a better question for @bob' });
  need(edited.message === 'a better question for @bob' && edited.edit_at > 0, `the edit should answer the new message with edit_at, got ${show(edited)}`);
  const pe = await waitEvent(bobSock, 'post_edited', (e) => e.event === 'post_edited' && JSON.parse(e.data.post).id === question.id, fromB);
  need(JSON.parse(pe.data.post).message === 'a better question for @bob', `post_edited should carry the new message, got ${show(pe.data.post)}`);
  // Bob reacts, Alice sees it; Bob takes it back (Client4 addReaction / removeReaction, with his real id).
  await web('addReaction', bob.addReaction(bobUser.id, question.id, 'thumbsup'));
  const ra = await waitEvent(aliceSock, 'reaction_added', (e) => e.event === 'reaction_added', fromA);
  const reaction = JSON.parse(ra.data.reaction);
  need(reaction.user_id === bobUser.id && reaction.post_id === question.id && reaction.emoji_name === 'thumbsup', `reaction_added should carry bob's thumbsup, got ${show(reaction)}`);
  await eventually('the post\'s metadata.reactions (a read replica may lag)', async () => {
    const p = await alice.get(`/api/v4/posts/${question.id}`);
    return p.metadata?.reactions?.length === 1 && p.has_reactions === true ? '' : `metadata ${show(p.metadata)}`;
  });
  await web('removeReaction', bob.removeReaction(bobUser.id, question.id, 'thumbsup'));
  await waitEvent(aliceSock, 'reaction_removed', (e) => e.event === 'reaction_removed', fromA);
  // Pinned by Bob, seen by Alice; then Alice deletes her reply-bearing question: one post_deleted.
  await web('pinPost', bob.pinPost(question.id));
  await waitEvent(aliceSock, 'post_edited (pinned)', (e) => e.event === 'post_edited' && JSON.parse(e.data.post).is_pinned === true, fromA);
  const del = await alice.raw('DELETE', `/api/v4/posts/${question.id}`);
  need(del.status === 200 && del.data?.status === 'OK', `DELETE /posts/{id} should answer {status:"OK"}, got ${del.status} ${show(del.data)}`);
  const pd = await waitEvent(bobSock, 'post_deleted', (e) => e.event === 'post_deleted' && JSON.parse(e.data.post).id === question.id, fromB);
  need(JSON.parse(pd.data.post).delete_at > 0, `post_deleted's post should have delete_at, got ${show(pd.data.post)}`);
  for (const [what, id] of [['the deleted question', question.id], ['the reply of the deleted question', reply.id]]) {
    await eventually(`${what} gone (a read replica may lag)`, async () => ((await alice.raw('GET', `/api/v4/posts/${id}`)).status === 404 ? '' : 'still readable'));
    errorShape(what, await alice.raw('GET', `/api/v4/posts/${id}`), [404]);
  }
  // Bad input: Bob edits Alice's post, a reaction with a bad emoji name, another's reaction removed.
  const other = await alice.post('/api/v4/posts', { channel_id: channel.id, message: 'mine', pending_post_id: `${aliceUser.id}:conv3`, root_id: '' });
  let refused = null;
  try {
    await bob.patchPost({ id: other.id, message: 'his' });
  } catch (e) {
    refused = e;
  }
  need(refused?.status_code === 403, `bob editing alice's post (Client4 patchPost) should be refused with 403, got ${show(refused?.status_code ?? 'success')}`);
  errorShape('an emoji name with a space', await alice.raw('POST', '/api/v4/reactions', { user_id: aliceUser.id, post_id: other.id, emoji_name: 'two words' }), [400]);
  errorShape('a reaction as someone else', await alice.raw('POST', '/api/v4/reactions', { user_id: bobUser.id, post_id: other.id, emoji_name: 'smile' }), [403]);
  await eventually('alice\'s post, unchanged', async () => ((await alice.raw('GET', `/api/v4/posts/${other.id}`)).data?.message === 'mine' ? '' : 'not readable as "mine"'));
  log('mention counted, reply in the thread, edit, reaction added and removed, pin, delete with its thread, bad input refused');
}

// Every event on every socket came in sequence (the mobile socket checks as they come; WebSocketClient too).
for (const s of [bobSock]) {
  for (let i = 1; i < s.events.length; i++) need(s.events[i].seq === s.events[i - 1].seq + 1, `${s.name}: a gap in event seq: ${s.events[i - 1].seq} -> ${s.events[i].seq}`);
}
log(`events: alice ${aliceSock.events.length}, alice's 2nd device ${alice2Sock.events.length}, bob ${bobSock.events.length}, each in sequence from hello`);
log('PASS: both apps\' entry sequences, unread and views, preferences, DMs, GMs, a conversation and bad input held across two nodes');
finishing = true;
aliceSock.close();
alice2Sock.close();
bobSock.ws.close();
clearTimeout(deadline);
process.exit(0);
