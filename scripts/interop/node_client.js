#!/usr/bin/env node
// Node `ws` client checks against a Tether server's echo endpoint.
// Usage: node node_client.js ws://127.0.0.1:PORT/echo
// Prints one `PASS name` / `FAIL name: why` line per check; exit 1 on failure.
'use strict';
const WebSocket = require('ws');
const url = process.argv[2];
let failed = 0;
const report = (name, ok, why) => {
  console.log(ok ? `PASS node-ws client: ${name}` : `FAIL node-ws client: ${name}: ${why}`);
  if (!ok) failed++;
};

function open() {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { maxPayload: 16 << 20 });
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
}
const next = (ws, event) => new Promise((resolve) => ws.once(event, (...a) => resolve(a)));
const timeout = (p, ms, what) =>
  Promise.race([p, new Promise((_, rej) => setTimeout(() => rej(new Error(`timeout: ${what}`)), ms))]);

async function check(name, fn) {
  try {
    await timeout(fn(), 10000, name);
  } catch (e) {
    report(name, false, e.message);
  }
}

(async () => {
  const ws = await open();
  await check('text echo', async () => {
    ws.send('héllo tether');
    const [data, isBinary] = await next(ws, 'message');
    report('text echo', !isBinary && data.toString() === 'héllo tether', `got ${data}`);
  });
  await check('binary echo', async () => {
    const payload = Buffer.from([0, 1, 2, 254, 255]);
    ws.send(payload);
    const [data, isBinary] = await next(ws, 'message');
    report('binary echo', isBinary && Buffer.compare(data, payload) === 0, `got ${data.toString('hex')}`);
  });
  await check('1 MiB message', async () => {
    const big = Buffer.alloc(1 << 20, 'x');
    ws.send(big, { binary: true });
    const [data] = await next(ws, 'message');
    report('1 MiB message', data.length === big.length && Buffer.compare(data, big) === 0, `got ${data.length} bytes`);
  });
  await check('ping', async () => {
    ws.ping('probe');
    const [data] = await next(ws, 'pong');
    report('ping', data.toString() === 'probe', `pong carried ${data}`);
  });
  await check('close 1000', async () => {
    ws.close(1000, 'done');
    const [code] = await next(ws, 'close');
    report('close 1000', code === 1000, `close code ${code}`);
  });
  await check('close 4000', async () => {
    const ws2 = await open();
    ws2.close(4000, 'custom');
    const [code] = await next(ws2, 'close');
    report('close 4000', code === 4000, `close code ${code}`);
  });
  process.exit(failed ? 1 : 0);
})().catch((e) => {
  report('connect', false, e.message);
  process.exit(1);
});
