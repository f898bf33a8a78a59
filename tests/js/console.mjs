// The HA console (GET /admin/ha) in headless Chromium, driven over WebDriver (chromedriver), with no npm
// packages: Node's global fetch speaks the W3C WebDriver protocol. Run by tests/console_test.cpp:
//
//   node tests/js/console.mjs <page-url> <login-id> <password> <pid-to-kill> <node-id> <screenshot.png> [webdriver-url]
//
// It logs in with a wrong password first (the page must say so), then for real; waits until the nodes
// table shows three rows, all green; SIGKILLs <pid-to-kill>; measures how long until the row of <node-id>
// (data-node, the node's gossip address) shows red (at most 5 s) and prints `red after N ms`; takes a
// screenshot. Exit 0 on success; any failure prints why (and saves a screenshot of the page as it was
// under the system's temporary directory) and exits 1. The WebDriver URL is the 7th argument, else
// $CHROMEDRIVER_URL, else http://127.0.0.1:9515. Every wait is bounded.
import { mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';

const ELEMENT = 'element-6066-11e4-a52e-4f735466cecf'; // the W3C key of an element reference

export const CHROME_ARGS = [
  '--headless=new', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--disable-background-networking',
  '--disable-component-update', '--window-size=1280,900',
];

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// A minimal W3C WebDriver client: one session, the commands this test needs.
export class WebDriver {
  constructor(url) {
    this.url = url.replace(/\/+$/, '');
    this.session = null;
  }

  // A command of the session (path under /session/<id>).
  command(method, path, body, timeoutMs) {
    return this.request(method, `/session/${this.session}${path}`, body, timeoutMs);
  }

  async request(method, path, body, timeoutMs = 30_000) {
    const target = `${this.url}${path}`;
    let res, text;
    try {
      res = await fetch(target, {
        method,
        headers: body === undefined ? {} : { 'Content-Type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(timeoutMs),
      });
      text = await res.text();
    } catch (e) {
      throw new Error(`WebDriver ${method} ${path}: ${e.name === 'TimeoutError' ? `no answer in ${timeoutMs} ms` : e.message}`);
    }
    let json;
    try {
      json = JSON.parse(text);
    } catch {
      throw new Error(`WebDriver ${method} ${path}: HTTP ${res.status}, not JSON: ${text.slice(0, 200)}`);
    }
    const v = json.value;
    if (!res.ok || (v && typeof v === 'object' && 'error' in v && v.error))
      throw new Error(`WebDriver ${method} ${path}: ${v?.error || res.status}: ${String(v?.message || text).split('\n')[0]}`);
    return v;
  }

  async start(binary = '/usr/bin/chromium', args = CHROME_ARGS) {
    const v = await this.request('POST', '/session', {
      capabilities: {
        alwaysMatch: {
          browserName: 'chrome',
          'goog:chromeOptions': { binary, args },
          'goog:loggingPrefs': { browser: 'ALL' },
        },
      },
    }, 60_000);
    this.session = v.sessionId;
    return v;
  }
  async quit() {
    if (!this.session) return;
    try {
      await this.command('DELETE', '', undefined, 15_000);
    } finally {
      this.session = null;
    }
  }
  navigate(url) { return this.command('POST', '/url', { url }); }
  async find(css) { return (await this.command('POST', '/element', { using: 'css selector', value: css }))[ELEMENT]; }
  clear(id) { return this.command('POST', `/element/${id}/clear`, {}); }
  sendKeys(id, text) { return this.command('POST', `/element/${id}/value`, { text }); }
  click(id) { return this.command('POST', `/element/${id}/click`, {}); }
  execute(script, ...args) { return this.command('POST', '/execute/sync', { script, args }); }
  async screenshot(path) {
    const png = Buffer.from(await this.command('GET', '/screenshot'), 'base64');
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, png);
    return png.length;
  }
  // The browser's console (chromedriver's extension; empty when it is not available).
  async browserLog() {
    try {
      return await this.command('POST', '/se/log', { type: 'browser' }, 5_000);
    } catch {
      return [];
    }
  }
}

// Polls pred every 100 ms until it gives a truthy value (returned) or ms pass (throws, saying what was awaited).
export async function until(what, pred, ms) {
  const end = Date.now() + ms;
  let last;
  for (;;) {
    last = await pred();
    if (last) return last;
    if (Date.now() >= end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(100);
  }
}

// What the page shows, for the checks and for failure messages.
const PAGE_STATE = `
  if (!document.getElementById('login') || !document.getElementById('console'))
    return { notConsole: true, title: document.title, body: (document.body?.innerText || '').slice(0, 300) };
  const text = (id) => { const e = document.getElementById(id); return e && !e.hidden ? e.textContent.trim() : null; };
  return {
    login: !document.getElementById('login').hidden,
    console: !document.getElementById('console').hidden,
    loginError: text('login-error'),
    summary: text('summary'),
    banner: text('banner'),
    rows: [...document.querySelectorAll('#nodes tbody tr')].map((tr) => ({
      node: tr.getAttribute('data-node'), status: tr.getAttribute('data-status'), state: tr.getAttribute('data-state'),
      reason: tr.querySelector('td.reason')?.textContent || '' })),
  };`;

async function main(argv) {
  if (argv.length < 6) {
    console.error('usage: node console.mjs <page-url> <login-id> <password> <pid-to-kill> <node-id> <screenshot.png> [webdriver-url]');
    return 2;
  }
  const [pageUrl, loginId, password, pidText, nodeId, shotPath] = argv;
  const pid = Number(pidText);
  if (!Number.isInteger(pid) || pid <= 1) throw new Error(`not a process id: ${pidText}`);
  const wd = new WebDriver(argv[6] || process.env.CHROMEDRIVER_URL || 'http://127.0.0.1:9515');
  const t0 = Date.now();
  const log = (...a) => console.log(`[${((Date.now() - t0) / 1000).toFixed(3)}s]`, ...a);
  const state = () => wd.execute(PAGE_STATE);

  const caps = await wd.start();
  log(`session ${wd.session}: ${caps.capabilities?.browserName} ${caps.capabilities?.browserVersion}`);
  try {
    await wd.navigate(pageUrl);
    let page;
    await until('the login form', async () => {
      page = await state(); // (navigating waits for the page's load event: the markup is all there)
      if (page.notConsole) throw new Error(`${pageUrl} is not the HA console: "${page.title}" ${JSON.stringify(page.body)}`);
      return page.login;
    }, 10_000).catch((e) => { throw page?.notConsole ? e : new Error(`${e.message}; the page shows ${JSON.stringify(page)}`); });

    const login = async (pw) => {
      const id = await wd.find('#login-id');
      const pass = await wd.find('#password');
      await wd.clear(id);
      await wd.sendKeys(id, loginId);
      await wd.clear(pass);
      await wd.sendKeys(pass, pw);
      await wd.click(await wd.find('#login-submit'));
    };

    // A wrong password: the form stays, with the server's reason.
    await login(`wrong-${password}`);
    const wrong = await until('an error message after a wrong password',
      async () => { const s = await state(); return s.login && s.loginError ? s : null; }, 10_000);
    if (wrong.console) throw new Error('the console opened after a wrong password');
    log(`wrong password: the page says "${wrong.loginError}"`);

    // The real login: the console, then three nodes, all green.
    await login(password);
    await until('the console after logging in', async () => {
      const s = await state(); // (submitting hid the first error: one shown now is this login's)
      if (s.login && s.loginError) throw new Error(`the login was refused: ${s.loginError}`);
      return s.console;
    }, 10_000);
    log('logged in');
    const green = await until('three rows, all green', async () => {
      const s = await state();
      return s.rows.length === 3 && s.rows.every((r) => r.status === 'green') ? s : null;
    }, 30_000).catch(async (e) => { throw new Error(`${e.message}; the page shows ${JSON.stringify(await state())}`); });
    log(`${green.summary}: ${green.rows.map((r) => `${r.node} ${r.status}/${r.state}`).join(', ')}`);
    if (!green.rows.some((r) => r.node === nodeId))
      throw new Error(`no row for ${nodeId}: the rows are ${green.rows.map((r) => r.node).join(', ')}`);

    // SIGKILL the node; its row must turn red within 5 s.
    process.kill(pid, 'SIGKILL');
    const killedAt = Date.now();
    log(`SIGKILL to ${pid} (${nodeId})`);
    let last;
    const red = await until(`the row of ${nodeId} to show red`, async () => {
      last = await state();
      const row = last.rows.find((r) => r.node === nodeId);
      if (!row) throw new Error(`the row of ${nodeId} disappeared instead of turning red: ${JSON.stringify(last)}`);
      return row.status === 'red' ? row : null;
    }, 5_000).catch((e) => { throw /disappeared/.test(e.message) ? e : new Error(`${e.message}; the page shows ${JSON.stringify(last)}`); });
    const took = Date.now() - killedAt;
    const after = await state();
    console.log(`red after ${took} ms`);
    log(`${after.summary}; ${nodeId}: ${red.state}, "${red.reason}"`);
    if (!/^1 of 3 nodes red$/.test(after.summary || '')) throw new Error(`the header says "${after.summary}", not "1 of 3 nodes red"`);

    const bytes = await wd.screenshot(shotPath);
    log(`screenshot ${shotPath} (${bytes} bytes)`);
    return 0;
  } catch (e) {
    const shot = join(tmpdir(), `ha-console-failure-${process.pid}.png`);
    try {
      await wd.screenshot(shot);
      console.error(`screenshot of the page at the failure: ${shot}`);
    } catch {}
    for (const entry of await wd.browserLog()) console.error(`browser: ${entry.level} ${entry.message}`);
    throw e;
  } finally {
    await wd.quit().catch((e) => console.error(`could not end the WebDriver session: ${e.message}`));
  }
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (e) => {
      console.error(`FAIL: ${e.message}`);
      process.exit(1);
    },
  );
}
