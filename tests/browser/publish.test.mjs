// Browser end-to-end test of publishing: Chromium (through playwright-core, the system's
// /usr/bin/chromium) against `modelfactory serve`, on the local chain (anvil, from
// wallet/contracts/install) and the workspace's own hub. Pulls the demo Datanet, builds a dataset
// from it and trains a tiny QLoRA run through the API; then, in the studio, computes the run's
// attribution in its Fine-tune view (checked against the API's report), creates an account in
// Settings → Wallet, starts the local chain, previews the run's publication on the Publish screen
// (shares by influence, checked against the API's preview), signs and publishes it after the
// confirmation, follows the job to the registered publication, and verifies the published
// repository in the Verify view, with a contribution proved against its Datanet's root. Also checks
// the signing-token rule.
// Run: node tests/browser/publish.test.mjs
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
const PULL_TIMEOUT = 60_000;
/** Loading the model, one QLoRA step of 64 tokens and two small evaluations, on 2 cores. */
const TRAIN_TIMEOUT = 300_000;
/** Starting anvil and deploying the contracts once. */
const CHAIN_TIMEOUT = 120_000;
/** Hashing the base model, uploading to the workspace hub, registering on the local chain. */
const PUBLISH_TIMEOUT = 180_000;
/**
 * Computing the attribution: loading the model and the run's data, then a per-example gradient of
 * every training row. Those gradients of the default model take about 3 s a row on 2 CPU cores
 * (`modelfactory bench attribution`: 0.37 rows a second at 128 tokens), so the wait grows with
 * the run's training rows beyond this floor.
 */
const ATTRIBUTION_TIMEOUT = 300_000;
const ATTRIBUTION_MS_PER_ROW = 3_000;
const DATANET = "modelfactory/python-faq";
const DATASET = "faq-publish";
const PASSPHRASE = "correct horse battery staple";

let browser; // a persistent context

async function main() {
  checkPrerequisites();
  fs.mkdirSync(OUT_DIR, { recursive: true });

  const home = tempDir("publish");
  log(`workspace ${home}: models add`);
  const { model } = registerDefaultModel(home);
  const server = await startServe(home, ["--port", "0"]);
  const url = new URL(server.url);
  const token = url.searchParams.get("token");
  assert.ok(token, `serve prints its address with the signing token, even on loopback: ${server.url}`);
  const base = new URL("/", url);
  log(`serving at ${base}`);
  const api = (p, init = {}) => requestJson(new URL(p, base), init);

  await signingTokenRule(base, token);
  const run = await trainTinyRun(api, model);

  log("starting Chromium");
  browser = await chromium.launchPersistentContext(tempDir("chromium-profile"), {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
    viewport: { width: 1280, height: 1000 },
  });
  const page = browser.pages()[0] ?? (await browser.newPage());
  const pageErrors = watchPage(page);
  page.setDefaultTimeout(UI_TIMEOUT);
  const resp = await page.goto(server.url);
  assert.equal(resp?.status(), 200, `GET ${server.url}`);

  const report = await computeAttribution(page, api, run);
  const account = await createAccount(page, api);
  await startChain(page, api);
  const publication = await publish(page, api, run, account, report);
  await verify(page, api, publication);

  assert.deepEqual(pageErrors, [], `the page reported errors:\n${pageErrors.join("\n")}`);
  await page.close();
  await stop(server.child);
}

