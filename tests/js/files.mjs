// Files with Mattermost's official JavaScript client (@mattermost/client, unchanged) against two Chorus nodes
// behind NGINX, on the file store tests/client_nginx_test.cpp configured (a directory both nodes share, or
// S3):
//
//   node files.mjs <url-A> <url-B> <pid of node 1>
//
// Alice works through A (node 1), Bob through B (node 2). Alice uploads an image and a text file
// (Client4.uploadFile, multipart) and posts them; Bob's socket on node 2 gets the post with its file_ids,
// reads metadata.files, downloads both byte for byte and the image's thumbnail and preview (JPEG); an edit,
// a reaction, a reply and a delete of that post reach Bob's socket. Bad uploads are refused with
// Mattermost's errors. Then a 20 MB upload goes to node 1 and node 1 is SIGKILLed while it handles it: the
// upload either succeeded (and the file is whole through node 2) or failed; tests/client_nginx_test.cpp then
// checks that every file the database lists is whole in the store. Exit code 0 when everything held; each
// step is printed; every wait is bounded.
import { Client4, WebSocketClient, log, fail, until, makeClient } from './harness.mjs';

const [urlA, urlB, node1Pid] = process.argv.slice(2);
if (!urlA || !urlB || !node1Pid) {
  console.error('usage: node files.mjs <url-A> <url-B> <pid of node 1>');
  process.exit(2);
}
const deadline = setTimeout(() => fail('the whole scenario took more than 80 s'), 80_000);
const need = (cond, why) => {
  if (!cond) fail(why);
};

function makeSocket(url, c) {
  const ws = new WebSocketClient({ minWebSocketRetryTime: 300, reconnectJitterRange: 200, maxWebSocketRetryTime: 2000 });
  const s = { ws, events: [], hellos: 0 };
  ws.addMessageListener((msg) => {
    if (msg.event === 'hello') s.hellos++;
    if (msg.event) s.events.push(msg);
  });
  ws.initialize(url.replace(/^http/, 'ws') + '/api/v4/websocket', c.getToken());
  return s;
}

// A 64x48 PNG, drawn here: a gradient, stored with zlib's "stored" blocks (no compression library needed).
function png(w, h) {
  const crcTable = Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  const crc = (buf) => {
    let c = 0xffffffff;
    for (const b of buf) c = crcTable[(c ^ b) & 0xff] ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  };
  const chunk = (type, data) => {
    const out = Buffer.alloc(12 + data.length);
    out.writeUInt32BE(data.length, 0);
    out.write(type, 4, 'ascii');
    data.copy(out, 8);
    out.writeUInt32BE(crc(out.subarray(4, 8 + data.length)), 8 + data.length);
    return out;
  };
  const raw = Buffer.alloc((w * 3 + 1) * h);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) raw.set([(x * 4) & 255, (y * 5) & 255, 128], y * (w * 3 + 1) + 1 + x * 3);
  // zlib: header, stored blocks of at most 65535 bytes, adler32.
  const blocks = [];
  for (let i = 0; i < raw.length; i += 65535) {
    const part = raw.subarray(i, Math.min(i + 65535, raw.length));
    const head = Buffer.from([i + 65535 >= raw.length ? 1 : 0, part.length & 255, part.length >> 8, ~part.length & 255, (~part.length >> 8) & 255]);
    blocks.push(head, part);
  }
  let a = 1, b = 0;
  for (const byte of raw) {
    a = (a + byte) % 65521;
    b = (b + a) % 65521;
  }
  const adler = Buffer.alloc(4);
  adler.writeUInt32BE(((b << 16) | a) >>> 0);
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr.set([8, 2, 0, 0, 0], 8);
  return Buffer.concat([Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]), chunk('IHDR', ihdr),
    chunk('IDAT', Buffer.concat([Buffer.from([0x78, 0x01]), ...blocks, adler])), chunk('IEND', Buffer.alloc(0))]);
}
const isJpeg = (buf) => buf.length > 4 && buf[0] === 0xff && buf[1] === 0xd8 && buf[buf.length - 2] === 0xff && buf[buf.length - 1] === 0xd9;

async function download(url, token) {
  const r = await fetch(url, { headers: { Authorization: `Bearer ${token}` } });
  return { status: r.status, type: r.headers.get('content-type'), body: Buffer.from(await r.arrayBuffer()) };
}

