#!/usr/bin/env node
// Echo server on Node `ws` with permessage-deflate on, for
// scripts/bench-deflate-peers.sh. Usage: node node_echo.js PORT
// `ws` defaults (zlib level 6, memLevel 8, 15-bit windows, 10 concurrent
// zlib jobs) except the threshold: 64 bytes, as `tether serve`'s min_size.
'use strict';
const { WebSocketServer } = require('ws');
const port = Number(process.argv[2] || 0);
const wss = new WebSocketServer({
  host: '127.0.0.1',
  port,
  maxPayload: 16 << 20,
  perMessageDeflate: { threshold: 64 },
});
wss.on('listening', () => console.log(`listening on ws://127.0.0.1:${wss.address().port}`));
wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  ws.on('error', () => {});
});
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(0));
