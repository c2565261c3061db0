// Browser end-to-end test of Datanets and datasets: Chromium (through playwright-core, the
// system's /usr/bin/chromium) against `modelfactory serve` and the hub it embeds, which serves the
// demo Datanet `modelfactory/python-faq`. Searches the hub, pulls the Datanet with its progress
// bar, curates it from the keyboard (accept, reject, rate, edit), finds and rejects duplicates,
// builds the dataset "faq-accepted", checks that every row of it names its contribution and
// contributor, and starts a QLoRA run on it from the Fine-tune screen, which it then cancels.
// Every step is checked against the HTTP API. Run: node tests/browser/datanets.test.mjs
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { chromium } from "playwright-core";
import {
  OUT_DIR, REPO_ROOT, checkPrerequisites, log, registerDefaultModel, runTest,
  startServe, stop, tempDir,
} from "../lib/common.mjs";

const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const UI_TIMEOUT = 15_000;
/** Pulling the demo Datanet from the embedded hub is local; leave room for a slow disk. */
const PULL_TIMEOUT = 60_000;
/** Loading the model for training and one QLoRA step of 2 × 128 tokens take seconds on 2 cores. */
const TRAIN_TIMEOUT = 180_000;
const DATANET = "modelfactory/python-faq";
const DATASET = "faq-accepted";
/** Steps asked of the run: enough that it is still training when it is cancelled. */
const MAX_STEPS = 40;

let browser; // a persistent context

async function main() {
  checkPrerequisites();
  fs.mkdirSync(OUT_DIR, { recursive: true });

  const home = tempDir("datanets");
  log(`workspace ${home}: models add`);
  const { model } = registerDefaultModel(home);
  const server = await startServe(home, ["--port", "0"]);
  const base = new URL(server.url);
  log(`serving at ${server.url}`);
  const api = (p) => getJson(new URL(p, base), 200);

  log("starting Chromium");
  browser = await chromium.launchPersistentContext(tempDir("chromium-profile"), {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
    viewport: { width: 1280, height: 900 },
  });
  const page = browser.pages()[0] ?? (await browser.newPage());
  const pageErrors = watchPage(page);
  page.setDefaultTimeout(UI_TIMEOUT);
  const resp = await page.goto(server.url);
  assert.equal(resp?.status(), 200, `GET ${server.url}`);

  await pullFromHub(page, api);
  const edited = await curate(page, api);
  await duplicates(page, api);
  const dataset = await buildDataset(page, api, edited);
  await datasetRows(page, api, dataset);
  await fineTune(page, base, model, dataset);

  assert.deepEqual(pageErrors, [], `the page reported errors:\n${pageErrors.join("\n")}`);
  await page.close();
  await stop(server.child);
}

