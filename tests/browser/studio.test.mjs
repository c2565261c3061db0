// Browser end-to-end test: Chromium (through playwright-core, the system's /usr/bin/chromium)
// against `modelfactory serve`, with the default model registered through the CLI. Checks the
// CLI's figures against the GGUF file itself, the HTTP API, the token rule, the one-instance
// rule, every screen of the studio, and a chat with the default model streamed into the Chat
// screen. Run: node tests/browser/studio.test.mjs
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { inspect } from "node:util";
import { chromium } from "playwright-core";
import {
  CLI, DEFAULT_GGUF, DEFAULT_MODEL_NAME, OUT_DIR, REPO_ROOT, SCREENS,
  checkPrerequisites, log, registerDefaultModel, removeTempDirs, runToExit,
  startServe, stop, stopAll, tempDir,
} from "../lib/common.mjs";
import { ggufFacts } from "../lib/gguf.mjs";

const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const UI_TIMEOUT = 15_000;
/** Loading the default model and answering a short question takes seconds; leave room. */
const ANSWER_TIMEOUT = 180_000;
const QUESTION = "What is the capital of France?";

let browser; // a persistent context
const failures = [];

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
  assert.equal(base.searchParams.get("token"), null, "a loopback server must not require a token");

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

const started = performance.now();
let code = 0;
try {
  await main();
} catch (e) {
  code = 1;
  failures.push(e);
  console.error(`\nFAIL: ${e.message}`);
  if (e instanceof assert.AssertionError) {
    if (!e.generatedMessage) console.error(`  actual:   ${inspect(e.actual, { depth: 4 })}\n  expected: ${inspect(e.expected, { depth: 4 })}`);
  } else if (e.stack) {
    console.error(e.stack.split("\n").slice(1, 6).join("\n"));
  }
}
try {
  await browser?.close();
} catch {
  /* best effort */
}
await stopAll();
removeTempDirs();
const secs = ((performance.now() - started) / 1000).toFixed(1);
console.log(code === 0 ? `\nbrowser test passed in ${secs}s` : `\nbrowser test FAILED after ${secs}s`);
process.exit(code);
