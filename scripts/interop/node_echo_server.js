#!/usr/bin/env node
// Echo server on the Node `ws` library, for scripts/interop/run.sh.
// Usage: node node_echo_server.js [PORT]   (0 = pick a free port)
// Prints `listening on ws://127.0.0.1:PORT` once ready; echoes text and
// binary messages unchanged; `ws` answers pings and echoes Close codes.
'use strict';
const { WebSocketServer } = require('ws');
const port = Number(process.argv[2] || 0);
const wss = new WebSocketServer({ host: '127.0.0.1', port, maxPayload: 16 << 20 });
wss.on('listening', () => {
  console.log(`listening on ws://127.0.0.1:${wss.address().port}`);
});
wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  ws.on('error', () => {});
});
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(0));