/** Datanets: the hub lists the demo Datanet; its card; Pull with a live progress bar. */
async function pullFromHub(page, api) {
  log("Datanets: search the hub");
  await page.locator('[data-nav="datanets"]').click();
  const screen = page.locator('[data-screen="datanets"]');
  await screen.waitFor();
  assert.equal(await screen.locator("[data-not-built]").count(), 0, "the Datanets screen is built");

  const listed = await api(`/api/hub/datanets?search=python`);
  assert.ok(Array.isArray(listed) && listed.some((d) => d.id === DATANET), `the hub lists ${DATANET} for "python": ${JSON.stringify(listed)}`);
  await screen.getByLabel("Search the hub").fill("python");
  await screen.getByRole("button", { name: "Search", exact: true }).click();
  const item = screen.locator(`[data-hub-datanet="${DATANET}"]`);
  await item.waitFor();
  assert.match(await item.innerText(), new RegExp(DATANET), "the listing names the Datanet");

  log("  its card");
  const card = await api(`/api/hub/datanets/${DATANET}`);
  await item.click();
  const cardView = screen.getByRole("region", { name: "Datanet card" });
  await cardView.getByRole("heading", { name: card.manifest.name }).waitFor();
  const rows = card.manifest.shards.reduce((n, s) => n + s.rows, 0);
  assert.ok(rows > 0, `the demo Datanet has rows: ${JSON.stringify(card.manifest.shards)}`);
  assert.equal(Number(await cardView.locator('[data-field="rows"]').getAttribute("data-value")), rows, "the card counts the shards' rows");
  assert.equal(await cardView.getByRole("table", { name: "Shards" }).locator("tbody tr").count(), card.manifest.shards.length, "a row per shard");
  assert.equal(await cardView.getByRole("table", { name: "Contributors" }).locator("tbody tr").count(), card.manifest.contributors.length, "a row per contributor");
  log(`  ${card.manifest.name}: ${rows} rows in ${card.manifest.shards.length} shard(s), ${card.manifest.contributors.length} contributors`);

  log("  Pull");
  const t0 = performance.now();
  await cardView.getByRole("button", { name: "Pull", exact: true }).click();
  const bar = cardView.getByRole("progressbar", { name: "Pull progress" });
  await bar.waitFor({ state: "visible" });
  const seen = new Set();
  await waitFor(async () => {
    const now = await bar.getAttribute("aria-valuenow");
    if (now !== null) seen.add(Number(now));
    const state = await cardView.locator('[data-testid="pull-progress"]').getAttribute("data-state");
    if (state === "failed") throw new Error(`the pull failed: ${await cardView.locator('[data-testid="pull-progress"]').innerText()}`);
    return state === "succeeded";
  }, "the pull finishes", PULL_TIMEOUT);
  assert.equal(await bar.getAttribute("aria-valuenow"), "100", "the progress bar reaches 100");
  log(`  pulled in ${((performance.now() - t0) / 1000).toFixed(1)}s; progress seen: ${[...seen].sort((a, b) => a - b).join(", ")}`);

  const local = (await api("/api/datanets")).find((d) => d.id === DATANET);
  assert.ok(local, `/api/datanets lists ${DATANET} after the pull`);
  assert.equal(local.rows, rows, "the pulled Datanet has every row of its shards");
  await screen.locator(`[data-local-datanet="${DATANET}"]`).waitFor();
  await screenshot(page, "datanets.png");
}

/**
 * Curation: open the pulled Datanet, search, and label from the keyboard: accept, reject, rate
 * 4, then edit a row. Returns the edited row's contribution id.
 */
