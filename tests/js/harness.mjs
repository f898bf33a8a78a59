// What the scripts that drive the official client share (tests/js/*.mjs): the timeline log, failing with a
// reason (exit 1, after which tests/client_nginx_test.cpp shows the nodes' logs), a bounded wait, and a
// Client4 for a URL. The official client needs a global WebSocket (Node has none): this module sets it.
import WebSocket from 'ws';
import client from '@mattermost/client';

globalThis.WebSocket = WebSocket;
export const { Client4, WebSocketClient } = client;

const t0 = Date.now();
export const log = (...args) => console.log(`[${((Date.now() - t0) / 1000).toFixed(3)}s]`, ...args);
export const fail = (why) => {
  console.error(`FAIL: ${why}`);
  process.exit(1);
};
process.on('unhandledRejection', (e) => fail(`unhandled: ${e?.stack || e}`));

// Resolves when pred() holds (checked every 20 ms), fails after ms.
export async function until(what, pred, ms = 10_000) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await pred()) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  fail(`timed out after ${ms} ms waiting for: ${what}`);
}

export function makeClient(url) {
  const c = new Client4();
  c.setUrl(url);
  return c;
}
