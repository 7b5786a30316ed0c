// Opens a registry-cleanup HTML page in headless Chromium (Debian's, driven by
// playwright-core) and checks it against the JSON report it was made from:
//
//   node tests/browser/check-page.cjs REPORT.json PAGE.html [--screenshot FILE.png]
//
// - the page loads nothing: every request but the page itself is refused and
//   counted, and so is any console error (a CSP violation is one);
// - from the DOM: the totals, each rule's and each reason's count, the number
//   of tag rows (all of them, through the table's own filters), and the rows
//   per outcome and per rule equal the report's;
// - the filters work from the keyboard, sorting and paging work;
// - without JavaScript the totals and the first rows are still there;
// - prints the time the page took to be ready and to filter every row.
// Exits 1 naming the first difference.
"use strict";
const fs = require("fs");
const path = require("path");
const { chromium } = require("playwright-core");

const args = process.argv.slice(2);
const [reportFile, pageFile] = args;
const shotAt = args.indexOf("--screenshot");
const screenshot = shotAt >= 0 ? args[shotAt + 1] : null;
if (!reportFile || !pageFile) {
  console.error("usage: check-page.cjs REPORT.json PAGE.html [--screenshot FILE.png]");
  process.exit(2);
}
const name = path.basename(pageFile);
const report = JSON.parse(fs.readFileSync(reportFile, "utf8"));
const url = "file://" + path.resolve(pageFile);

let failures = 0;
function check(ok, what) {
  if (!ok) {
    failures++;
    console.error(`check-page ${name}: FAIL: ${what}`);
  }
}
function same(actual, expected, what) {
  check(actual === expected, `${what}: page says ${actual}, report says ${expected}`);
}

// What the report says, counted the way the page counts it.
const PROTECTED = new Set(["protected", "protected_latest", "protect_pattern", "gitlab_tag_rule"]);
const expected = { outcomes: {}, rules: {}, kinds: {}, rows: 0 };
const deletedName = report.dry_run ? "would delete" : "deleted";
for (const o of [deletedName, "kept", "protected", "failed", "skipped", "already absent"]) expected.outcomes[o] = 0;
for (const r of report.repositories) {
  expected.outcomes[deletedName] += r.deleted.length;
  for (const k of r.kept_tags || []) expected.outcomes[PROTECTED.has(k.kind) ? "protected" : "kept"]++;
  expected.outcomes.failed += r.failed.length;
  expected.outcomes.skipped += r.skipped.length;
  expected.outcomes["already absent"] += (r.already_absent || []).length;
}
expected.rows = Object.values(expected.outcomes).reduce((a, b) => a + b, 0);
for (const [rule, counted] of Object.entries(report.totals.deleted_by_rule || {})) expected.rules[rule] = counted.tags;
for (const [kind, counted] of Object.entries(report.totals.kept_by_kind || {})) expected.kinds[kind] = counted.tags;

const LAUNCH = {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
};

async function main() {
  const browser = await chromium.launch(LAUNCH);
  try {
    await withScript(browser);
    await withoutScript(browser);
  } finally {
    await browser.close();
  }
  if (failures) process.exit(1);
  console.log(`check-page ${name}: ok (${expected.rows} tag rows, ${Object.keys(expected.rules).length} rules, ${Object.keys(expected.kinds).length} reasons)`);
}

/// A context that lets the page itself load and refuses, and counts, the rest.
async function guarded(browser, options) {
  const context = await browser.newContext({ viewport: { width: 1400, height: 1800 }, ...options });
  const refused = [];
  await context.route("**/*", (route) => {
    if (route.request().url() === url) return route.continue();
    refused.push(route.request().url());
    return route.abort();
  });
  const page = await context.newPage();
  const errors = [];
  page.on("console", (message) => { if (message.type() === "error") errors.push(message.text()); });
  page.on("pageerror", (error) => errors.push(String(error)));
  const requests = [];
  page.on("request", (request) => requests.push(request.url()));
  return { context, page, refused, errors, requests };
}