async function curate(page, api) {
  log("Datasets: curate the Datanet");
  await page.getByRole("link", { name: "Open in curation" }).click();
  await page.waitForURL(new RegExp(`#/datasets/curate/${DATANET}$`));
  const screen = page.locator('[data-screen="datasets"][data-view="curate"]');
  const grid = screen.getByRole("grid", { name: `Rows of ${DATANET}` });
  const all = await api(`/api/datanets/${DATANET}/rows?offset=0&limit=50`);
  assert.ok(all.total > 0 && all.rows.length > 0, "the Datanet has rows");
  await waitFor(async () => Number(await grid.getAttribute("data-total")) === all.total, `the table counts the ${all.total} rows`);
  const drawn = await grid.locator('[role="row"][data-contribution-id]').count();
  assert.ok(drawn > 0 && drawn < Math.min(all.total, 200) + 1, `the table draws the rows in view only (${drawn} of ${all.total})`);

  // a word that some rows have and others do not, so the search narrows the table
  const word = await pickWord(all.rows, api);
  log(`  search "${word.text}" (${word.total} of ${all.total} rows)`);
  await screen.getByLabel("Search rows").fill(word.text);
  await waitFor(async () => Number(await grid.getAttribute("data-total")) === word.total, `the search narrows the table to ${word.total} rows`);
  const shown = grid.locator('[role="row"][data-contribution-id]');
  await waitFor(async () => (await shown.count()) >= 4, "the table shows the rows found");
  const ids = await shown.evaluateAll((els) => els.slice(0, 4).map((e) => e.getAttribute("data-contribution-id")));
  assert.deepEqual(ids, word.ids.slice(0, 4), "the table shows the rows the API finds, in order");
  const row = (i) => grid.locator(`[role="row"][data-contribution-id="${ids[i]}"]`);

  log("  a accepts, r rejects, 4 rates, e edits");
  await row(0).click();
  await page.keyboard.press("a");
  await waitForAttr(row(0), "data-status", "accepted", "the first row is accepted");
  await page.keyboard.press("j");
  await page.keyboard.press("r");
  await waitForAttr(row(1), "data-status", "rejected", "the second row is rejected");
  await page.keyboard.press("j");
  await page.keyboard.press("4");
  await waitForAttr(row(2), "data-rating", "4", "the third row is rated 4");
  const byId = async (cid) => (await allRows(api, `search=${encodeURIComponent(word.text)}`)).find((r) => r.contribution_id === cid);
  assert.equal((await byId(ids[0])).status, "accepted", "the studio stored the acceptance");
  assert.equal((await byId(ids[1])).status, "rejected", "the studio stored the rejection");
  assert.equal((await byId(ids[2])).rating, 4, "the studio stored the rating");

  await page.keyboard.press("j");
  await page.keyboard.press("e");
  const detail = screen.getByRole("region", { name: "Row detail" });
  await detail.waitFor();
  assert.equal(await detail.getAttribute("data-contribution-id"), ids[3], "e opens the selected row");
  const field = detail.locator("textarea").last();
  const before = await field.inputValue();
  const after = `${before.trimEnd()} Checked by a curator.`;
  await field.fill(after);
  await detail.getByRole("button", { name: "Save" }).click();
  await row(3).locator('[data-flag="edited"]').waitFor();
  await detail.getByText("Edited, original kept").waitFor();
  const stored = await byId(ids[3]);
  assert.equal(stored.version, 1, "the edit is version 1");
  assert.ok(stored.original !== null, "the contributor's text is kept");
  assert.ok(JSON.stringify(stored.content).includes("Checked by a curator."), `the edit is stored: ${JSON.stringify(stored.content)}`);
  assert.ok(!JSON.stringify(stored.original).includes("Checked by a curator."), "the original is the contributor's");
  await page.keyboard.press("Escape");
  await screenshot(page, "curation.png");

  await screen.getByLabel("Search rows").fill("");
  await waitFor(async () => Number(await grid.getAttribute("data-total")) === all.total, "clearing the search shows every row again");
  return ids[3];
}

/** Find duplicates at the default threshold, then reject them: all but the first of each group. */
async function duplicates(page, api) {
  log("Duplicates");
  const panel = page.getByRole("region", { name: "Duplicates" });
  const slider = panel.getByRole("slider", { name: /Similarity threshold/ });
  assert.equal(await slider.inputValue(), "0.8", "the threshold starts at 0.8");
  const scanned = page.waitForResponse((r) => r.url().endsWith(`/api/datanets/${DATANET}/duplicates`) && r.request().method() === "POST");
  await panel.getByRole("button", { name: "Find duplicates" }).click();
  const scan = await (await scanned).json();
  const result = panel.locator('[data-testid="duplicate-groups"]');
  await result.waitFor();
  assert.equal(Number(await result.getAttribute("data-groups")), scan.groups.length, "the panel counts the groups found");
  log(`  ${scan.groups.length} group(s): ${scan.exact_groups} exact, ${scan.near_groups} near`);
  const reject = panel.getByRole("button", { name: "Reject duplicates" });
  if (scan.groups.length === 0) {
    assert.equal(await reject.isDisabled(), true, "nothing to reject without duplicates");
    return;
  }
  const rejecting = page.waitForResponse((r) => r.url().endsWith(`/api/datanets/${DATANET}/duplicates`) && r.request().method() === "POST");
  await reject.click();
  const done = await (await rejecting).json();
  await waitFor(async () => (await result.getAttribute("data-rejected")) === String(done.rejected), "the panel shows the rows rejected");
  const rejected = await allRows(api, "status=rejected");
  const ids = new Set(rejected.map((r) => r.contribution_id));
  for (const group of done.groups) {
    for (const cid of group.slice(1)) assert.ok(ids.has(cid), `duplicate ${cid} (group of ${group[0]}) is rejected`);
  }
  log(`  rejected ${done.rejected} row(s)`);
}