// --- 1. Users, team, channel; sockets on both nodes.
const alice = makeClient(urlA);
const bob = makeClient(urlB);
await alice.createUser({ username: 'alice', email: 'alice@example.com', password: 'alice-password' });
await alice.login('alice', 'alice-password');
const aliceUser = await alice.getMe();
const bobUser = await alice.createUser({ username: 'bob', email: 'bob@example.com', password: 'bob-password' });
await bob.login('bob', 'bob-password');
const team = await alice.createTeam({ name: 'files-team', display_name: 'Files', type: 'O' });
await alice.addToTeam(team.id, bobUser.id);
const channel = await alice.createChannel({ team_id: team.id, name: 'files', display_name: 'Files', type: 'O' });
await alice.addToChannel(bobUser.id, channel.id);
const sb = makeSocket(urlB, bob);
await until('bob\'s socket gets its hello', () => sb.hellos === 1);
log('users, team, channel; bob\'s socket on node 2');

// --- 2. Alice uploads an image and a text file through node 1 (the web app's uploadFile: multipart).
const image = png(64, 48);
const text = Buffer.from('plain words, and <script>alert(1)</script> as text\n');
const form = new FormData();
form.append('channel_id', channel.id);
form.append('client_ids', 'client-1');
form.append('files', new Blob([image], { type: 'image/png' }), 'gradient.png');
form.append('client_ids', 'client-2');
form.append('files', new Blob([text], { type: 'text/plain' }), 'notes.txt');
const uploaded = await alice.uploadFile(form);
need(uploaded.file_infos?.length === 2, `uploadFile should answer two file_infos, got ${JSON.stringify(uploaded)}`);
need(JSON.stringify(uploaded.client_ids) === JSON.stringify(['client-1', 'client-2']), `client_ids should come back in order, got ${JSON.stringify(uploaded.client_ids)}`);
const [img, txt] = uploaded.file_infos;
need(img.mime_type === 'image/png' && img.width === 64 && img.height === 48 && img.has_preview_image === true && img.size === image.length,
  `the image's info is wrong: ${JSON.stringify(img)}`);
need(txt.mime_type === 'text/plain' && txt.has_preview_image === false, `the text file's info is wrong: ${JSON.stringify(txt)}`);
log(`uploaded ${img.name} (${img.size} bytes, ${img.width}x${img.height}) and ${txt.name}`);

// --- 3. Alice posts them; Bob's socket on node 2 gets the post with the files.
const post = await alice.createPost({ channel_id: channel.id, message: 'two files', file_ids: [img.id, txt.id] });
await until('bob receives the post with its files', () => sb.events.some((e) => e.event === 'posted' && JSON.parse(e.data.post).id === post.id));
const ev = JSON.parse(sb.events.find((e) => e.event === 'posted' && JSON.parse(e.data.post).id === post.id).data.post);
need(JSON.stringify(ev.file_ids) === JSON.stringify([img.id, txt.id]), `the posted event's file_ids: ${JSON.stringify(ev.file_ids)}`);
let seen;
await until('bob reads the post with metadata.files (a read replica may lag)', async () => {
  seen = await bob.getPost(post.id);
  return seen.metadata?.files?.length === 2;
});
need(seen.metadata.files.every((f) => f.post_id === post.id), `metadata.files should name the post: ${JSON.stringify(seen.metadata.files)}`);
log('bob got the post and its metadata.files through node 2');

// --- 4. Bob downloads the file, thumbnail and preview through node 2.
const got = await download(bob.getFileUrl(img.id, Date.now()), bob.getToken());
need(got.status === 200 && got.body.equals(image), `the image should download byte for byte (status ${got.status}, ${got.body.length} bytes)`);
const gotText = await download(bob.getFileUrl(txt.id, Date.now()), bob.getToken());
need(gotText.status === 200 && gotText.body.equals(text), `the text file should download byte for byte (status ${gotText.status})`);
for (const [what, url] of [['thumbnail', bob.getFileThumbnailUrl(img.id, Date.now())], ['preview', bob.getFilePreviewUrl(img.id, Date.now())]]) {
  const t = await download(url, bob.getToken());
  need(t.status === 200 && t.type === 'image/jpeg' && isJpeg(t.body), `the ${what} should be a JPEG (status ${t.status}, ${t.type}, ${t.body.length} bytes)`);
}
const infos = await bob.getFileInfosForPost(post.id);
need(infos.length === 2 && infos[0].id === img.id, `getFileInfosForPost: ${JSON.stringify(infos)}`);
log('bob downloaded the image and the text byte for byte, and a JPEG thumbnail and preview');

