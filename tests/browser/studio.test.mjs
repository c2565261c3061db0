// Browser end-to-end test: Chromium (through playwright-core, the system's /usr/bin/chromium)
// against `modelfactory serve`, with the default model registered through the CLI. Checks the
// CLI's figures against the GGUF file itself, the HTTP API, the token rule, the one-instance
// rule, every screen of the studio, a chat with the default model streamed into the Chat
// screen, and a QLoRA run on the demo dataset from the Fine-tune screen to a chat with its
// adapter. Run: node tests/browser/studio.test.mjs
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { chromium } from "playwright-core";
import {
  CLI, DEFAULT_GGUF, DEFAULT_MODEL_NAME, OUT_DIR, REPO_ROOT, SCREENS,
  checkPrerequisites, log, registerDefaultModel, runTest, runToExit,
  startServe, stop, tempDir,
} from "../lib/common.mjs";
import { ggufFacts } from "../lib/gguf.mjs";

const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const UI_TIMEOUT = 15_000;
/** Loading the default model and answering a short question takes seconds; leave room. */
const ANSWER_TIMEOUT = 180_000;
/** Loading the model for training and one QLoRA step of 2 × 128 tokens take seconds on 2 cores. */
const TRAIN_TIMEOUT = 300_000;
const QUESTION = "What is the capital of France?";

let browser; // a persistent context