/** Build "faq-accepted" from accepted and unlabeled rows; the list shows its rows and contributors. */
async function buildDataset(page, api, edited) {
  log(`Build the dataset ${DATASET}`);
  const stats = await api(`/api/datanets/${DATANET}/stats`);
  const form = page.getByRole("form", { name: "Build a dataset" });
  await form.getByLabel("Dataset name").fill(DATASET);
  assert.equal(await form.getByRole("checkbox", { name: DATANET }).isChecked(), true, "the curated Datanet is chosen");
  assert.equal(await form.getByRole("checkbox", { name: "Accepted" }).isChecked(), true, "accepted rows are taken");
  assert.equal(await form.getByRole("checkbox", { name: "Unlabeled" }).isChecked(), true, "unlabeled rows are taken");
  assert.equal(await form.getByRole("checkbox", { name: "Rejected" }).isChecked(), false, "rejected rows are left out");
  assert.equal(await form.getByLabel("Eval fraction").inputValue(), "0.1", "a tenth is held out");
  await form.getByRole("button", { name: "Build dataset" }).click();
  const row = page.locator(`[data-dataset-row="${DATASET}"]`);
  await row.waitFor({ timeout: 60_000 });

  const dataset = (await api("/api/datasets/list")).find((d) => d.name === DATASET);
  assert.ok(dataset, `/api/datasets/list has ${DATASET}`);
  assert.equal(dataset.rows, stats.accepted + stats.unlabeled, `the dataset has the accepted and unlabeled rows (${JSON.stringify(stats)})`);
  assert.ok(dataset.eval_rows > 0 && dataset.eval_rows < dataset.rows, `some rows are held out: ${dataset.eval_rows} of ${dataset.rows}`);
  assert.ok(dataset.contributors > 0, "the dataset credits contributors");
  assert.ok(fs.existsSync(dataset.path), `the dataset file exists: ${dataset.path}`);
  const value = async (f) => Number(await row.locator(`[data-field="${f}"]`).getAttribute("data-value"));
  assert.equal(await value("rows"), dataset.rows, "the list shows its rows");
  assert.equal(await value("eval_rows"), dataset.eval_rows, "the list shows its eval rows");
  assert.equal(await value("contributors"), dataset.contributors, "the list shows its contributors");
  const lines = fs.readFileSync(dataset.path, "utf8").split("\n").filter((l) => l.trim());
  assert.ok(lines.length > 0, "the dataset file has rows");
  const editedRow = (await allRows(api, "")).find((r) => r.contribution_id === edited);
  if (editedRow && editedRow.status !== "rejected") {
    assert.ok(lines.some((l) => l.includes("Checked by a curator.")), "the dataset takes the edited text of a row");
  }
  log(`  ${dataset.rows} rows (${dataset.eval_rows} eval) from ${dataset.contributors} contributors; ${path.basename(dataset.path)} has ${lines.length} lines`);
  return dataset;
}

/** The dataset's rows: each names its contribution and contributor, as the API does. */
async function datasetRows(page, api, dataset) {
  log("The dataset's rows");
  await page.getByRole("link", { name: `Open the rows of ${DATASET}` }).first().click();
  await page.waitForURL(new RegExp(`#/datasets/named/${DATASET}$`));
  const grid = page.getByRole("grid", { name: `Rows of ${DATASET}` });
  const rows = grid.locator('[role="row"][data-contribution-id]');
  await rows.first().waitFor();
  const first = await api(`/api/datasets/named/${DATASET}/rows?offset=0&limit=200`);
  assert.equal(first.total, dataset.rows, "the API pages the dataset's rows");
  const check = async () => {
    const shown = await rows.evaluateAll((els) =>
      els.map((e) => ({
        index: Number(e.getAttribute("aria-rowindex")) - 2,
        id: e.querySelector('[data-field="contribution_id"]')?.textContent?.trim() ?? "",
        contributor: e.querySelector('[data-field="contributor"]')?.getAttribute("data-value") ?? "",
        shownContributor: e.querySelector('[data-field="contributor"]')?.textContent?.trim() ?? "",
      })),
    );
    assert.ok(shown.length > 0, "rows are shown");
    for (const r of shown) {
      assert.ok(r.id.length > 0, `row ${r.index + 1} shows its contribution id`);
      assert.ok(r.contributor.length > 0 && r.shownContributor.length > 0, `row ${r.index + 1} shows its contributor`);
    }
    return shown;
  };
  const top = await check();
  for (const r of top.filter((x) => x.index < first.rows.length)) {
    assert.equal(r.id, first.rows[r.index].contribution_id, `row ${r.index + 1} is the API's`);
    assert.equal(r.contributor, first.rows[r.index].contributor, `row ${r.index + 1}'s contributor is the API's`);
  }
  // the end of the table loads its own page
  await rows.first().click();
  await page.keyboard.press("End");
  const last = grid.locator(`[role="row"][aria-rowindex="${dataset.rows + 1}"][data-contribution-id]`);
  await last.waitFor();
  await check();
  log(`  ${top.length} rows checked at the top, and the last row (${dataset.rows})`);
}

