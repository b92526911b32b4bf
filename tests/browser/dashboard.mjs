// The dashboard of `devinst serve` in a real browser (Debian's Chromium,
// driven by playwright-core): token prompt, start/stop, logs, reload.
//
// Usage: node tests/browser/dashboard.mjs URL TOKEN NAME
//   URL    the server's base URL, e.g. http://127.0.0.1:46400/
//   TOKEN  the API token
//   NAME   an instance that exists and is running (it is stopped and started)
//
// Prints one line per step; exits 0 when all pass, 1 on the first failure
// (after printing what the page showed), 2 on bad usage.
// Setup: `npm ci` in tests/browser (scripts/test-env.sh does it) and the
// Debian package chromium.

import { chromium } from "playwright-core";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const [url, token, name] = process.argv.slice(2);
if (!url || !token || !name) {
  console.error("usage: node tests/browser/dashboard.mjs URL TOKEN NAME");
  process.exit(2);
}

const TIMEOUT = 30_000;
const CHROMIUM = "/usr/bin/chromium";
const ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  // The server is local: never send its requests through a proxy.
  "--no-proxy-server",
];

const quoted = (s) => '"' + s.replace(/["\\]/g, "\\$&") + '"';
const ROW = `tr[data-instance=${quoted(name)}]`;

let page;
const pageErrors = [];
let current = "";
let n = 0;

async function step(what, fn) {
  current = what;
  await fn();
  n += 1;
  console.log(`ok ${n} - ${what}`);
}

// Waits until the row's state cell reads `state`.
async function waitForState(state) {
  await waitFor(
    `the row never showed state ${state}`,
    ([row, want]) => document.querySelector(row)?.querySelector('[data-field="state"]')?.textContent.trim() === want,
    [ROW, state],
  );
}

// Waits until `cond` holds in the page, failing with `why` after the timeout.
async function waitFor(why, cond, arg) {
  try {
    await page.waitForFunction(cond, arg, { timeout: TIMEOUT, polling: 200 });
  } catch (err) {
    throw new Error(`${why} (${err.message.split("\n")[0]})`);
  }
}

// (Run in the page.)
const visible = (sel) => {
  const el = document.querySelector(sel);
  return !!el && el.checkVisibility();
};

async function clickAction(action) {
  await page.locator(`${ROW} button[data-action="${action}"]`).click({ timeout: TIMEOUT });
}

// What the page shows, for a failure report.
async function seen() {
  if (!page || page.isClosed()) return ["(no page)"];
  const text = async (sel) => {
    const shown = await page.locator(sel).first().innerText({ timeout: 2000 }).catch(() => "(absent)");
    return shown.split(/[\t\n]/).map((l) => l.trim()).filter(Boolean).join(" | ");
  };
  const lines = [
    `page url: ${page.url()}`,
    `row ${ROW}: ${await text(ROW)}`,
    `#message: ${(await text("#message")) || "(empty)"}`,
    `token input visible: ${await page.locator("#token").isVisible().catch(() => "?")}`,
  ];
  const rows = await page
    .locator("tr[data-instance]")
    .evaluateAll((trs) => trs.map((tr) => tr.dataset.instance))
    .catch(() => []);
  lines.push(`rows: ${rows.length ? rows.join(", ") : "(none)"}`);
  for (const e of pageErrors) lines.push(`page error: ${e}`);
  return lines;
}

const profile = mkdtempSync(join(tmpdir(), "devinst-browser-"));
let context;
let failed = false;
try {
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ARGS,
    timeout: 60_000,
  });
  page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(TIMEOUT);
  page.on("pageerror", (err) => pageErrors.push(err.message));
  page.on("console", (msg) => {
    // Failed requests (the 401s, a 409 from stats) are the page's to show, not errors.
    if (msg.type() === "error" && !/^Failed to load resource/.test(msg.text())) pageErrors.push(`console: ${msg.text()}`);
  });

  await step("a wrong stored token makes the page ask for the token", async () => {
    await page.goto(url, { waitUntil: "domcontentloaded" });
    await page.evaluate(() => localStorage.setItem("devinst-token", "wrong"));
    await page.reload({ waitUntil: "domcontentloaded" });
    await waitFor("the token input never showed", visible, "#token");
    await waitFor("the 401's error never showed in #message", () => document.getElementById("message").textContent.trim() !== "");
    const kept = await page.evaluate(() => localStorage.getItem("devinst-token"));
    if (kept !== null) throw new Error(`the wrong token is still stored (${JSON.stringify(kept)})`);
  });

  await step("the token is given through the page", async () => {
    await page.locator("#token").fill(token);
    await page.locator("#token-save").click();
    // Accepted once a list loaded; asked again (a 401) fails at once.
    await waitFor("the page neither listed the instances nor asked again", () =>
      document.getElementById("updated").textContent.trim() !== "" || document.getElementById("token").checkVisibility(),
    );
    if (await page.locator("#token").isVisible()) throw new Error("the page did not accept the token (asked again)");
  });

  await step(`${name} is listed as running`, async () => {
    await waitForState("running");
  });

  await step(`${name} shows its cpu and memory`, async () => {
    await waitFor(
      "cpu and memory never showed (stats endpoint)",
      (row) => {
        const tr = document.querySelector(row);
        const cpu = tr?.querySelector('[data-field="cpu"]')?.textContent.trim();
        const mem = tr?.querySelector('[data-field="memory"]')?.textContent.trim();
        return !!cpu && cpu !== "-" && !!mem && mem !== "-";
      },
      ROW,
    );
  });

  await step(`stop: ${name} shows exited`, async () => {
    await clickAction("stop");
    await waitForState("exited");
  });

  await step(`start: ${name} shows running`, async () => {
    await clickAction("start");
    await waitForState("running");
  });

  await step("logs: the #logs panel shows, under the instance's name", async () => {
    await clickAction("logs");
    await waitFor("#logs never became visible", visible, "#logs");
    const heading = await page.locator("#logs-title").innerText();
    if (!heading.includes(name)) throw new Error(`the logs heading does not name ${name}: ${JSON.stringify(heading)}`);
  });

  await step("after a reload the row shows without asking for the token", async () => {
    await page.reload({ waitUntil: "domcontentloaded" });
    await page.locator(ROW).waitFor({ state: "visible", timeout: TIMEOUT });
    if (await page.locator("#token").isVisible()) throw new Error("the page asked for the token again");
  });

  await step("no script errors in the page", async () => {
    if (pageErrors.length) throw new Error(`${pageErrors.length} error(s) in the page`);
  });
} catch (err) {
  failed = true;
  console.log(`not ok ${n + 1} - ${current || "launching chromium"}`);
  console.log(`  error: ${err.message.split("\n")[0]}`);
  for (const line of await seen().catch((e) => [`(cannot read the page: ${e.message})`])) {
    console.log(`  ${line}`);
  }
} finally {
  await context?.close().catch(() => {});
  rmSync(profile, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