async function main() {
  checkPrerequisites();
  fs.mkdirSync(OUT_DIR, { recursive: true });

  // 1. The truth, twice: from the file (our own reader) and from the CLI (the Rust side).
  log(`reading ${DEFAULT_GGUF}`);
  const facts = ggufFacts(DEFAULT_GGUF);
  assert.equal(facts.architecture, "llama", "GGUF general.architecture");
  assert.equal(facts.quantization, "Q4_1", "GGUF dominant tensor type");

  const home = tempDir("browser");
  log(`workspace ${home}: models add`);
  const { model } = registerDefaultModel(home);
  checkSummaryAgainstFile(model, facts);

  // 2. The server, and the one-instance rule on its workspace.
  const server = await startServe(home, ["--port", "0"]);
  const base = new URL(server.url);
  log(`serving at ${server.url}`);
  // On loopback the address carries only the signing token; the open API below is called
  // without it.
  assert.match(base.searchParams.get("token") ?? "", /^[0-9a-f]{64}$/, `serve prints the signing token in its address: ${server.url}`);

  log("a second `serve` on the same workspace must refuse");
  const second = await runToExit(CLI, ["--home", home, "serve", "--port", "0"]);
  assert.notEqual(second.code, 0, `a second serve on ${home} exited 0; output:\n${second.output}`);
  assert.match(second.output, /already using/, `a second serve on the same workspace should say "already using"; it said:\n${second.output}`);

  // 3. The API.
  log("API: /api/models, /api/doctor, /api/nope");
  const apiModels = await getJson(new URL("/api/models", base), 200);
  assert.ok(Array.isArray(apiModels), "/api/models is an array");
  const apiModel = apiModels.find((m) => m.id === model.id);
  assert.ok(apiModel, `/api/models has no model ${model.id}: ${JSON.stringify(apiModels)}`);
  assert.deepEqual(apiModel, model, "/api/models and `models list --json` disagree");
  const doctor = await getJson(new URL("/api/doctor", base), 200);
  assert.equal(typeof doctor.version, "string", "doctor.version");
  assert.ok(Array.isArray(doctor.backends) && doctor.backends.some((b) => b.name === "cpu"), `doctor.backends lists cpu: ${JSON.stringify(doctor.backends)}`);
  assert.equal(fs.realpathSync(doctor.workspace), fs.realpathSync(home), "doctor.workspace");
  assert.ok(doctor.models.some((m) => m.id === model.id), "doctor.models has the default model");
  const nope = await getJson(new URL("/api/nope", base), 404);
  assert.equal(typeof nope.error, "string", `/api/nope answers an ApiError: ${JSON.stringify(nope)}`);
  assert.ok(nope.error.length > 0, "/api/nope's error is not empty");

  // 4. The studio in Chromium.
  log("starting Chromium");
  browser = await chromium.launchPersistentContext(tempDir("chromium-profile"), {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
    viewport: { width: 1280, height: 820 },
  });
  const page = browser.pages()[0] ?? (await browser.newPage());
  const pageErrors = watchPage(page);
  page.setDefaultTimeout(UI_TIMEOUT);

  log(`opening ${server.url}`);
  const resp = await page.goto(server.url);
  assert.equal(resp?.status(), 200, `GET ${server.url}`);
  await visitEveryScreen(page);

  log("Models: the default model's row");
  await page.locator('[data-nav="models"]').click();
  await checkModelRow(page, model);
  const shot = path.join(OUT_DIR, "models.png");
  await page.screenshot({ path: shot, fullPage: true });
  log(`screenshot ${path.relative(REPO_ROOT, shot)}`);
  if (process.env.UPDATE_SCREENSHOT === "1") {
    fs.copyFileSync(shot, path.join(REPO_ROOT, "docs", "screenshot.png"));
    log("copied it to docs/screenshot.png");
  }

  await checkChat(page, base, model);
  await checkFineTune(page, base, model);

  log("Settings: the workspace");
  await page.locator('[data-nav="settings"]').click();
  const ws = page.locator('[data-screen="settings"] [data-testid="settings-workspace"]');
  await ws.waitFor();
  await waitForText(ws, (t) => t.includes(home) || t.includes(fs.realpathSync(home)), `settings-workspace shows ${home}`);

  assert.deepEqual(pageErrors, [], `the page reported errors:\n${pageErrors.join("\n")}`);
  await page.close();
  await stop(server.child);

  // 5. The token rule, on a second workspace (one workspace allows one instance).
  const home2 = tempDir("browser-token");
  registerDefaultModel(home2);
  const tokened = await startServe(home2, ["--host", "0.0.0.0", "--port", "0"]);
  const url2 = new URL(tokened.url);
  const token = url2.searchParams.get("token");
  log(`serving beyond loopback at ${url2.origin}/?token=…`);
  assert.ok(token && token.length >= 16, `serve --host 0.0.0.0 should print a URL with ?token=; it printed ${tokened.url}`);
  const denied = await getJson(new URL("/api/models", url2.origin), 401);
  assert.equal(typeof denied.error, "string", `401 answers an ApiError: ${JSON.stringify(denied)}`);
  await getJson(new URL(`/api/models?token=${token}x`, url2.origin), 401);
  const allowed = await getJson(new URL(`/api/models?token=${encodeURIComponent(token)}`, url2.origin), 200);
  assert.ok(allowed.some((m) => m.architecture === "llama"), "/api/models with the token lists the model");
  await getJson(new URL("/api/models", url2.origin), 200, { authorization: `Bearer ${token}` });

  log("the studio page opened with the token lists the model");
  const page2 = await browser.newPage();
  const page2Errors = watchPage(page2);
  page2.setDefaultTimeout(UI_TIMEOUT);
  await page2.goto(tokened.url);
  await page2.locator('[data-nav="models"]').click();
  await page2.locator('[data-screen="models"] tr[data-model-row]').first().waitFor();
  // Navigation drops ?token= from the address; the client must keep it (sessionStorage).
  await page2.locator('[data-nav="settings"]').click();
  await page2.locator('[data-testid="settings-workspace"]').waitFor();
  assert.deepEqual(page2Errors, [], `the tokened page reported errors:\n${page2Errors.join("\n")}`);

  // 6. Ctrl-C / SIGTERM ends `serve` even while a page is open (its /api/events stream too).
  log("SIGTERM ends serve while a page is still connected");
  const exited = new Promise((r) => tokened.child.once("exit", () => r(true)));
  const t0 = performance.now();
  tokened.child.kill("SIGTERM");
  const inTime = await Promise.race([exited, new Promise((r) => setTimeout(() => r(false), 5000))]);
  assert.ok(inTime, "`modelfactory serve` was still running 5 s after SIGTERM while a studio page was open " +
    "(its shutdown must not wait for the open /api/events stream forever)");
  log(`  exited in ${((performance.now() - t0) / 1000).toFixed(1)}s`);
  await page2.close();
  await stop(tokened.child);
}

/**
 * The Chat screen with the real default model: a long answer stopped midway, then a question
 * whose greedy answer must name Paris, streamed piece by piece, stored in the workspace, and
 * shown with its speed. Saves the screenshot of the screen.
 */