/** A signing route answers 401 without the token and works with it; open routes need none. */
async function signingTokenRule(base, token) {
  log("the signing-token rule");
  const open = await requestJson(new URL("/api/wallet/accounts", base));
  assert.deepEqual(open, [], "a new workspace has no accounts, and listing them needs no token");
  const refused = await fetch(new URL("/api/wallet/new", base), {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ passphrase: PASSPHRASE }),
  });
  assert.equal(refused.status, 401, "creating an account without the token is refused on loopback");
  const body = await refused.json();
  assert.match(body.error, /token/, `the refusal names the token: ${JSON.stringify(body)}`);
  const wrong = await fetch(new URL("/api/wallet/new", base), {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}x` },
    body: JSON.stringify({ passphrase: PASSPHRASE }),
  });
  assert.equal(wrong.status, 401, "a wrong token is refused");
  const still = await requestJson(new URL("/api/wallet/accounts", base));
  assert.deepEqual(still, [], "the refused calls made no account");
}

/** Pulls the demo Datanet, builds a dataset of its rows and trains one QLoRA step on it. */
async function trainTinyRun(api, model) {
  log(`pull ${DATANET}`);
  const pull = await api("/api/datanets/pull", { method: "POST", body: { id: DATANET } });
  await waitFor(async () => {
    const job = await api(`/api/jobs/${pull.id}`);
    if (job.state === "failed") throw new Error(`the pull failed: ${job.error}`);
    return job.state === "succeeded";
  }, "the pull finishes", PULL_TIMEOUT);

  log(`dataset ${DATASET}`);
  const dataset = await api("/api/datasets/list", {
    method: "POST",
    body: { name: DATASET, sources: [{ datanet: DATANET, statuses: ["accepted", "unlabeled"] }], files: [], eval_fraction: 0.05, seed: 42 },
  });
  assert.ok(dataset.rows > 0, `the dataset has rows: ${JSON.stringify(dataset)}`);

  log("train one step");
  const t0 = performance.now();
  const started = await api("/api/runs", {
    method: "POST",
    body: {
      name: "publish-e2e",
      model_id: model.id,
      dataset: dataset.path,
      config: {
        method: "qlora", lora: { rank: 4, alpha: 8 }, max_steps: 1, batch_size: 1, grad_accum: 1,
        max_length: 64, eval_fraction: 0.05, eval_every: 0, checkpoint_every: 0, backend: "cpu",
      },
    },
  });
  let run;
  await waitFor(async () => {
    run = (await api(`/api/runs/${started.id}`)).run;
    if (run.state === "failed") throw new Error(`the run failed: ${run.error}`);
    return run.state === "finished";
  }, "the run finishes", TRAIN_TIMEOUT);
  assert.ok(run.adapter, `the finished run has an adapter: ${JSON.stringify(run)}`);
  log(`  trained in ${((performance.now() - t0) / 1000).toFixed(1)}s`);
  return run;
}

/**
 * Fine-tune → the run: compute its attribution from the panel, follow the job, and check that the
 * contributors and shares shown are the API's report. Returns the report.
 */
async function computeAttribution(page, api, run) {
  log("Fine-tune: compute the run's attribution");
  await page.locator('[data-nav="finetune"]').click();
  await page.locator('[data-finetune-tab="runs"]').click();
  await page.locator(`[data-run-open="${run.id}"]`).click();
  const panel = page.locator(`[data-run-view="${run.id}"] [data-attribution]`);
  await panel.waitFor();
  await waitForAttr(panel, "data-computed", "false", "a new run has no attribution yet");
  const before = await api(`/api/runs/${run.id}/attribution`);
  assert.deepEqual(before, { run_id: run.id, report: null, accuracy: null }, "nothing is computed before it is asked for");

  const { data } = await api(`/api/runs/${run.id}`);
  const trainRows = data?.train_examples ?? 0;
  const timeout = ATTRIBUTION_TIMEOUT + trainRows * ATTRIBUTION_MS_PER_ROW;
  log(`  ${trainRows} training rows; waiting up to ${Math.round(timeout / 1000)} s`);
  const t0 = performance.now();
  await panel.locator("[data-compute-attribution]").click();
  const messages = new Set();
  await waitFor(async () => {
    const message = await panel.locator("[data-attribution-message]").innerText().catch(() => "");
    if (message) messages.add(message);
    const failed = panel.locator('[data-testid="attribution-job-error"], [data-testid="attribution-start-error"], [data-attribution-stopped]');
    if (await failed.count()) throw new Error(`the attribution did not complete: ${await failed.first().innerText()}`);
    return (await panel.locator("[data-contributor]").count()) > 0;
  }, "the attribution panel shows the contributors", timeout);
  const shownMessages = [...messages];
  log(`  computed in ${((performance.now() - t0) / 1000).toFixed(1)}s; messages: ${shownMessages.slice(0, 2).join(" | ")}${shownMessages.length > 2 ? ` … ${shownMessages.at(-1)}` : ""}`);

  const { report } = await api(`/api/runs/${run.id}/attribution`);
  assert.ok(report, `GET /api/runs/${run.id}/attribution has the report`);
  assert.equal(report.train_rows, trainRows, "every training row is scored");
  for (let i = 1; i < report.contributors.length; i++) {
    assert.ok(report.contributors[i - 1].score >= report.contributors[i].score, `the contributors are ranked most helpful first: ${JSON.stringify(report.contributors)}`);
  }
  await waitForAttr(panel, "data-computed", "true", "the panel shows the report");
  const shown = await panel.locator("[data-contributor]").evaluateAll((items) =>
    items.map((li) => ({ contributor: li.getAttribute("data-contributor"), bps: Number(li.getAttribute("data-share")), harmful: li.hasAttribute("data-harmful") })),
  );
  assert.deepEqual(
    shown,
    report.contributors.map((c) => ({ contributor: c.contributor, bps: c.bps, harmful: c.harmful })),
    "the panel shows the API's contributors, shares and harmful flags, in its order",
  );
  const credited = shown.filter((c) => !c.harmful);
  assert.ok(shown.filter((c) => c.harmful).every((c) => c.bps === 0), `harmful contributors get no share: ${JSON.stringify(shown)}`);
  if (credited.length > 0) {
    assert.equal(credited.reduce((n, c) => n + c.bps, 0), 10_000, `the shares of the helpful contributors sum to 10 000 basis points: ${JSON.stringify(shown)}`);
  } else {
    log("  every contributor's rows raised the evaluation loss: no shares");
  }
  const harmfulRows = report.rows.filter((r) => r.score < 0).length;
  assert.equal(await panel.locator("[data-harmful-row]").count(), Math.min(20, harmfulRows), `the rows that raised the loss are listed (${harmfulRows})`);
  assert.equal(Number(await panel.locator("[data-train-rows]").getAttribute("data-train-rows")), report.train_rows, "the panel says how many rows were scored");
  log(`  ${shown.length} contributors, ${credited.length} credited, ${harmfulRows} rows raised the loss`);
  await screenshot(page, "publish-attribution.png");
  return report;
}

/** Settings → Wallet: a new account; the passphrase fields are empty afterwards. */
async function createAccount(page, api) {
  log("Settings: create an account");
  await page.locator('[data-nav="settings"]').click();
  const wallet = page.locator('[data-testid="wallet"]');
  await wallet.waitFor();
  await wallet.locator('[data-testid="wallet-empty"]').waitFor();
  await wallet.locator('[data-testid="wallet-new"]').click();
  const form = wallet.locator('[data-testid="wallet-create-form"]');
  await form.locator('[data-testid="wallet-name"]').fill("e2e publisher");
  await form.locator('[data-testid="wallet-passphrase"]').fill(PASSPHRASE);
  await form.locator('[data-testid="wallet-confirm"]').fill(PASSPHRASE);
  // creating a key derives it with scrypt: a few seconds
  await form.locator('[data-testid="wallet-create-submit"]').click();
  await wallet.locator('[data-testid="wallet-added"]').waitFor({ timeout: 60_000 });
  const accounts = await api("/api/wallet/accounts");
  assert.equal(accounts.length, 1, `one account: ${JSON.stringify(accounts)}`);
  const [account] = accounts;
  assert.equal(account.name, "e2e publisher");
  await wallet.locator(`[data-account="${account.address}"]`).waitFor();
  await wallet.locator('[data-testid="wallet-new"]').click();
  assert.equal(await form.locator('[data-testid="wallet-passphrase"]').inputValue(), "", "the passphrase is not kept in the page");
  await wallet.locator('[data-testid="wallet-new"]').click();
  log(`  ${account.address}`);
  return account;
}

/** Settings → Chain: start the local chain; the status shows it running with its contracts. */
async function startChain(page, api) {
  log("Settings: start the local chain");
  const chain = page.locator('[data-testid="chain"]');
  const status = chain.locator('[data-testid="chain-status"]');
  await status.waitFor();
  assert.equal(await status.getAttribute("data-local"), "true", "the default chain is the local one");
  const t0 = performance.now();
  await chain.locator('[data-testid="chain-up"]').click();
  await waitFor(async () => {
    const error = chain.locator('[data-testid="chain-action-error"]');
    if (await error.count()) throw new Error(`starting the chain failed: ${await error.innerText()}`);
    return (await status.getAttribute("data-reachable")) === "true";
  }, "the local chain runs", CHAIN_TIMEOUT);
  const s = await api("/api/chain");
  assert.equal(s.reachable, true, `GET /api/chain: ${JSON.stringify(s)}`);
  assert.ok(s.registry && s.splitter, `the contracts are deployed: ${JSON.stringify(s)}`);
  assert.match(await status.innerText(), new RegExp(s.registry), "the status shows the registry");
  log(`  chain ${s.chain_id} at ${s.url} in ${((performance.now() - t0) / 1000).toFixed(1)}s`);
  await screenshot(page, "publish-settings.png");
}

/**
 * Publish: preview (against the API's; shares by the attribution `report` when it credits
 * someone), confirm, follow the job, see the publication.
 */
async function publish(page, api, run, account, report) {
  log("Publish: preview");
  await page.locator('[data-nav="publish"]').click();
  const screen = page.locator('[data-screen="publish"]');
  await screen.waitFor();
  assert.equal(await screen.locator("[data-not-built]").count(), 0, "the Publish screen is built");
  const runSelect = screen.locator('[data-testid="publish-run"]');
  await waitFor(async () => (await runSelect.inputValue()) === run.id, "the finished run is chosen");
  assert.equal(await screen.locator('[data-testid="publish-account"]').inputValue(), account.address, "the account is chosen");

  await screen.locator('[data-testid="publish-preview"]').click();
  const panel = screen.locator('[data-testid="publish-preview-panel"]');
  await panel.waitFor({ timeout: 60_000 });
  const preview = await api(`/api/runs/${run.id}/publish/preview`, { method: "POST", body: { publisher: account.address } });
  assert.equal(await panel.locator('[data-testid="publish-manifest-hash"]').innerText(), preview.manifest_hash, "the manifest hash is the API's");
  const files = await panel.locator('[data-testid="publish-files"] tr[data-file]').evaluateAll((rows) => rows.map((r) => r.getAttribute("data-file")));
  assert.deepEqual(files, preview.files.map((f) => f.path), "the files are the API's");
  assert.ok(files.includes("adapter_model.safetensors") && files.includes("lineage-manifest.json"), `the adapter and its manifest are sent: ${files}`);
  const shares = await panel.locator('[data-testid="publish-shares"] tr[data-contributor]').evaluateAll((rows) =>
    rows.map((r) => [r.getAttribute("data-contributor"), Number(r.querySelector("[data-bps]")?.getAttribute("data-bps"))]),
  );
  assert.deepEqual(shares, preview.shares, "the shares are the API's");
  assert.equal(shares.reduce((n, [, bps]) => n + bps, 0), 10_000, "the shares sum to 10 000 basis points");
  // Unasked, the studio shares by influence when the run's attribution credits a contributor.
  const helped = report.contributors.some((c) => !c.harmful && c.score > 0 && c.contributor.startsWith("0x"));
  assert.equal(preview.attribution_method, helped ? "datainf" : "row-share", `how the API's preview shares: ${JSON.stringify(report.contributors)}`);
  assert.equal(await panel.locator("[data-attribution-method]").getAttribute("data-attribution-method"), preview.attribution_method, "the preview says how the shares were computed");
  if (preview.attribution_method === "datainf") {
    const lower = (addresses) => addresses.map((a) => a.toLowerCase()).sort();
    const harmful = lower(report.contributors.filter((c) => c.harmful && c.contributor.startsWith("0x")).map((c) => c.contributor));
    assert.deepEqual(lower(preview.harmful), harmful, "the contributors who get nothing are the report's harmful ones");
    for (const [contributor, bps] of shares) {
      if (harmful.includes(contributor.toLowerCase())) assert.equal(bps, 0, `${contributor}'s rows raised the loss: no share`);
    }
  }
  const harmfulShown = await panel.locator('[data-testid="publish-harmful"] [data-harmful]').evaluateAll((items) => items.map((li) => li.getAttribute("data-harmful")));
  assert.deepEqual(harmfulShown, preview.harmful, "the preview lists the API's harmful contributors");
  assert.match(await panel.locator('[data-testid="publish-destination"]').innerText(), new RegExp(preview.repo.replace("/", "\\/")), "the destination names the repository");
  assert.match(await panel.locator('[data-testid="publish-chain"]').innerText(), new RegExp(`chain id ${preview.chain_id}`), "the chain is named");
  await panel.locator('[data-testid="publish-manifest"] summary').click();
  const manifest = JSON.parse(await panel.locator('[data-testid="publish-manifest"] pre').innerText());
  assert.deepEqual(manifest, preview.manifest, "the manifest shown is the one that will be signed");
  log(`  manifest ${preview.manifest_hash}, ${files.length} files, ${shares.length} contributors (${preview.attribution_method}), to ${preview.repo}`);
  await screenshot(page, "publish-preview.png");

  log("Publish: sign after the confirmation");
  await screen.locator('[data-testid="publish-passphrase"]').fill(PASSPHRASE);
  await screen.locator('[data-testid="publish-sign"]').click();
  const dialog = screen.getByRole("alertdialog");
  await dialog.waitFor();
  const asked = await dialog.innerText();
  assert.ok(asked.includes(preview.manifest_hash) && asked.includes(account.address) && asked.includes(preview.repo), `the confirmation says what is signed and sent: ${asked}`);
  assert.equal((await api(`/api/jobs`)).filter((j) => j.kind === "publish").length, 0, "nothing is published before the confirmation");
  const t0 = performance.now();
  await dialog.locator('[data-testid="publish-confirm"]').click();
  assert.equal(await screen.locator('[data-testid="publish-passphrase"]').inputValue(), "", "the passphrase field is cleared");
  const progress = screen.locator('[data-testid="publish-progress"]');
  await progress.waitFor();
  const messages = new Set();
  await waitFor(async () => {
    const message = await progress.locator('[data-testid="publish-message"]').innerText().catch(() => "");
    if (message) messages.add(message);
    const state = await progress.getAttribute("data-state");
    if (state === "failed" || state === "cancelled") throw new Error(`the publish ${state}: ${message}`);
    return state === "succeeded";
  }, "the publish job succeeds", PUBLISH_TIMEOUT);
  log(`  published in ${((performance.now() - t0) / 1000).toFixed(1)}s; messages: ${[...messages].join(" | ")}`);

  const result = screen.locator('[data-testid="publish-result"]');
  await waitForAttr(result, "data-state", "registered", "the publication is registered");
  const publication = await api(`/api/runs/${run.id}/publication`);
  assert.equal(publication.state, "registered", `GET /api/runs/${run.id}/publication: ${JSON.stringify(publication)}`);
  assert.equal(publication.manifest_hash, preview.manifest_hash, "what was registered is what was previewed");
  assert.equal(await result.locator('[data-testid="publish-tx-hash"]').innerText(), publication.tx_hash, "the transaction is shown");
  assert.equal(await result.locator('[data-testid="publish-result-hash"]').innerText(), publication.manifest_hash, "the manifest hash is shown");
  assert.equal(await result.locator('[data-testid="publish-repo-link"]').getAttribute("href"), publication.repo_url, "the repository is linked");
  await screenshot(page, "publish-result.png");
  return publication;
}

