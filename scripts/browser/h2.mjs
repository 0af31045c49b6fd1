// The demo page over HTTP/2 in headless Chromium (see run.sh): a `tether
// serve --http2` TLS listener with a private CA's certificate. The page
// must load over h2 and its WebSockets run as streams of that same
// connection (RFC 8441), shown by the server's metrics; an EventSource
// rides the same connection too.
// Usage: node h2.mjs HTTPS_URL SPKI_HASH SCREENSHOT_DIR
import { chromium } from "playwright-core";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

const [base, spki, shots] = process.argv.slice(2);
if (!base || !spki || !shots) {
  console.error("usage: node h2.mjs HTTPS_URL SPKI_HASH SCREENSHOT_DIR");
  process.exit(2);
}

let passed = 0;
let failed = 0;
async function check(name, fn) {
  try {
    await fn();
    passed += 1;
    console.log(`ok    ${name}`);
  } catch (e) {
    failed += 1;
    console.log(`FAIL  ${name}: ${e && e.message ? e.message.split("\n")[0] : e}`);
  }
}
function assert(cond, msg) {
  if (!cond) throw new Error(msg);
}

// One metric's value from a /metrics text (0 if absent).
function metric(text, series) {
  const line = text.split("\n").find((l) => l.startsWith(series + " "));
  return line ? Number(line.slice(series.length + 1)) : 0;
}

const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), "tether-chromium-h2-"));
const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath: "/usr/bin/chromium",
  headless: true,
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    // Trust the test certificate by its key, as a real certificate is
    // trusted: certificate errors are not ignored wholesale.
    `--ignore-certificate-errors-spki-list=${spki}`,
  ],
  viewport: { width: 1280, height: 900 },
});
context.setDefaultTimeout(15000);

const waitOpen = (page, which) =>
  page.waitForSelector(`#${which}-state[data-ready-state="1"]`, { timeout: 15000 });
const metrics = (page) =>
  page.evaluate(async () => (await fetch("/metrics", { cache: "no-store" })).text());

try {
  const page = await context.newPage();

  await check("the demo page loads over h2 and its three sockets reach OPEN", async () => {
    const resp = await page.goto(`${base}/?name=carol&room=h2`);
    assert(resp.status() === 200, `status ${resp.status()}`);
    const protocol = await page.evaluate(
      () => performance.getEntriesByType("navigation")[0].nextHopProtocol,
    );
    assert(protocol === "h2", `the page came over ${protocol}`);
    await Promise.all(["chat", "ticker", "echo"].map((w) => waitOpen(page, w)));
  });

  await check("the page's sockets are extended CONNECT streams sharing its h2 connection", async () => {
    const text = await metrics(page);
    const h2 = metric(text, 'tether_handshakes_total{version="2"}');
    const h11 = metric(text, 'tether_handshakes_total{version="1.1"}');
    const connections = metric(text, "tether_http2_connections_total");
    const tcp = metric(text, "tether_tcp_accepted_total");
    assert(h2 >= 3 && h11 === 0, `handshakes: ${h2} over h2, ${h11} over HTTP/1.1`);
    // Chromium may open a spare connection it never uses (a preconnect);
    // three sockets on at most two connections share one at least.
    assert(connections <= 2 && tcp <= 2 && h2 > connections,
      `${h2} sockets on ${connections} h2 connections, ${tcp} TCP connections`);
  });

  await check("echo answers over h2", async () => {
    await page.fill("#echo-input", "echo over h2");
    await page.click("#echo-form button");
    await page.waitForFunction(
      () => document.querySelector("#echo-log").textContent.includes("echoed: echo over h2"),
    );
  });

  await check("an EventSource receives a published message over h2, on no new connection", async () => {
    const before = metric(await metrics(page), "tether_tcp_accepted_total");
    const got = await page.evaluate(async () => {
      const es = new EventSource("/pubsub/events?channel=h2news");
      const opened = new Promise((ok) => es.addEventListener("subscribed", ok, { once: true }));
      await opened;
      const message = new Promise((ok) => { es.onmessage = (e) => ok(e.data); });
      const published = await fetch("/api/publish", {
        method: "POST",
        headers: { authorization: "Bearer browser-test", "content-type": "application/json" },
        body: JSON.stringify({ channel: "h2news", data: "over one connection" }),
      });
      const data = await message;
      es.close();
      return { status: published.status, data };
    });
    assert(got.status === 200, `publish answered ${got.status}`);
    assert(got.data.includes("over one connection"), `event data ${got.data}`);
    const text = await metrics(page);
    const tcp = metric(text, "tether_tcp_accepted_total");
    assert(tcp === before, `the event stream and the publish opened ${tcp - before} new connection(s)`);
  });

  await page.screenshot({ path: `${shots}/h2-demo.png`, fullPage: true });
} finally {
  await context.close();
  fs.rmSync(userDataDir, { recursive: true, force: true });
}

console.log(`browser h2: ${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