// --- 5. An edit, a reaction, a reply and a delete of the post reach Bob.
await alice.patchPost({ id: post.id, message: 'two files, edited' });
await alice.addReaction(aliceUser.id, post.id, 'tada');
const reply = await alice.createPost({ channel_id: channel.id, message: 'a reply', root_id: post.id });
await alice.deletePost(post.id);
await until('bob gets the edit, the reaction, the reply and the delete', () => {
  const names = sb.events.map((e) => e.event);
  return names.includes('post_edited') && names.includes('reaction_added') && names.includes('post_deleted') &&
    sb.events.some((e) => e.event === 'posted' && JSON.parse(e.data.post).id === reply.id);
});
const edited = JSON.parse(sb.events.find((e) => e.event === 'post_edited').data.post);
need(edited.message === 'two files, edited' && edited.metadata?.files?.length === 2, `post_edited should carry the new message and the files: ${JSON.stringify(edited)}`);
const gone = await download(bob.getFileUrl(img.id, Date.now()), bob.getToken());
need(gone.status === 404, `a deleted post's file should be 404, got ${gone.status}`);
log('edit, reaction, reply and delete reached bob; the deleted post\'s file is gone');

// --- 6. Bad uploads: Mattermost's errors, nothing stored.
const bad = async (what, body, headers, statuses) => {
  const r = await fetch(`${urlA}/api/v4/files`, { method: 'POST', body, headers: { Authorization: `Bearer ${alice.getToken()}`, ...headers } });
  const j = await r.json().catch(() => ({}));
  need(statuses.includes(r.status) && typeof j.id === 'string' && j.status_code === r.status, `${what}: expected ${statuses} with Mattermost's error body, got ${r.status} ${JSON.stringify(j)}`);
  log(`${what}: ${r.status} ${j.id}`);
};
await bad('multipart without a boundary', 'x', { 'Content-Type': 'multipart/form-data' }, [400]);
await bad('a truncated multipart body', `--b\r\nContent-Disposition: form-data; name="files"; filename="a.txt"\r\n\r\nabc`, { 'Content-Type': 'multipart/form-data; boundary=b' }, [400]);
const other = new FormData();
other.append('channel_id', 'notachannelid');
other.append('files', new Blob(['x']), 'x.txt');
await bad('an upload to no channel', other, {}, [400]);

// --- 7. Node 1 dies while it handles a 20 MB upload.
const big = Buffer.alloc(20 << 20, 7);
const bigForm = new FormData();
bigForm.append('channel_id', channel.id);
bigForm.append('files', new Blob([big]), 'big.bin');
const pending = fetch(`${urlA}/api/v4/files`, { method: 'POST', body: bigForm, headers: { Authorization: `Bearer ${alice.getToken()}` } })
  .then(async (r) => ({ status: r.status, body: await r.text() }), (e) => ({ status: 0, body: String(e) }));
await new Promise((r) => setTimeout(r, 150));
process.kill(Number(node1Pid), 'SIGKILL');
log(`node 1 (pid ${node1Pid}) killed during the 20 MB upload`);
const outcome = await pending;
log(`the upload answered ${outcome.status} ${outcome.body.slice(0, 200)}`);
if (outcome.status === 201) {
  const f = JSON.parse(outcome.body).file_infos[0];
  const whole = await download(`${urlB}/api/v4/files/${f.id}`, alice.getToken());
  need(whole.status === 200 && whole.body.equals(big), `an acknowledged upload should be whole through node 2 (status ${whole.status}, ${whole.body.length} bytes)`);
  log('the upload was acknowledged before the kill, and is whole through node 2');
}
log('PASS: uploads, posts with files, downloads, thumbnails and previews, conversation events and a node death mid-upload held');
clearTimeout(deadline);
sb.ws.close();
process.exit(0);