/** Verify: the published repository passes every check, with a contribution proved. */
async function verify(page, api, publication) {
  log("Verify: the published repository");
  const screen = page.locator('[data-screen="publish"]');
  await screen.locator('[data-testid="publish-verify-link"]').click();
  await waitForAttr(screen, "data-view", "verify", "the Verify view opens");
  const target = screen.locator('[data-testid="verify-target"]');
  assert.equal(await target.inputValue(), publication.repo, "the target is the published repository");
  const rows = await api(`/api/datasets/named/${DATASET}/rows?offset=0&limit=1`);
  const contribution = rows.rows[0].contribution_id;
  await screen.locator('[data-testid="verify-contributions"]').fill(contribution);
  const t0 = performance.now();
  await screen.locator('[data-testid="verify-run"]').click();
  const report = screen.locator('[data-testid="verify-report"]');
  await report.waitFor({ timeout: 60_000 });
  const checks = await report.locator("tr[data-check]").evaluateAll((trs) =>
    trs.map((r) => ({ subject: r.getAttribute("data-check"), ok: r.getAttribute("data-ok") === "true", detail: r.querySelector(".detail")?.textContent ?? "" })),
  );
  const failed = checks.filter((c) => !c.ok);
  assert.deepEqual(failed, [], `every check passes: ${JSON.stringify(checks, null, 1)}`);
  assert.equal(await report.getAttribute("data-ok"), "true", "the report passes");
  const fromApi = await api("/api/verify", { method: "POST", body: { target: publication.repo, contributions: [contribution] } });
  assert.equal(fromApi.ok, true, `POST /api/verify: ${JSON.stringify(fromApi)}`);
  assert.deepEqual(checks.map((c) => c.subject), fromApi.checks.map((c) => c.subject), "the view shows the API's checks");
  assert.ok(checks.some((c) => /registry/i.test(c.subject)), `the on-chain record is checked: ${checks.map((c) => c.subject)}`);
  assert.ok(checks.some((c) => c.subject.includes(contribution) || c.detail.includes(contribution)), `the contribution is checked: ${JSON.stringify(checks)}`);
  log(`  ${checks.length} checks passed in ${((performance.now() - t0) / 1000).toFixed(1)}s`);
  await screenshot(page, "publish-verify.png");
}