async function checkChat(page, base, m) {
  log("Chat: the default model, a stopped answer, then a greedy one");
  await page.locator('[data-nav="chat"]').click();
  const chat = page.locator('[data-screen="chat"]');
  await chat.waitFor();
  await chat.locator(`[data-chat-model] option[value="${m.id}"]`).waitFor({ state: "attached" });
  await chat.locator("[data-chat-model]").selectOption(m.id);
  await chat.locator("[data-chat-settings] summary").click();
  const send = chat.locator("[data-chat-send]");
  const stop = chat.locator("[data-chat-stop]");
  const input = chat.locator("[data-chat-input]");

  // 1. Stop: a long answer, stopped once it has started.
  await chat.locator('[data-sampling="max_new_tokens"]').fill("400");
  await input.fill("Write a long story about a lighthouse keeper.");
  await send.click();
  const streaming = chat.locator('[data-message-role="assistant"][data-state="streaming"] [data-message-content]');
  await waitForText(streaming, (t) => t.trim().length > 0, "the long answer starts streaming", ANSWER_TIMEOUT);
  assert.equal(await stop.isEnabled(), true, "[data-chat-stop] is enabled while an answer streams");
  await stop.click();
  const stopped = chat.locator('[data-message-role="assistant"][data-state="done"] [data-message-stats]');
  await stopped.waitFor({ timeout: ANSWER_TIMEOUT });
  assert.equal(await stopped.getAttribute("data-stop-reason"), "cancelled", "a stopped answer is marked cancelled");
  log(`  stopped: ${(await stopped.innerText()).trim()}`);

  // 2. A new conversation, greedy: the answer names Paris.
  await chat.locator("[data-chat-new]").click();
  await chat.locator('[data-sampling="temperature"]').fill("0");
  await chat.locator('[data-sampling="max_new_tokens"]').fill("64");
  await input.fill(QUESTION);
  const footer = chat.locator('[data-testid="cli"]');
  const command = `modelfactory chat --model ${m.id} --temperature 0 --max-tokens 64 --prompt '${QUESTION}'`;
  await waitForText(footer, (t) => t.includes(command), `the CLI footer shows \`${command}\``);
  await send.click();

  // Streamed: the answer grows in the page before it is done.
  const partials = new Set();
  const done = chat.locator('[data-message-role="assistant"][data-state="done"]');
  const end = Date.now() + ANSWER_TIMEOUT;
  while ((await done.count()) === 0) {
    assert.ok(Date.now() < end, `no answer after ${ANSWER_TIMEOUT / 1000} s`);
    const error = chat.locator('[data-testid="chat-error"]');
    if ((await error.count()) > 0) throw new Error(`the Chat screen shows an error: ${await error.innerText()}`);
    const text = await streaming.allInnerTexts();
    if (text.length && text[0].trim()) partials.add(text[0].trim());
    await new Promise((r) => setTimeout(r, 30));
  }
  assert.ok(partials.size >= 2, `the answer did not stream: saw ${partials.size} partial text(s) ${JSON.stringify([...partials])}`);
  const answer = (await done.locator("[data-message-content]").innerText()).trim();
  assert.match(answer, /Paris/, `the greedy answer to "${QUESTION}" names Paris`);
  const stats = done.locator("[data-message-stats]");
  const rate = Number(await stats.getAttribute("data-tokens-per-s"));
  assert.ok(rate > 0, `tokens/s is shown: ${await stats.innerText()}`);
  assert.match(await stats.innerText(), /tokens\/s/, "the answer shows its speed");
  assert.equal(await send.isDisabled(), true, "Send waits for a new question");
  assert.equal(await stop.isDisabled(), true, "Stop is disabled once the answer is done");
  log(`  answer: ${JSON.stringify(answer)} (${(await stats.innerText()).trim()}; streamed in ${partials.size} steps)`);

  // Kept in the workspace, as the API tells.
  const conversations = await getJson(new URL("/api/conversations", base), 200);
  assert.equal(conversations.length, 2, `two conversations: ${JSON.stringify(conversations)}`);
  const asked = conversations.find((c) => c.title === QUESTION);
  assert.ok(asked, `a conversation titled with the question: ${JSON.stringify(conversations)}`);
  const stored = await getJson(new URL(`/api/conversations/${asked.id}`, base), 200);
  assert.deepEqual(stored.messages.map((x) => x.role), ["user", "assistant"], "the stored messages");
  assert.equal(stored.messages[1].content.trim(), answer, "the stored answer is the one shown");
  assert.equal(stored.sampling.temperature, 0, "the conversation keeps its sampling settings");
  await chat.locator(`[data-conversation="${asked.id}"]`).waitFor();

  const shot = path.join(OUT_DIR, "chat.png");
  await page.screenshot({ path: shot, fullPage: true });
  log(`screenshot ${path.relative(REPO_ROOT, shot)}`);
  if (process.env.UPDATE_SCREENSHOT === "1") {
    fs.copyFileSync(shot, path.join(REPO_ROOT, "docs", "chat.png"));
    log("copied it to docs/chat.png");
  }
}