/** "Fine-tune on this dataset": the Fine-tune screen opens with it; a QLoRA run starts, draws its loss, and is cancelled. */
async function fineTune(page, base, m, dataset) {
  log("Fine-tune on this dataset");
  await page.getByRole("button", { name: "Fine-tune on this dataset" }).click();
  const screen = page.locator('[data-screen="finetune"][data-view="new"]');
  await screen.waitFor();
  await waitFor(async () => (await screen.locator("[data-finetune-dataset]").inputValue()) === dataset.path, "the dataset is filled in");
  await screen.locator(`[data-finetune-model] option[value="${m.id}"]`).waitFor({ state: "attached" });
  await screen.locator("[data-finetune-model]").selectOption(m.id);
  await screen.locator('[data-method="qlora"]').check();
  await screen.locator('[data-preset="quick"]').check();
  await screen.locator("[data-finetune-advanced] summary").click();
  for (const [knob, value] of [["max_steps", String(MAX_STEPS)], ["max_length", "128"]]) {
    await screen.locator(`[data-knob="${knob}"]`).fill(value);
  }
  const command = `modelfactory train --model ${shellQuote(m.id)} --data ${shellQuote(dataset.path)} --preset quick --max-steps ${MAX_STEPS} --max-length 128`;
  await waitForText(page.locator('[data-screen="finetune"] [data-testid="cli"]'), (t) => t.includes(command), `the CLI footer shows \`${command}\``);

  const t0 = performance.now();
  await screen.locator("[data-finetune-start]").click();
  await page.waitForURL(/#\/finetune\/runs\/[^/]+$/);
  const runId = decodeURIComponent(new URL(page.url()).hash.split("/").at(-1));
  const started = await getJson(new URL(`/api/runs/${runId}`, base), 200);
  assert.equal(started.run.dataset, dataset.path, "the run trains on the dataset");
  assert.equal(started.config.method, "qlora", "the run is QLoRA");
  assert.equal(started.config.max_steps, MAX_STEPS, "max steps reached the run");
  log(`  run ${runId} started`);

  const points = page.locator('[data-chart="loss"] circle[data-series="train"]');
  const failed = async () => {
    const err = page.locator("[data-run-error]");
    if (await err.count()) throw new Error(`the run failed: ${await err.innerText()}`);
  };
  await waitFor(async () => (await points.count()) >= 1, "the loss chart gets its first point", TRAIN_TIMEOUT, failed);
  log(`  first point after ${((performance.now() - t0) / 1000).toFixed(1)}s`);
  await waitFor(async () => (await points.count()) >= 2, "the loss chart moves on", TRAIN_TIMEOUT, failed);
  log(`  ${await points.count()} points after ${((performance.now() - t0) / 1000).toFixed(1)}s; cancelling`);
  await page.locator("[data-run-cancel]").click();
  await page.locator(`[data-run-view="${runId}"] [data-run-state="cancelled"]`).waitFor({ timeout: TRAIN_TIMEOUT });
  const cancelled = await getJson(new URL(`/api/runs/${runId}`, base), 200);
  assert.equal(cancelled.run.state, "cancelled", "the run is cancelled");
  assert.ok(cancelled.run.step >= 2 && cancelled.run.step < MAX_STEPS, `cancelled midway (at step ${cancelled.run.step})`);
  await screenshot(page, "datanets-fine-tune.png");
}

/**
 * A word of at least five letters from the first rows' text that some rows have and others do
 * not (at least four), with the rows the API finds for it.
 */
async function pickWord(rows, api) {
  const words = new Set();
  for (const r of rows) {
    const texts = r.content.messages ? r.content.messages.map((m) => m.content) : [r.content.instruction, r.content.input, r.content.output];
    for (const w of texts.join(" ").toLowerCase().match(/[a-z]{5,}/g) ?? []) words.add(w);
  }
  const total = (await api(`/api/datanets/${DATANET}/rows?limit=1`)).total;
  for (const text of [...words].slice(0, 40)) {
    const found = await api(`/api/datanets/${DATANET}/rows?search=${encodeURIComponent(text)}&limit=200`);
    if (found.total >= 4 && found.total < total) return { text, total: found.total, ids: found.rows.map((r) => r.contribution_id) };
  }
  throw new Error(`no word of the first rows is in at least 4 rows and not in all: ${[...words].slice(0, 40).join(" ")}`);
}

/** Every row of the Datanet that a query (`status=rejected`, …) selects, a page at a time. */
async function allRows(api, query) {
  const out = [];
  for (;;) {
    const page = await api(`/api/datanets/${DATANET}/rows?${query ? `${query}&` : ""}offset=${out.length}&limit=500`);
    out.push(...page.rows);
    if (page.rows.length === 0 || out.length >= page.total) return out;
  }
}

/** As the studio's CLI footer quotes an argument (ui/src/lib/cli.ts). */
function shellQuote(arg) {
  return /^[A-Za-z0-9_./:@=+,%-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, "'\\''")}'`;
}

