#!/usr/bin/env node
/*
 * postel capture's web UI in real headless Chromium.
 *
 * Starts `postel capture` on free loopback ports with a temporary data
 * directory, sends real mail with Python's smtplib, and drives Debian's
 * Chromium (/usr/bin/chromium) through playwright-core (no browser
 * download) to check, as a user would see it:
 *   - a message appears in the list live, without a reload, and the
 *     unread count (badge and tab title) follows;
 *   - the HTML tab shows the body in a sandboxed iframe where the
 *     message's scripts do not run; the text tab shows the plain part;
 *   - an attachment downloads with the exact bytes that were sent;
 *   - searching narrows the list; deleting (one, selected, all) removes
 *     rows, also live when another client deletes through the API;
 *   - dark mode and a narrow screen render.
 * Screenshots go to the output directory (printed at the start).
 *
 *   node capture_ui.test.js [--out DIR] [--results FILE]
 *   POSTEL_BIN   the binary under test (default: ../../postel)
 *   CHROMIUM     the browser (default: /usr/bin/chromium)
 *
 * Prints one line per check and "N passed, N failed"; exits 1 when a
 * check failed or the run could not complete.
 */
"use strict";
const { chromium } = require("playwright-core");
const { spawn, spawnSync } = require("child_process");
const fs = require("fs");
const net = require("net");
const os = require("os");
const path = require("path");

const ROOT = path.resolve(__dirname, "..", "..");
const BIN = process.env.POSTEL_BIN || path.join(ROOT, "postel");
const CHROME = process.env.CHROMIUM || "/usr/bin/chromium";

function argValue(name) {
  const i = process.argv.indexOf(name);
  return i > 0 && i + 1 < process.argv.length ? process.argv[i + 1] : null;
}
function defaultOut() {
  /* next to the binary when it lives in a build dir (build-asan/, ...) */
  const dir = path.dirname(path.resolve(BIN));
  const base = /^build/.test(path.basename(dir)) ? dir : path.join(ROOT, "build");
  return path.join(base, "test-output", "browser");
}
const OUT = path.resolve(argValue("--out") || defaultOut());
const RESULTS = argValue("--results") || path.join(OUT, "results.json");

/* ---- results ---- */
const results = [];
function check(name, ok, detail) {
  results.push({ name: name, ok: !!ok, detail: detail === undefined ? "" : String(detail) });
  console.log((ok ? "ok   " : "FAIL ") + name + (detail !== undefined && !ok ? ": " + detail : ""));
  return !!ok;
}
const shots = [];
async function shot(page, name) {
  const file = path.join(OUT, name + ".png");
  await page.screenshot({ path: file, fullPage: false });
  shots.push(file);
  console.log("     screenshot " + file);
}