/**
 * The Fine-tune screen on the real default model and the demo dataset: the preview marks the
 * trained answer of the file's first row; a QLoRA run with 3 steps of 128 tokens draws its loss
 * curve live, redraws it after a reload mid-run, is cancelled and resumed to the end, and its
 * adapter answers in Chat, alone and side by side with the base model.
 */
async function checkFineTune(page, base, m) {
  log("Fine-tune: the default model and the demo dataset");
  const demos = await getJson(new URL("/api/datasets/demo", base), 200);
  const demo = demos.find((d) => d.name === "modelfactory-help");
  assert.ok(demo, `/api/datasets/demo lists modelfactory-help: ${JSON.stringify(demos)}`);
  assert.ok(fs.existsSync(demo.path), `the demo dataset exists at ${demo.path}`);
  const lines = fs.readFileSync(demo.path, "utf8").split("\n").filter((l) => l.trim());
  const first = JSON.parse(lines[0]);

  await page.locator('[data-nav="finetune"]').click();
  const screen = page.locator('[data-screen="finetune"][data-view="new"]');
  await screen.waitFor();
  await screen.locator(`[data-finetune-model] option[value="${m.id}"]`).waitFor({ state: "attached" });
  await screen.locator("[data-finetune-model]").selectOption(m.id);
  await screen.locator('[data-demo-dataset="modelfactory-help"]').click();
  assert.equal(await screen.locator("[data-finetune-dataset]").inputValue(), demo.path, "the demo button fills in the dataset path");
  await screen.locator('[data-method="qlora"]').check();
  await screen.locator('[data-preset="quick"]').check();
  await screen.locator("[data-finetune-advanced] summary").click();
  for (const [knob, value] of [["max_steps", "3"], ["max_length", "128"], ["eval_every", "1"], ["checkpoint_every", "1"]]) {
    await screen.locator(`[data-knob="${knob}"]`).fill(value);
  }
  const command = `modelfactory train --model ${m.id} --data ${demo.path} --preset quick --max-steps 3 --max-length 128 --eval-every 1 --checkpoint-every 1`;
  await waitForText(page.locator('[data-screen="finetune"] [data-testid="cli"]'), (t) => t.includes(command), `the CLI footer shows \`${command}\``);

  // The preview: the first row rendered with the chat template, its answer marked as trained.
  log("  preview of the first rows");
  await screen.locator("[data-finetune-preview]").click();
  const example = screen.locator("[data-preview-example]").first();
  await example.waitFor({ timeout: ANSWER_TIMEOUT });
  const report = screen.locator("[data-preview-report]");
  assert.equal(Number(await report.getAttribute("data-rows-read")), lines.length, "the preview read every row of the file");
  assert.equal(Number(await report.getAttribute("data-rows-kept")), lines.length, "every row of the demo dataset is usable");
  const trained = (await example.locator('[data-segment="trained"]').allInnerTexts()).join("");
  const context = (await example.locator('[data-segment="context"]').allInnerTexts()).join("");
  assert.ok(trained.includes(first.output), `the trained span of the first example holds the row's answer ${JSON.stringify(first.output)}; it is ${JSON.stringify(trained)}`);
  assert.ok(!trained.includes(first.instruction), "the question is not trained");
  assert.ok(context.includes(first.instruction), `the context holds the row's question; it is ${JSON.stringify(context)}`);
  assert.equal(await screen.locator('[data-segment="truncated"]').count(), 0, "the demo's short rows fit in 128 tokens");
  log(`  trained span: ${JSON.stringify(trained.slice(0, 60))}…`);

  // Start, and the dashboard.
  const t0 = performance.now();
  await screen.locator("[data-finetune-start]").click();
  await page.waitForURL(/#\/finetune\/runs\/[0-9a-f]+$/);
  const runId = new URL(page.url()).hash.split("/").at(-1);
  log(`  run ${runId} started`);
  const started = await getJson(new URL(`/api/runs/${runId}`, base), 200);
  assert.equal(started.config.method, "qlora", "the run is QLoRA");
  assert.equal(started.config.lora.rank, 8, "the quick preset's rank");
  assert.deepEqual(
    [started.config.max_steps, started.config.max_length, started.config.eval_every, started.config.checkpoint_every],
    [3, 128, 1, 1],
    "the Advanced settings reached the run",
  );
  assert.equal(started.run.dataset, demo.path, "the run trains on the demo dataset");

  const view = page.locator(`[data-run-view="${runId}"]`);
  const trainPoints = page.locator('[data-chart="loss"] circle[data-series="train"]');
  await waitFor(async () => (await trainPoints.count()) >= 1, "the loss chart gets its first point", TRAIN_TIMEOUT, async () => {
    const err = page.locator("[data-run-error]");
    if (await err.count()) throw new Error(`the run failed: ${await err.innerText()}`);
  });
  log(`  first point after ${((performance.now() - t0) / 1000).toFixed(1)}s`);
  assert.ok(Number(await page.locator('[data-figure="tokens_per_s"]').getAttribute("data-value")) > 0, "tokens/s is shown after step 1");
  assert.ok(Number(await page.locator('[data-figure="peak_memory_bytes"]').getAttribute("data-value")) > 0, "peak memory is shown");
  assert.ok(Number(await page.locator("[data-run-step]").getAttribute("data-run-step")) >= 1, "the step counter moved");
  assert.equal(await page.locator("[data-run-step]").getAttribute("data-run-total"), "3", "step x of 3");

  // A reload mid-run: the stored curve comes back, then live events extend it.
  const before = await trainPoints.evaluateAll((els) => els.map((e) => Number(e.getAttribute("data-step"))));
  const stateAtReload = (await getJson(new URL(`/api/runs/${runId}`, base), 200)).run.state;
  await page.reload();
  await view.waitFor();
  await waitFor(async () => (await trainPoints.count()) >= before.length, `after a reload the chart shows the ${before.length} point(s) it had`);
  const stored = await getJson(new URL(`/api/runs/${runId}`, base), 200);
  const redrawn = await trainPoints.evaluateAll((els) => els.map((e) => [Number(e.getAttribute("data-step")), Number(e.getAttribute("data-value"))]));
  for (const [step, loss] of redrawn.slice(0, before.length)) {
    const s = stored.steps.find((x) => x.step === step);
    assert.ok(s && s.loss === loss, `the redrawn point of step ${step} is the stored loss ${s?.loss}; it shows ${loss}`);
  }
  log(`  reloaded while ${stateAtReload}: ${before.length} point(s) before, ${redrawn.length} redrawn`);

  // Cancel, then resume to the end.
  if (stateAtReload === "running" && (await page.locator("[data-run-cancel]").count())) {
    await page.locator("[data-run-cancel]").click();
    await view.locator('[data-run-state="cancelled"]').waitFor({ timeout: TRAIN_TIMEOUT });
    const cancelled = await getJson(new URL(`/api/runs/${runId}`, base), 200);
    assert.equal(cancelled.run.state, "cancelled", "the run is cancelled");
    assert.ok(cancelled.run.step < 3, `cancelled before the end (at step ${cancelled.run.step})`);
    log(`  cancelled at step ${cancelled.run.step}; resuming`);
    await page.locator("[data-run-resume]").click();
    await view.locator('[data-run-state="running"], [data-run-state="queued"]').first().waitFor();
  } else {
    log("  the run had finished before it could be cancelled; no resume to check");
  }
  await view.locator('[data-run-state="finished"]').waitFor({ timeout: TRAIN_TIMEOUT });
  log(`  finished after ${((performance.now() - t0) / 1000).toFixed(1)}s`);
  const done = await getJson(new URL(`/api/runs/${runId}`, base), 200);
  assert.equal(done.run.step, 3, "three steps ran");
  assert.ok(done.run.adapter, "the run has an adapter");
  for (const f of ["adapter_model.safetensors", "adapter_config.json"]) {
    assert.ok(fs.existsSync(path.join(done.run.adapter, f)), `the adapter folder has ${f}`);
  }
  await waitFor(async () => (await trainPoints.count()) === 3, "the chart shows the three steps");
  const shown = await trainPoints.evaluateAll((els) => els.map((e) => [Number(e.getAttribute("data-step")), Number(e.getAttribute("data-value"))]));
  assert.deepEqual(shown, done.steps.map((s) => [s.step, s.loss]), "the chart's points are the stored steps");
  const evalPoints = await page.locator('[data-chart="loss"] circle[data-series="eval"]').count();
  assert.ok(evalPoints >= 1 && evalPoints === done.evals.length, `the eval loss is drawn (${evalPoints} points, ${done.evals.length} stored)`);
  assert.equal(await page.locator('[data-step-row]:not([data-step-row="0"])').count(), 3, "the step log has a row per step");
  const baseline = done.evals.find((e) => e.step === 0);
  assert.equal(await page.locator('[data-step-row="0"]').count(), baseline ? 1 : 0, "the untrained eval loss has its own row");
  assert.match(await page.locator('[data-testid="run-data"]').innerText(), new RegExp(`${lines.length} of ${lines.length}`), "the data summary counts the rows");
  assert.match(done.command, /--max-steps 3/, `RunDetail.command carries the settings: ${done.command}`);

  await page.setViewportSize({ width: 1280, height: 1500 });
  await page.locator('[data-screen="finetune"] .crumbs').scrollIntoViewIfNeeded();
  const shot = path.join(OUT_DIR, "fine-tune.png");
  await page.screenshot({ path: shot });
  await page.setViewportSize({ width: 1280, height: 820 });
  log(`screenshot ${path.relative(REPO_ROOT, shot)}`);
  if (process.env.UPDATE_SCREENSHOT === "1") {
    fs.copyFileSync(shot, path.join(REPO_ROOT, "docs", "fine-tune.png"));
    log("copied it to docs/fine-tune.png");
  }

  // The Runs list.
  await page.locator('[data-finetune-tab="runs"]').click();
  const row = page.locator(`[data-run-row="${runId}"]`);
  await row.waitFor();
  assert.equal(await row.locator('[data-field="state"]').getAttribute("data-value"), "finished", "the Runs list shows the run finished");
  assert.equal(await row.locator('[data-field="step"]').getAttribute("data-value"), "3", "the Runs list shows its steps");
  assert.equal(Number(await row.locator('[data-field="last_loss"]').getAttribute("data-value")), done.run.last_loss, "the Runs list shows its last loss");
  await row.locator(`[data-run-open="${runId}"]`).click();
  await view.waitFor();

  await checkAdapterChat(page, base, runId);
}

/** "Chat with this adapter", then the same question to the base model and the adapter side by side. */
async function checkAdapterChat(page, base, runId) {
  log("Chat with the run's adapter");
  await page.locator("[data-run-chat]").click();
  const chat = page.locator('[data-screen="chat"]');
  await chat.waitFor();
  await waitFor(async () => (await chat.locator("[data-chat-adapter]").inputValue()) === runId, "the adapter picker shows the run");
  assert.equal(await chat.locator("[data-chat-using]").getAttribute("data-chat-using"), runId, "the chat says it answers through the adapter");
  if (!(await chat.locator("[data-chat-settings]").evaluate((d) => d.open))) await chat.locator("[data-chat-settings] summary").click();
  await chat.locator('[data-sampling="temperature"]').fill("0");
  await chat.locator('[data-sampling="max_new_tokens"]').fill("32");
  await waitForText(chat.locator('[data-testid="cli"]'), (t) => t.includes(`--adapter ${runId}`), "the CLI footer names the adapter");
  const question = "What is ModelFactory?";
  await chat.locator("[data-chat-input]").fill(question);
  await chat.locator("[data-chat-send]").click();
  const answer = chat.locator('[data-chat-messages] [data-message-role="assistant"][data-state="done"]');
  await waitFor(async () => (await answer.count()) === 1, "the adapter answers", ANSWER_TIMEOUT, () => failOnError(chat));
  const text = (await answer.locator("[data-message-content]").innerText()).trim();
  assert.ok(text.length > 0, "the adapter's answer is not empty");
  assert.equal(await answer.locator("[data-message-stats]").getAttribute("data-adapter-run"), runId, "the answer records the adapter");
  const conversations = await getJson(new URL("/api/conversations", base), 200);
  const tuned = conversations.find((c) => c.adapter_run_id === runId);
  assert.ok(tuned, `a conversation chats through the run: ${JSON.stringify(conversations)}`);
  const stored = await getJson(new URL(`/api/conversations/${tuned.id}`, base), 200);
  assert.equal(stored.messages[1]?.stats?.adapter_run_id, runId, "the stored answer came from the adapter");
  // The answer was looked up in the run's citation index: the API says what it found (maybe
  // nothing in so short a run) and the screen shows the same, never "unavailable".
  const cited = stored.messages[1]?.stats;
  assert.ok(Array.isArray(cited?.citations), "the API returns the answer's citations");
  assert.equal(cited?.citations_error, null, `the run's citation index was read: ${cited?.citations_error}`);
  assert.equal(await answer.locator("[data-citations-error]").count(), 0, "the screen does not report citations as unavailable");
  assert.equal(Number(await answer.locator("[data-citations]").getAttribute("data-citations")), cited.citations.length, "the screen shows the API's citations");
  assert.equal(stored.messages[1].content.trim(), text, "the stored answer is the one shown");
  log(`  adapter: ${JSON.stringify(text)}`);

  log("Chat: base model and adapter side by side");
  await chat.locator("[data-chat-compare]").check();
  const compare = chat.locator('[data-testid="chat-compare"]');
  await compare.waitFor();
  await chat.locator("[data-chat-input]").fill(question);
  await chat.locator("[data-chat-send]").click();
  const side = (s) => compare.locator(`[data-compare-side="${s}"]`);
  const doneIn = (s) => side(s).locator('[data-message-role="assistant"][data-state="done"]');
  let sawAdapterWaiting = false;
  await waitFor(
    async () => {
      if ((await side("adapter").locator('[data-state="waiting"]').count()) > 0) sawAdapterWaiting = true;
      return (await doneIn("base").count()) === 1 && (await doneIn("adapter").count()) === 1;
    },
    "both sides answer",
    2 * ANSWER_TIMEOUT,
    () => failOnError(chat),
  );
  assert.ok(sawAdapterWaiting, "the adapter waits while the base model answers (one model answers at a time)");
  const baseId = await side("base").getAttribute("data-conversation-id");
  const adapterId = await side("adapter").getAttribute("data-conversation-id");
  const baseConv = await getJson(new URL(`/api/conversations/${baseId}`, base), 200);
  const adapterConv = await getJson(new URL(`/api/conversations/${adapterId}`, base), 200);
  assert.equal(baseConv.adapter_run_id, null, "the left side is the base model");
  assert.equal(baseConv.messages[1]?.stats?.adapter_run_id, null, "the base answer used no adapter");
  assert.equal(adapterConv.adapter_run_id, runId, "the right side chats through the adapter");
  assert.equal(adapterConv.messages[1]?.stats?.adapter_run_id, runId, "the adapter answer used the adapter");
  assert.ok(Date.parse(baseConv.messages[1].created_at) <= Date.parse(adapterConv.messages[1].created_at), "the base model answered first");
  for (const [name, conv] of [["base", baseConv], ["adapter", adapterConv]]) {
    const shown = (await doneIn(name).locator("[data-message-content]").innerText()).trim();
    assert.equal(shown, conv.messages[1].content.trim(), `the ${name} side shows its stored answer`);
  }
  log(`  base: ${JSON.stringify(baseConv.messages[1].content.trim())}`);
  log(`  adapter: ${JSON.stringify(adapterConv.messages[1].content.trim())}`);
  await chat.locator("[data-chat-compare]").uncheck();
}

async function failOnError(scope) {
  for (const id of ["chat-error", "compare-error"]) {
    const error = scope.locator(`[data-testid="${id}"]`);
    if ((await error.count()) > 0) throw new Error(`the Chat screen shows an error: ${await error.innerText()}`);
  }
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

/** The CLI's ModelSummary against what our own reader finds in the file. */
function checkSummaryAgainstFile(m, f) {
  const want = {
    name: DEFAULT_MODEL_NAME,
    format: "gguf",
    status: "ready",
    problem: null,
    architecture: f.architecture,
    quantization: f.quantization,
    parameters: f.parameters,
    context_length: f.context_length,
    file_size: f.file_size,
    layers: f.layers,
    hidden_size: f.hidden_size,
    attention_heads: f.attention_heads,
    kv_heads: f.kv_heads,
  };
  for (const [k, v] of Object.entries(want)) {
    assert.deepEqual(m[k], v, `models list --json: ${k} is ${JSON.stringify(m[k])}; the GGUF file says ${JSON.stringify(v)}`);
  }
  const vocab = f.gguf.metadata[`${f.architecture}.vocab_size`] ?? f.gguf.metadata["tokenizer.ggml.tokens"]?.length;
  if (vocab !== undefined) assert.equal(m.vocab_size, Number(vocab), "models list --json: vocab_size");
  assert.equal(m.path, fs.realpathSync(DEFAULT_GGUF), "models list --json: path is the absolute file");
  assert.match(m.id, /^[a-z0-9][a-z0-9._-]*$/, "models list --json: id is a slug");
  log(`CLI agrees with the file: ${f.architecture} ${f.quantization}, ${f.parameters} parameters, context ${f.context_length}, ${f.file_size} bytes`);
}

async function visitEveryScreen(page) {
  const navs = await page.locator("[data-nav]").evaluateAll((els) => els.map((e) => e.getAttribute("data-nav")));
  assert.deepEqual(navs, SCREENS.map((s) => s.id), "the nav items, in order");
  for (const s of SCREENS) {
    await page.locator(`[data-nav="${s.id}"]`).click();
    const root = page.locator(`[data-screen="${s.id}"]`);
    try {
      await root.waitFor();
    } catch {
      throw new Error(`clicking [data-nav="${s.id}"] did not show [data-screen="${s.id}"] (at ${page.url()})`);
    }
    assert.equal(await page.locator("[data-screen]").count(), 1, `only one [data-screen] is shown on ${s.id}`);
    const h1 = root.locator("h1");
    assert.equal(await h1.count(), 1, `[data-screen="${s.id}"] has one h1`);
    const title = (await h1.innerText()).trim();
    assert.ok(title.length > 0, `[data-screen="${s.id}"] h1 is not empty`);
    assert.ok(new URL(page.url()).hash.startsWith(`#/${s.id}`), `the address of ${s.id} is #/${s.id}: ${page.url()}`);
    const notBuilt = await root.locator("[data-not-built]").count();
    if (s.built) assert.equal(notBuilt, 0, `${s.id} is built, yet shows [data-not-built]`);
    else assert.equal(notBuilt, 1, `${s.id} is not built and must show [data-not-built]`);
    log(`  ${s.id}: "${title}"${s.built ? "" : " (not built)"}`);
  }
  // A route can be opened directly, too.
  await page.goto(new URL("#/settings", page.url()).href);
  await page.locator('[data-screen="settings"]').waitFor();
}

async function checkModelRow(page, m) {
  const row = page.locator(`[data-screen="models"] tr[data-model-row="${m.id}"]`);
  try {
    await row.waitFor();
  } catch {
    const rows = await page.locator("tr[data-model-row]").evaluateAll((els) => els.map((e) => e.getAttribute("data-model-row")));
    throw new Error(`no tr[data-model-row="${m.id}"] on the Models screen; rows: ${JSON.stringify(rows)}`);
  }
  const want = {
    name: m.name,
    architecture: "llama",
    quantization: "Q4_1",
    parameters: String(m.parameters),
    context_length: String(m.context_length),
    file_size: String(m.file_size),
    format: "gguf",
    status: "ready",
  };
  for (const [field, value] of Object.entries(want)) {
    const cell = row.locator(`[data-field="${field}"]`);
    assert.equal(await cell.count(), 1, `the model row has one [data-field="${field}"]`);
    const got = await cell.getAttribute("data-value");
    assert.equal(got, value, `[data-model-row="${m.id}"] [data-field="${field}"] data-value`);
    const text = (await cell.innerText()).trim();
    assert.ok(text.length > 0, `[data-field="${field}"] shows something`);
  }
  log(`  row ${m.id}: ${Object.entries(want).map(([k, v]) => `${k}=${v}`).join(" ")}`);
}

function watchPage(page) {
  const errors = [];
  page.on("pageerror", (e) => errors.push(`uncaught: ${e.message}`));
  page.on("console", (msg) => {
    if (msg.type() === "error") errors.push(`console.error: ${msg.text()}`);
  });
  return errors;
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

async function getJson(url, status, headers = {}) {
  const shown = url.href.replace(/token=[^&]+/, "token=…");
  const r = await fetch(url, { headers });
  const body = await r.text();
  assert.equal(r.status, status, `GET ${shown}: status ${r.status}, wanted ${status}; body: ${body.slice(0, 500)}`);
  assert.match(r.headers.get("content-type") ?? "", /application\/json/, `GET ${shown}: content-type`);
  try {
    return JSON.parse(body);
  } catch (e) {
    throw new Error(`GET ${shown}: body is not JSON (${e.message}): ${body.slice(0, 500)}`);
  }
}

await runTest("browser test", main, { browser: () => browser });