async function screenshot(page, name) {
  const shot = path.join(OUT_DIR, name);
  await page.screenshot({ path: shot, fullPage: true });
  log(`  screenshot ${path.relative(REPO_ROOT, shot)}`);
}

/** Polls `pred` until it holds; `check` may throw to fail early. */
async function waitFor(pred, what, timeout = UI_TIMEOUT, check = async () => {}) {
  const end = Date.now() + timeout;
  while (!(await pred())) {
    await check();
    if (Date.now() > end) throw new Error(`timed out after ${timeout / 1000} s: ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function waitForAttr(locator, name, value, what) {
  let got = null;
  await waitFor(async () => (got = await locator.getAttribute(name)) === value, `${what} (${name} is ${JSON.stringify(got)})`);
}

async function waitForText(locator, pred, what, timeout = UI_TIMEOUT) {
  const end = Date.now() + timeout;
  let text = "";
  while (Date.now() < end) {
    text = await locator.innerText();
    if (pred(text)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${what}; it shows ${JSON.stringify(text)}`);
}

function watchPage(page) {
  const errors = [];
  page.on("pageerror", (e) => errors.push(`uncaught: ${e.message}`));
  // Name the request behind a failed resource, which the console message leaves out.
  page.on("response", (r) => {
    if (r.status() >= 500) errors.push(`HTTP ${r.status()} ${r.request().method()} ${r.url()}`);
  });
  page.on("console", (msg) => {
    if (msg.type() === "error") errors.push(`console.error: ${msg.text()}`);
  });
  return errors;
}

async function getJson(url, status) {
  const r = await fetch(url);
  const body = await r.text();
  assert.equal(r.status, status, `GET ${url.pathname}${url.search}: status ${r.status}, wanted ${status}; body: ${body.slice(0, 500)}`);
  try {
    return JSON.parse(body);
  } catch (e) {
    throw new Error(`GET ${url.pathname}${url.search}: body is not JSON (${e.message}): ${body.slice(0, 500)}`);
  }
}

await runTest("datanets browser test", main, { browser: () => browser, failureScreenshot: "datanets-failure.png" });