async function withScript(browser) {
  const { context, page, refused, errors, requests } = await guarded(browser, {});
  const started = Date.now();
  await page.goto(url, { waitUntil: "load" });
  await page.waitForSelector("#tag-status[data-matching]", { timeout: 60000 });
  const ready = Date.now() - started;

  // Totals.
  const totals = await page.$$eval("[data-total]", (nodes) =>
    nodes.map((n) => [n.getAttribute("data-total"), n.textContent.trim()]));
  const shown = Object.fromEntries(totals);
  for (const key of ["repositories", "tags", "deleted", "kept", "protected", "already_absent", "skipped", "failed", "failed_repositories"]) {
    check(key in shown, `the totals show no ${key}`);
    if (key in shown) same(Number(shown[key].replace(/,/g, "")), report.totals[key], `total ${key}`);
  }
  // Per rule and per reason, as the tables show them.
  const rules = await page.$$eval("#rules-table tbody tr", (trs) =>
    trs.map((tr) => [tr.getAttribute("data-rule"), tr.querySelector("td[data-value]").textContent]));
  same(rules.length, Object.keys(expected.rules).length, "rules in the table");
  for (const [rule, count] of rules) same(Number(count.replace(/,/g, "")), expected.rules[rule], `rule ${rule}`);
  const kinds = await page.$$eval("#reasons-table tbody tr", (trs) =>
    trs.map((tr) => [tr.getAttribute("data-kind"), tr.querySelector("td[data-value]").textContent]));
  same(kinds.length, Object.keys(expected.kinds).length, "reasons in the table");
  for (const [kind, count] of kinds) same(Number(count.replace(/,/g, "")), expected.kinds[kind], `reason ${kind}`);

  // Every tag is a row: all match with no filter; the page shows one page of them.
  const matching = async () => Number(await page.getAttribute("#tag-status", "data-matching"));
  same(await matching(), expected.rows, "tag rows");
  same(await page.locator("#tag-table tbody tr").count(), Math.min(100, expected.rows), "rows on the first page");
  if (expected.rows <= 1000) {
    await page.selectOption("#f-size", "1000");
    same(await page.locator("#tag-table tbody tr").count(), expected.rows, "rows with 1000 a page");
    await page.selectOption("#f-size", "100");
  }
  // Rows per outcome, through the outcome filter.
  const outcomes = await page.$$eval("#f-outcome option", (os) => os.map((o) => [o.value, o.textContent]));
  for (const [value, outcome] of outcomes) {
    if (value === "") continue;
    await page.selectOption("#f-outcome", value);
    same(await matching(), expected.outcomes[outcome], `rows ${outcome}`);
  }
  await page.selectOption("#f-outcome", "");
  // Rows per rule, through the rule-or-reason filter.
  const labels = await page.$$eval("#f-label optgroup", (groups) =>
    groups.flatMap((g) => Array.from(g.children, (o) => [g.label, o.value, o.textContent])));
  const filtering = [];
  for (const [group, value, label] of labels) {
    const t = Date.now();
    await page.selectOption("#f-label", value);
    filtering.push(Date.now() - t);
    if (group === "Deleted by rule") same(await matching(), expected.rules[label], `rows of rule ${label}`);
    else same(await matching(), expected.kinds[label], `rows kept as ${label}`);
  }
  await page.selectOption("#f-label", "");

  // Keyboard: the outcome filter changes with an arrow key, the text filter with typing.
  await page.focus("#f-outcome");
  await page.keyboard.press("ArrowDown");
  check((await matching()) < expected.rows || expected.outcomes[outcomes[1][1]] === expected.rows,
    "ArrowDown on the outcome filter filtered nothing");
  await page.selectOption("#f-outcome", "");
  const firstTag = report.repositories.flatMap((r) => r.deleted.map((d) => d.tag).concat((r.kept_tags || []).map((k) => k.tag)))[0];
  if (firstTag) {
    await page.focus("#f-text");
    await page.keyboard.type(firstTag);
    await page.waitForFunction(() => {
      const status = document.getElementById("tag-status").dataset;
      return Number(status.matching) < Number(status.rows) || Number(status.rows) <= 1;
    });
    check((await matching()) >= 1, `typing ${firstTag} matches nothing`);
    await page.fill("#f-text", "");
    await page.dispatchEvent("#f-text", "input");
    await page.waitForFunction(() => {
      const status = document.getElementById("tag-status").dataset;
      return status.matching === status.rows;
    });
  }
  // Sorting by size, largest first (press twice: ascending, then descending).
  await page.click("#tag-table th[data-col='4'] button");
  await page.click("#tag-table th[data-col='4'] button");
  same(await page.getAttribute("#tag-table th[data-col='4']", "aria-sort"), "descending", "sorted by size");
  // Paging.
  if (expected.rows > 100) {
    await page.click("#tag-next");
    check((await page.textContent("#tag-status")).includes("101–"), "the next page does not start at 101");
    await page.click("#tag-prev");
  }

  if (screenshot) {
    await page.selectOption("#f-outcome", "");
    await page.click("#tag-table th[data-col='0'] button");
    await page.evaluate(() => window.scrollTo(0, 0));
    await page.screenshot({ path: screenshot, fullPage: false });
  }
  same(refused.length, 0, `requests refused (${refused.slice(0, 3).join(", ")})`);
  same(requests.filter((r) => r !== url).length, 0, "requests besides the page");
  same(errors.length, 0, `console errors (${errors.slice(0, 3).join(" | ")})`);
  const bytes = fs.statSync(pageFile).size;
  const slowest = filtering.length ? Math.max(...filtering) : 0;
  console.log(`check-page ${name}: ${(bytes / 1048576).toFixed(2)} MiB, ready in ${ready} ms, slowest filter ${slowest} ms`);
  await context.close();
}

/// Without JavaScript: the summary tables and the first rows are HTML.
async function withoutScript(browser) {
  const { context, page, refused } = await guarded(browser, { javaScriptEnabled: false });
  await page.goto(url, { waitUntil: "load" });
  const deleted = await page.textContent("[data-total=deleted]");
  same(Number(deleted.replace(/,/g, "")), report.totals.deleted, "total deleted without JavaScript");
  same(await page.locator("#tag-table tbody tr").count(), Math.min(200, expected.rows), "rows without JavaScript");
  same(await page.locator("#rules-table tbody tr").count(), Object.keys(expected.rules).length, "rules without JavaScript");
  same(refused.length, 0, "requests without JavaScript");
  await context.close();
}

main().catch((error) => {
  console.error(`check-page ${name}: ${error.stack || error}`);
  process.exit(1);
});
