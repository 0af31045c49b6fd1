// Drives the `tether serve` demo page in headless Chromium (see run.sh).
// Usage: node test.mjs BASE_URL OTHER_ORIGIN_URL SCREENSHOT_DIR [SSE_URL]
// SSE_URL: a server whose /pubsub route has `sse = true`, history and a
// short `sse_max_lifetime`, publish token "browser-test".
import { chromium } from "playwright-core";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

const [base, evil, shots, sseBase] = process.argv.slice(2);
if (!base || !evil || !shots) {
  console.error("usage: node test.mjs BASE_URL OTHER_ORIGIN_URL SCREENSHOT_DIR");
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

const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), "tether-chromium-"));
const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath: "/usr/bin/chromium",
  headless: true,
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
  viewport: { width: 1280, height: 900 },
});
context.setDefaultTimeout(15000);

const stateOf = (page, which) => page.getAttribute(`#${which}-state`, "data-ready-state");
const waitOpen = (page, which) =>
  page.waitForSelector(`#${which}-state[data-ready-state="1"]`, { timeout: 15000 });
const logHas = (page, sel, text) =>
  page.waitForFunction(
    ([s, t]) => document.querySelector(s).textContent.includes(t),
    [sel, text],
    { timeout: 15000 },
  );

try {
  const alice = await context.newPage();
  const bob = await context.newPage();

  await check("demo page loads and all three sockets reach OPEN", async () => {
    const resp = await alice.goto(`${base}/?name=alice&room=browser`);
    assert(resp.status() === 200, `status ${resp.status()}`);
    await Promise.all(["chat", "ticker", "echo"].map((w) => waitOpen(alice, w)));
    await bob.goto(`${base}/?name=bob&room=browser`);
    await Promise.all(["chat", "ticker", "echo"].map((w) => waitOpen(bob, w)));
  });

  await check("readyState is shown on the page", async () => {
    const text = await alice.textContent("#chat-state");
    assert(text.trim() === "OPEN (1)", `badge says ${JSON.stringify(text)}`);
    assert((await stateOf(bob, "ticker")) === "1", "ticker badge not OPEN");
  });

  await check("chat messages go from one tab to the other, both ways", async () => {
    await alice.fill("#chat-input", "hello from alice");
    await alice.click("#chat-send");
    await logHas(bob, "#chat-log", "alice: hello from alice");
    await bob.fill("#chat-input", "hi alice, bob here");
    await bob.click("#chat-send");
    await logHas(alice, "#chat-log", "bob: hi alice, bob here");
    await alice.screenshot({ path: `${shots}/chat-alice.png`, fullPage: true });
    await bob.screenshot({ path: `${shots}/chat-bob.png`, fullPage: true });
  });

  await check("a page that joins later shows the room's recent messages", async () => {
    const carol = await context.newPage();
    await carol.goto(`${base}/?name=carol&room=browser`);
    await waitOpen(carol, "chat");
    await logHas(carol, "#chat-log", "alice: hello from alice");
    await logHas(carol, "#chat-log", "bob: hi alice, bob here");
    await carol.close();
  });

  await check("after a reconnect the chat resumes without a gap or a repeat", async () => {
    // Alice's chat socket drops; Bob talks while it reconnects.
    await alice.evaluate(() => chat.ws.close(4000, "test drop"));
    await bob.fill("#chat-input", "while alice was away");
    await bob.click("#chat-send");
    await logHas(alice, "#events", "chat: closed 4000");
    await waitOpen(alice, "chat");
    await logHas(alice, "#chat-log", "bob: while alice was away");
    await bob.fill("#chat-input", "and after");
    await bob.click("#chat-send");
    await logHas(alice, "#chat-log", "bob: and after");
    const text = await alice.textContent("#chat-log");
    for (const line of ["bob: while alice was away", "bob: hi alice, bob here"]) {
      const n = text.split(line).length - 1;
      assert(n === 1, `"${line}" shown ${n} times`);
    }
    assert(!text.includes("messages were missed"), "the resume was not recovered");
    await alice.screenshot({ path: `${shots}/chat-resumed.png`, fullPage: true });
  });

  await check("the ticker receives server-pushed prices every second", async () => {
    await alice.waitForFunction(() => Number(document.querySelector("#ticker-count").textContent) >= 2, null, {
      timeout: 15000,
    });
    const rows = await alice.$$eval("#ticker-table tr", (trs) => trs.map((t) => t.textContent));
    assert(rows.some((r) => r.includes("ACME")), `rows: ${rows.join(" | ")}`);
    await alice.screenshot({ path: `${shots}/ticker.png`, fullPage: true });
  });

  await check("echo answers", async () => {
    await alice.fill("#echo-input", "echo me");
    await alice.click("#echo-form button");
    await logHas(alice, "#echo-log", "echoed: echo me");
  });

  await check("a close code and reason are shown, then the page reconnects", async () => {
    // 2 MiB is over the 1 MiB default limit: the server closes with 1009.
    await alice.evaluate(() => echo.ws.send("x".repeat(2 * 1024 * 1024)));
    await logHas(alice, "#events", "echo: closed 1009");
    await alice.waitForSelector("#echo-meta:has-text('reconnecting')", { timeout: 15000 }).catch(() => {});
    await waitOpen(alice, "echo");
    await alice.screenshot({ path: `${shots}/close-and-reconnect.png`, fullPage: true });
  });

  await check("a page on another origin cannot connect (403)", async () => {
    const page = await context.newPage();
    const target = base.replace(/^http/, "ws") + "/chat/browser";
    await page.goto(`${evil}/index.html?target=${encodeURIComponent(target)}`);
    const result = await page.waitForFunction(() => window.result, null, { timeout: 15000 }).then((h) => h.jsonValue());
    await page.screenshot({ path: `${shots}/cross-origin-refused.png`, fullPage: true });
    assert(!result.opened, "the cross-origin socket opened");
    assert(result.error && result.code === 1006, `result ${JSON.stringify(result)}`);
    const metrics = await (await fetch(`${base}/metrics`)).text();
    const line = metrics.split("\n").find((l) => l.startsWith('tether_handshakes_rejected_total{reason="origin"}'));
    assert(line && Number(line.split(" ")[1]) >= 1, "server did not count an origin rejection");
  });

  await check("the same-origin chat still works after the refused attempt", async () => {
    await alice.fill("#chat-input", "still here");
    await alice.click("#chat-send");
    await logHas(bob, "#chat-log", "alice: still here");
  });

  if (sseBase) {
    await check("an EventSource cut off by the server resumes by itself with no gap or repeat", async () => {
      const page = await context.newPage();
      await page.goto(`${sseBase}/`);
      await page.evaluate(() => {
        window.sse = { got: [], opens: 0, resets: 0, errors: 0 };
        const es = new EventSource("/pubsub/events?channel=seq");
        es.onopen = () => { window.sse.opens += 1; };
        es.onerror = () => { window.sse.errors += 1; };
        es.onmessage = (e) => { window.sse.got.push(JSON.parse(e.data).data); };
        es.addEventListener("reset", () => { window.sse.resets += 1; });
        window.es = es;
      });
      await page.waitForFunction(() => window.sse.opens >= 1, null, { timeout: 15000 });
      // 120 messages over about 6 s: several streams end (sse_max_lifetime
      // 1.5 s) and some messages are published while the page reconnects.
      const N = 120;
      for (let i = 1; i <= N; i++) {
        const r = await fetch(`${sseBase}/api/publish`, {
          method: "POST",
          headers: { Authorization: "Bearer browser-test", "Content-Type": "application/json" },
          body: JSON.stringify({ channel: "seq", data: i }),
        });
        assert(r.status === 200, `publish ${i}: ${r.status}`);
        await new Promise((res) => setTimeout(res, 50));
      }
      await page.waitForFunction((n) => window.sse.got.length >= n, N, { timeout: 15000 });
      const s = await page.evaluate(() => window.sse);
      const want = Array.from({ length: N }, (_, i) => i + 1);
      assert(JSON.stringify(s.got) === JSON.stringify(want), `got ${JSON.stringify(s.got)}`);
      assert(s.opens >= 3, `only ${s.opens} opens: the server did not cut the stream off`);
      assert(s.resets === 0, `${s.resets} reset events`);
      await page.close();
    });

    await check("an EventSource answered 204 stops instead of retrying", async () => {
      const page = await context.newPage();
      await page.goto(`${sseBase}/`);
      const state = await page.evaluate(
        () =>
          new Promise((resolve) => {
            const es = new EventSource("/pubsub/events");
            es.onerror = () => setTimeout(() => resolve(es.readyState), 1000);
          }),
      );
      assert(state === 2, `readyState ${state}, not CLOSED`);
      await page.close();
    });
  }
} finally {
  await context.close();
  fs.rmSync(userDataDir, { recursive: true, force: true });
}

console.log(`browser: ${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
