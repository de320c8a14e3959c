// Node 20 + ws peer: reads the same Redis stream with a minimal RESP client
// (XREAD BLOCK 1000 COUNT 100) and sends each entry's `data` to every open client.
// Usage: node node_ws.cjs PORT REDIS_PORT STREAM   (NODE_PATH must find `ws`)
"use strict";
const net = require("net");
const { WebSocketServer } = require("ws");

const [port, redisPort, stream] = process.argv.slice(2);
const wss = new WebSocketServer({
  host: "127.0.0.1",
  port: Number(port),
  perMessageDeflate: false,
});

// A client that goes away mid-send raises an error on its socket; without a
// listener Node would end the process.
wss.on("connection", (client) => client.on("error", () => {}));

function command(args) {
  const parts = [Buffer.from(`*${args.length}\r\n`)];
  for (const arg of args) {
    const bytes = Buffer.from(String(arg));
    parts.push(Buffer.from(`$${bytes.length}\r\n`), bytes, Buffer.from("\r\n"));
  }
  return Buffer.concat(parts);
}

// Parse one RESP2 value at `pos`; return [value, next] or null when incomplete.
function parse(buf, pos) {
  const eol = buf.indexOf("\r\n", pos);
  if (eol < 0) return null;
  const kind = buf[pos];
  const line = buf.toString("latin1", pos + 1, eol);
  if (kind === 0x2b || kind === 0x2d || kind === 0x3a) return [line, eol + 2];
  const size = Number(line);
  if (kind === 0x24) {
    if (size < 0) return [null, eol + 2];
    if (buf.length < eol + 2 + size + 2) return null;
    return [buf.subarray(eol + 2, eol + 2 + size), eol + 4 + size];
  }
  if (size < 0) return [null, eol + 2];
  const items = [];
  let next = eol + 2;
  for (let i = 0; i < size; i++) {
    const result = parse(buf, next);
    if (result === null) return null;
    items.push(result[0]);
    next = result[1];
  }
  return [items, next];
}

const redis = net.connect(Number(redisPort), "127.0.0.1");
let pending = Buffer.alloc(0);
let position = "$";

function read() {
  redis.write(command(["XREAD", "COUNT", 100, "BLOCK", 1000, "STREAMS", stream, position]));
}

function broadcast(entries) {
  for (const [id, fields] of entries) {
    position = id.toString();
    let payload = null;
    for (let i = 0; i < fields.length; i += 2) {
      if (fields[i].toString() === "data") payload = fields[i + 1];
    }
    if (payload === null) continue;
    for (const client of wss.clients) {
      if (client.readyState === 1) client.send(payload, { binary: false });
    }
  }
}

redis.on("data", (chunk) => {
  pending = pending.length ? Buffer.concat([pending, chunk]) : chunk;
  const result = parse(pending, 0);
  if (result === null) return;
  pending = pending.subarray(result[1]);
  const reply = result[0];
  if (reply !== null) broadcast(reply[0][1]);
  read();
});
redis.on("connect", read);
redis.on("error", (error) => {
  console.error(`redis: ${error.message}`);
  process.exit(1);
});