/* ---- postel capture ---- */
function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const p = s.address().port;
      s.close(() => resolve(p));
    });
  });
}
function accepts(port) {
  return new Promise((resolve) => {
    const c = net.connect(port, "127.0.0.1");
    c.on("connect", () => { c.destroy(); resolve(true); });
    c.on("error", () => resolve(false));
  });
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function startCapture(tmp) {
  const smtp = await freePort();
  const http = await freePort();
  const log = fs.openSync(path.join(tmp, "capture.log"), "a");
  const proc = spawn(BIN, ["capture", "--smtp", "127.0.0.1:" + smtp, "--http", "127.0.0.1:" + http,
                           "--data", path.join(tmp, "data")],
                     { cwd: tmp, stdio: ["ignore", log, log] });
  let exited = null;
  proc.on("exit", (code, sig) => { exited = code === null ? sig : code; });
  const deadline = Date.now() + 10000;
  while (Date.now() < deadline) {
    if (exited !== null) throw new Error("postel capture exited (" + exited + ")");
    if ((await accepts(smtp)) && (await accepts(http)))
      return { proc: proc, smtp: smtp, http: http, base: "http://127.0.0.1:" + http,
               exited: () => exited };
    await sleep(50);
  }
  proc.kill("SIGTERM");
  throw new Error("postel capture did not start in 10 s");
}
function stopCapture(cap) {
  return new Promise((resolve) => {
    if (cap.exited() !== null) return resolve(cap.exited());
    const t = setTimeout(() => { cap.proc.kill("SIGKILL"); }, 5000);
    cap.proc.on("exit", (code, sig) => { clearTimeout(t); resolve(code === null ? sig : code); });
    cap.proc.kill("SIGTERM");
  });
}

/* Real mail through Python's smtplib (AUTH with any credentials, as an
 * application configured with a password would). */
const SEND_PY = `
import json, smtplib, sys, base64
from email.message import EmailMessage
spec = json.loads(sys.argv[2])
m = EmailMessage()
m["From"] = spec["from"]; m["To"] = spec["to"]; m["Subject"] = spec["subject"]
m["Date"] = "Tue, 24 Nov 2026 10:00:00 +0000"
m.set_content(spec["text"])
if spec.get("html"):
    m.add_alternative(spec["html"], subtype="html")
if spec.get("attachment"):
    a = spec["attachment"]
    main, sub = a["type"].split("/")
    m.add_attachment(base64.b64decode(a["data"]), maintype=main, subtype=sub, filename=a["name"])
with smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=10) as s:
    s.login("app", "secret")
    s.send_message(m)
`;
function sendMail(cap, spec) {
  const p = spawnSync("/usr/bin/python3", ["-c", SEND_PY, String(cap.smtp), JSON.stringify(spec)],
                      { encoding: "utf8", timeout: 20000 });
  if (p.status !== 0) throw new Error("smtplib failed: " + (p.stderr || p.error));
}
async function apiJson(cap, method, p, body) {
  const r = await fetch(cap.base + p, {
    method: method, headers: body ? { "Content-Type": "application/json" } : {},
    body: body ? JSON.stringify(body) : undefined });
  if (!r.ok) throw new Error(method + " " + p + ": " + r.status);
  return (r.headers.get("content-type") || "").includes("json") ? r.json() : r.text();
}

/* ---- the test ---- */
async function run(cap, browser) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 },
                                             acceptDownloads: true, colorScheme: "light" });
  const page = await context.newPage();
  const pageErrors = [];
  page.on("pageerror", (e) => pageErrors.push(e.message));
  let navigations = 0;
  page.on("framenavigated", (f) => { if (f === page.mainFrame()) navigations++; });
  page.on("dialog", (d) => d.accept());
  page.setDefaultTimeout(10000);

  await page.goto(cap.base + "/");
  await page.waitForSelector("#live.on");               /* event stream open */
  check("empty list at start", await page.locator("#empty").isVisible());
  const navBefore = navigations;
  await page.evaluate(() => { window.__sameDocument = true; });

  /* 1. live arrival, without a reload */
  const attachment = Buffer.alloc(3000);
  for (let i = 0; i < attachment.length; i++) attachment[i] = (i * 7 + 3) & 0xff;  /* binary, non-UTF-8 */
  const html = "<html><head><title>Welcome</title></head><body>" +
    "<h1 id=\"greeting\">Hello from the HTML part</h1><p>Your order <b>#4711</b> shipped.</p>" +
    "<script>document.body.setAttribute('data-script-ran','yes');" +
    "try{parent.document.title='pwned'}catch(e){}</script></body></html>";
  sendMail(cap, { from: "Shop <shop@store.example>", to: "alice@example.org",
                  subject: "Order 4711 shipped", text: "Plain text: your order 4711 shipped.",
                  html: html,
                  attachment: { name: "invoice.bin", type: "application/octet-stream",
                                data: attachment.toString("base64") } });
  const row1 = page.locator("#message-list tr", { hasText: "Order 4711 shipped" });
  let appeared = true;
  try { await row1.waitFor({ timeout: 5000 }); } catch (e) { appeared = false; }
  check("message appears live without reload", appeared &&
        navigations === navBefore && await page.evaluate(() => window.__sameDocument === true),
        "appeared=" + appeared + " navigations=" + (navigations - navBefore));
  check("new message is shown unread (bold row)", await row1.evaluate((r) => r.classList.contains("unread")));
  check("unread badge is 1", (await page.textContent("#unread")).trim() === "1",
        await page.textContent("#unread"));
  check("attachment mark on the row", await row1.locator("td.subject.clip").count() === 1);
  await shot(page, "01-list-live");

  sendMail(cap, { from: "Team <team@app.example>", to: "bob@example.org",
                  subject: "Password reset requested", text: "Click the link to reset." });
  const row2 = page.locator("#message-list tr", { hasText: "Password reset requested" });
  await row2.waitFor({ timeout: 5000 }).catch(() => {});
  check("second message appears live", await row2.count() === 1);
  await page.waitForFunction(() => document.getElementById("unread").textContent.trim() === "2",
                             null, { timeout: 5000 }).catch(() => {});
  check("unread badge counts 2", (await page.textContent("#unread")).trim() === "2",
        await page.textContent("#unread"));
  check("tab title carries the unread count", (await page.title()) === "(2) postel capture",
        await page.title());
  check("newest message is listed first",
        (await page.locator("#message-list tr").first().textContent()).includes("Password reset"));
  check("still no reload after two arrivals", navigations === navBefore);

  /* 2. open: HTML tab in a sandboxed iframe */
  await row1.click();
  await page.waitForSelector("#view:not([hidden])");
  await page.waitForFunction(() => document.getElementById("v-subject").textContent === "Order 4711 shipped");
  const frameEl = page.locator("#html-frame");
  const sandbox = await frameEl.getAttribute("sandbox");
  check("HTML iframe is sandboxed without scripts",
        sandbox !== null && !/allow-scripts|allow-same-origin/.test(sandbox), sandbox);
  const frame = page.frameLocator("#html-frame");
  let h1 = "";
  try { h1 = await frame.locator("#greeting").textContent({ timeout: 5000 }); } catch (e) { h1 = "(none) " + e.message; }
  check("HTML tab renders the HTML part", h1 === "Hello from the HTML part", h1);
  const ran = await frame.locator("body").getAttribute("data-script-ran").catch(() => "error");
  check("message script did not run", ran === null, ran);
  check("message script could not reach the UI", (await page.title()) !== "pwned");
  await page.waitForFunction(() => document.getElementById("unread").textContent.trim() === "1",
                             null, { timeout: 5000 }).catch(() => {});
  check("opening marks read: unread badge 1", (await page.textContent("#unread")).trim() === "1",
        await page.textContent("#unread"));
  await shot(page, "02-html-tab");

  /* 3. text tab */
  await page.click(".tabs button[data-tab=text]");
  const text = await page.textContent("#tab-text");
  check("text tab shows the plain part", await page.locator("#tab-text").isVisible() &&
        text.includes("Plain text: your order 4711 shipped."), text);
  check("HTML frame hidden on the text tab", !(await frameEl.isVisible()));
  await shot(page, "03-text-tab");

  /* headers and checks tabs render too */
  await page.click(".tabs button[data-tab=headers]");
  await page.locator("#headers-table td", { hasText: "Order 4711 shipped" }).first().waitFor().catch(() => {});
  check("headers tab lists Subject",
        await page.locator("#headers-table td", { hasText: "Order 4711 shipped" }).count() >= 1);
  await page.click(".tabs button[data-tab=checks]");
  await page.locator("#tab-checks h3").first().waitFor().catch(() => {});
  const checksText = await page.textContent("#tab-checks");
  check("checks tab shows size, spam score, auth, HTML and links",
        /Size/.test(checksText) && /Spam score/.test(checksText) && /DMARC/.test(checksText) &&
        /script/i.test(checksText) && /Links/.test(checksText), checksText.slice(0, 300));
  await shot(page, "04-checks-tab");

  /* 4. download the attachment */
  await page.click(".tabs button[data-tab=parts]");
  const link = page.locator("#parts-list a", { hasText: "invoice.bin" });
  let got = null, fname = "";
  try {
    const [dl] = await Promise.all([page.waitForEvent("download", { timeout: 10000 }), link.click()]);
    fname = dl.suggestedFilename();
    const file = path.join(OUT, "download-" + fname);
    await dl.saveAs(file);
    got = fs.readFileSync(file);
  } catch (e) { fname = "error: " + e.message; }
  check("attachment downloads as invoice.bin", fname === "invoice.bin", fname);
  check("downloaded bytes equal the sent attachment", got !== null && got.equals(attachment),
        got === null ? "no file" : got.length + " bytes");
  await shot(page, "05-parts-tab");

  /* 5. search */
  await page.fill("#search", "subject:password");
  await page.press("#search", "Enter");
  await page.waitForFunction(() => document.querySelectorAll("#message-list tr").length === 1,
                             null, { timeout: 5000 }).catch(() => {});
  const rows = await page.locator("#message-list tr").allTextContents();
  check("search subject:password lists only the reset mail",
        rows.length === 1 && rows[0].includes("Password reset requested"), JSON.stringify(rows));
  await shot(page, "06-search");
  await page.fill("#search", "has:attachment is:read");
  await page.press("#search", "Enter");
  await page.waitForFunction(() => /Order 4711/.test(document.getElementById("message-list").textContent) &&
                             document.querySelectorAll("#message-list tr").length === 1,
                             null, { timeout: 5000 }).catch(() => {});
  const rows2 = await page.locator("#message-list tr").allTextContents();
  check("search has:attachment is:read lists the opened order mail",
        rows2.length === 1 && rows2[0].includes("Order 4711"), JSON.stringify(rows2));
  await page.fill("#search", "before:yesterday");
  await page.press("#search", "Enter");
  await page.waitForFunction(() => /before:/.test(document.getElementById("count").textContent),
                             null, { timeout: 5000 }).catch(() => {});
  const why = await page.textContent("#count");
  check("a bad query shows the server's reason", /before: takes a date YYYY-MM-DD/.test(why) &&
        await page.locator("#message-list tr").count() === 0, why);
  await shot(page, "06b-bad-query");
  await page.fill("#search", "nothing-matches-this");
  await page.press("#search", "Enter");
  await page.waitForSelector("#empty:not([hidden])").catch(() => {});
  check("search without matches shows the empty note", await page.locator("#empty").isVisible());
  await page.click("#home");
  await page.waitForFunction(() => document.querySelectorAll("#message-list tr").length === 2,
                             null, { timeout: 5000 }).catch(() => {});
  check("clearing the search lists both again", await page.locator("#message-list tr").count() === 2);

  /* 6. delete: the open message, then a selected one, then all */
  await row1.click();
  await page.waitForFunction(() => document.getElementById("v-subject").textContent === "Order 4711 shipped");
  await page.click("#v-delete");
  await page.waitForSelector("#view", { state: "hidden" }).catch(() => {});
  await row1.waitFor({ state: "detached", timeout: 5000 }).catch(() => {});
  let api = await apiJson(cap, "GET", "/api/v1/messages");
  check("delete from the message view removes it", await row1.count() === 0 && api.total === 1 &&
        api.messages[0].Subject === "Password reset requested", "total=" + api.total);
  await shot(page, "07-after-delete");

  await row2.locator("input[type=checkbox]").check();
  await page.click("#btn-delete");
  await page.waitForSelector("#empty:not([hidden])").catch(() => {});
  api = await apiJson(cap, "GET", "/api/v1/messages");
  check("delete of the selected message", await page.locator("#message-list tr").count() === 0 &&
        api.total === 0, "total=" + api.total);

  for (let i = 0; i < 3; i++)
    sendMail(cap, { from: "bulk@app.example", to: "x@example.org", subject: "Bulk " + i, text: "n" + i });
  await page.waitForFunction(() => document.querySelectorAll("#message-list tr").length === 3,
                             null, { timeout: 5000 }).catch(() => {});
  check("three more arrive live", await page.locator("#message-list tr").count() === 3);
  /* deleted by another client: the list follows live */
  const bulk0 = (await apiJson(cap, "GET", "/api/v1/search?query=" + encodeURIComponent("subject:\"Bulk 0\""))).messages[0].ID;
  await apiJson(cap, "DELETE", "/api/v1/messages", { IDs: [bulk0] });
  await page.waitForFunction(() => document.querySelectorAll("#message-list tr").length === 2,
                             null, { timeout: 5000 }).catch(() => {});
  check("deletion through the API disappears live", await page.locator("#message-list tr").count() === 2);
  await page.click("#btn-delete-all");                      /* confirm() accepted */
  await page.waitForSelector("#empty:not([hidden])").catch(() => {});
  api = await apiJson(cap, "GET", "/api/v1/messages");
  check("delete all empties list and store", api.total === 0 &&
        await page.locator("#message-list tr").count() === 0 &&
        (await page.textContent("#unread")).trim() === "0", "total=" + api.total);
  check("no reload during the whole session", navigations === navBefore &&
        await page.evaluate(() => window.__sameDocument === true));
  check("no script errors in the UI", pageErrors.length === 0, pageErrors.join("; "));
  await context.close();

  /* 7. dark mode and a phone-sized screen */
  sendMail(cap, { from: "Dark <dark@app.example>", to: "y@example.org", subject: "Seen at night",
                  text: "dark", html: "<p>dark mode body</p>" });
  const dark = await browser.newContext({ viewport: { width: 390, height: 844 }, colorScheme: "dark",
                                          isMobile: true, hasTouch: true });
  const dp = await dark.newPage();
  await dp.goto(cap.base + "/");
  await dp.locator("#message-list tr", { hasText: "Seen at night" }).waitFor().catch(() => {});
  const bg = await dp.evaluate(() => getComputedStyle(document.body).backgroundColor);
  const lum = (bg.match(/\d+/g) || [255, 255, 255]).slice(0, 3).map(Number).reduce((a, b) => a + b, 0) / 3;
  check("dark mode: dark page background", lum < 100, bg);
  const overflow = await dp.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  await shot(dp, "08-dark-mobile-list");
  await dp.locator("#message-list tr", { hasText: "Seen at night" }).click();
  await dp.waitForSelector("#view:not([hidden])").catch(() => {});
  await shot(dp, "09-dark-mobile-message");
  check("narrow screen: no horizontal overflow of the list", overflow <= 1, overflow + " px");
  await dark.close();
}