async function screenshot(page, name) {
  const shot = path.join(OUT_DIR, name);
  await page.screenshot({ path: shot, fullPage: true });
  log(`  screenshot ${path.relative(REPO_ROOT, shot)}`);
}

/** Polls `pred` until it holds; `pred` may throw to fail early. */
async function waitFor(pred, what, timeout = UI_TIMEOUT) {
  const end = Date.now() + timeout;
  while (!(await pred())) {
    if (Date.now() > end) throw new Error(`timed out after ${timeout / 1000} s: ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function waitForAttr(locator, name, value, what) {
  let got = null;
  await waitFor(async () => (got = await locator.getAttribute(name)) === value, `${what} (${name} is ${JSON.stringify(got)})`);
}

function watchPage(page) {
  const errors = [];
  page.on("pageerror", (e) => errors.push(`uncaught: ${e.message}`));
  page.on("response", (r) => {
    if (r.status() >= 500) errors.push(`HTTP ${r.status()} ${r.request().method()} ${r.url()}`);
  });
  page.on("console", (msg) => {
    if (msg.type() === "error") errors.push(`console.error: ${msg.text()}`);
  });
  return errors;
}

/** A JSON request to the open API (no token); throws with the body unless it answers 2xx. */
async function requestJson(url, { method = "GET", body } = {}) {
  const init = { method, headers: { Accept: "application/json" } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const r = await fetch(url, init);
  const text = await r.text();
  assert.ok(r.ok, `${method} ${url.pathname}: status ${r.status}; body: ${text.slice(0, 500)}`);
  try {
    return text ? JSON.parse(text) : null;
  } catch (e) {
    throw new Error(`${method} ${url.pathname}: body is not JSON (${e.message}): ${text.slice(0, 500)}`);
  }
}

await runTest("publish browser test", main, { browser: () => browser, failureScreenshot: "publish-failure.png" });