async function main() {
  fs.mkdirSync(OUT, { recursive: true });
  console.log("output: " + OUT);
  for (const f of fs.readdirSync(OUT)) if (/\.png$|^download-/.test(f)) fs.unlinkSync(path.join(OUT, f));
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "postel-browser-"));
  let cap = null, browser = null, fatal = null;
  try {
    cap = await startCapture(tmp);
    browser = await chromium.launch({ executablePath: CHROME, headless: true,
                                      args: ["--disable-gpu", "--no-first-run",
                                             "--disable-background-networking"] });
    await run(cap, browser);
  } catch (e) {
    fatal = e;
    console.log("FAIL run aborted: " + (e && e.stack || e));
    results.push({ name: "run completed", ok: false, detail: String(e && e.message || e) });
  } finally {
    if (browser) await browser.close().catch(() => {});
    if (cap) {
      const rc = await stopCapture(cap);
      check("postel capture exits cleanly on SIGTERM", rc === 0, rc);
      if (results.some((r) => !r.ok))
        console.log("---- capture.log\n" + fs.readFileSync(path.join(tmp, "capture.log"), "utf8").slice(-3000));
    }
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  const failed = results.filter((r) => !r.ok).length;
  fs.writeFileSync(RESULTS, JSON.stringify({ output: OUT, screenshots: shots, checks: results }, null, 1));
  console.log("results: " + RESULTS);
  console.log((results.length - failed) + " passed, " + failed + " failed");
  process.exit(failed ? 1 : 0);
}
main();
