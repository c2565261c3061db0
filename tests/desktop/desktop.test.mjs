// Desktop end-to-end test: the Tauri app (modelfactory-desktop) driven through tauri-driver,
// which speaks W3C WebDriver and forwards to WebKitWebDriver. Plain HTTP, no client library.
// Run it through tests/desktop/run, which provides Xvfb, tauri-driver and MODELFACTORY_HOME.
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import {
  DEFAULT_GGUF, DESKTOP, OUT_DIR, SCREENS, checkPrerequisites, log, registerDefaultModel, requireFile, runTest,
} from "../lib/common.mjs";
import { ggufFacts } from "../lib/gguf.mjs";

const DRIVER = process.env.TAURI_DRIVER_URL || "http://127.0.0.1:4444";
const HOME = process.env.MODELFACTORY_HOME;
const ELEMENT = "element-6066-11e4-a52e-4f735466cecf";
const UI_TIMEOUT = 20_000;

/** One WebDriver command; returns `value`, throws with the driver's error otherwise. */
async function wd(method, route, body, ms = 60_000) {
  const r = await fetch(`${DRIVER}${route}`, {
    method,
    headers: body === undefined ? {} : { "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(ms),
  });
  const text = await r.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    throw new Error(`WebDriver ${method} ${route}: HTTP ${r.status}, not JSON: ${text.slice(0, 500)}`);
  }
  if (!r.ok || (json.value && json.value.error)) {
    const v = json.value ?? {};
    const err = new Error(`WebDriver ${method} ${route}: ${v.error ?? r.status}: ${v.message ?? text.slice(0, 500)}`);
    err.wdError = v.error;
    throw err;
  }
  return json.value;
}

class Session {
  constructor(id) {
    this.id = id;
    this.base = `/session/${id}`;
  }
  static async create(application) {
    const value = await wd("POST", "/session", {
      capabilities: { alwaysMatch: { "tauri:options": { application } } },
    }, 120_000);
    return new Session(value.sessionId);
  }
  cmd(method, route, body) {
    return wd(method, `${this.base}${route}`, body);
  }
  async findAll(css, from = null) {
    const route = from ? `/element/${from}/elements` : "/elements";
    const els = await this.cmd("POST", route, { using: "css selector", value: css });
    return els.map((e) => e[ELEMENT]);
  }
  /** Polls until `css` matches; returns the first element id. */
  async waitFor(css, what = css, ms = UI_TIMEOUT) {
    const end = Date.now() + ms;
    for (;;) {
      const found = await this.findAll(css);
      if (found.length) return found[0];
      if (Date.now() > end) throw new Error(`${what}: nothing matched ${css} within ${ms} ms (at ${await this.url().catch(() => "?")})`);
      await sleep(150);
    }
  }
  click(el) { return this.cmd("POST", `/element/${el}/click`, {}); }
  async type(el, text) {
    await this.cmd("POST", `/element/${el}/clear`, {});
    return this.cmd("POST", `/element/${el}/value`, { text });
  }
  text(el) { return this.cmd("GET", `/element/${el}/text`); }
  attr(el, name) { return this.cmd("GET", `/element/${el}/attribute/${encodeURIComponent(name)}`); }
  url() { return this.cmd("GET", "/url"); }
  exec(script, args = []) { return this.cmd("POST", "/execute/sync", { script, args }); }
  async screenshot(file) {
    const b64 = await this.cmd("GET", "/screenshot");
    fs.writeFileSync(file, Buffer.from(b64, "base64"));
  }
  delete() { return wd("DELETE", this.base, undefined, 30_000); }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function main() {
  checkPrerequisites();
  requireFile(DESKTOP, "build it with `cargo build --workspace --bins`");
  assert.ok(HOME, "MODELFACTORY_HOME must name the desktop app's workspace (tests/desktop/run sets it)");
  fs.mkdirSync(OUT_DIR, { recursive: true });

  const facts = ggufFacts(DEFAULT_GGUF);
  log(`workspace ${HOME}: models add`);
  const { model } = registerDefaultModel(HOME);
  for (const k of ["architecture", "quantization", "parameters", "context_length", "file_size"]) {
    assert.equal(model[k], facts[k], `models list --json: ${k} against the GGUF file`);
  }

  const status = await wd("GET", "/status", undefined, 10_000).catch((e) => {
    throw new Error(`tauri-driver does not answer at ${DRIVER}: ${e.message}`);
  });
  log(`tauri-driver at ${DRIVER}: ${JSON.stringify(status)}`);

  log(`starting ${DESKTOP}`);
  const t0 = performance.now();
  const s = await Session.create(DESKTOP);
  try {
    await s.waitFor("[data-nav]", "the studio's nav in the app window", 60_000);
    log(`window shows the studio after ${((performance.now() - t0) / 1000).toFixed(1)}s`);
    const transport = await s.exec("const e = document.querySelector('.transport'); return e ? e.textContent.trim() : null;");
    log(`transport: ${transport}; title: ${await s.cmd("GET", "/title")}`);
    assert.equal(await s.exec("return typeof window.__TAURI_INTERNALS__;"), "object", "the page runs inside Tauri (window.__TAURI_INTERNALS__)");

    const navs = [];
    for (const el of await s.findAll("[data-nav]")) navs.push(await s.attr(el, "data-nav"));
    assert.deepEqual(navs, SCREENS.map((x) => x.id), "the nav items, in order");

    for (const screen of SCREENS) {
      await s.click(await s.waitFor(`[data-nav="${screen.id}"]`));
      const root = await s.waitFor(`[data-screen="${screen.id}"]`, `clicking [data-nav="${screen.id}"]`);
      const h1s = await s.findAll("h1", root);
      assert.equal(h1s.length, 1, `[data-screen="${screen.id}"] has one h1`);
      const title = (await s.text(h1s[0])).trim();
      assert.ok(title.length > 0, `[data-screen="${screen.id}"] h1 is not empty`);
      const notBuilt = (await s.findAll("[data-not-built]", root)).length;
      if (screen.built) assert.equal(notBuilt, 0, `${screen.id} is built, yet shows [data-not-built]`);
      else assert.equal(notBuilt, 1, `${screen.id} is not built and must show [data-not-built]`);
      const hash = await s.exec("return location.hash;");
      assert.ok(hash.startsWith(`#/${screen.id}`), `the address of ${screen.id} is #/${screen.id}: ${hash}`);
      log(`  ${screen.id}: "${title}"${screen.built ? "" : " (not built)"}`);
    }

    log("Models: the default model's row");
    await s.click(await s.waitFor('[data-nav="models"]'));
    const row = await s.waitFor(`[data-screen="models"] tr[data-model-row="${model.id}"]`, `the row of ${model.id}`);
    const want = {
      name: model.name,
      architecture: "llama",
      quantization: "Q4_1",
      parameters: String(model.parameters),
      context_length: String(model.context_length),
      file_size: String(model.file_size),
      format: "gguf",
      status: "ready",
    };
    for (const [field, value] of Object.entries(want)) {
      const cells = await s.findAll(`[data-field="${field}"]`, row);
      assert.equal(cells.length, 1, `the model row has one [data-field="${field}"]`);
      const got = await s.attr(cells[0], "data-value");
      assert.equal(got, value, `desktop: [data-model-row="${model.id}"] [data-field="${field}"] data-value`);
    }
    log(`  row ${model.id}: ${Object.entries(want).map(([k, v]) => `${k}=${v}`).join(" ")}`);
    const shot = path.join(OUT_DIR, "desktop.png");
    await s.screenshot(shot);
    log(`screenshot ${path.relative(process.cwd(), shot)}`);

    log("Settings: the workspace");
    await s.click(await s.waitFor('[data-nav="settings"]'));
    const ws = await s.waitFor('[data-screen="settings"] [data-testid="settings-workspace"]');
    const end = Date.now() + UI_TIMEOUT;
    let text = "";
    while (!(text.includes(HOME) || text.includes(fs.realpathSync(HOME)))) {
      if (Date.now() > end) throw new Error(`settings-workspace should show ${HOME}; it shows ${JSON.stringify(text)}`);
      await sleep(150);
      text = await s.text(ws);
    }

    await checkChat(s);
    await checkFineTune(s, model);
  } catch (e) {
    const shot = path.join(OUT_DIR, "desktop-failure.png");
    await s.screenshot(shot).then(() => log(`failure screenshot ${shot}`), () => {});
    throw e;
  } finally {
    await s.delete().catch((e) => console.error(`could not end the WebDriver session: ${e.message}`));
  }
}

/** Chat through the Tauri commands: the answer streams in as `chat-token` events, then is stored. */
async function checkChat(s) {
  log("Chat: a greedy answer from the default model, streamed through Tauri events");
  await s.click(await s.waitFor('[data-nav="chat"]'));
  await s.waitFor('[data-screen="chat"] [data-chat-model] option[value="smollm2-135m-instruct"]', "the default model in the picker");
  await s.click(await s.waitFor("[data-chat-settings] summary"));
  await s.type(await s.waitFor('[data-sampling="temperature"]'), "0");
  await s.type(await s.waitFor('[data-sampling="max_new_tokens"]'), "64");
  await s.type(await s.waitFor("[data-chat-input]"), "What is the capital of France?");
  await s.click(await s.waitFor("[data-chat-send]"));
  let partial = "";
  const end = Date.now() + 180_000;
  for (;;) {
    if ((await s.findAll('[data-message-role="assistant"][data-state="done"]')).length) break;
    const errors = await s.findAll('[data-testid="chat-error"]');
    if (errors.length) throw new Error(`the Chat screen shows an error: ${await s.text(errors[0])}`);
    if (Date.now() > end) throw new Error("no answer within 180 s");
    const streaming = await s.findAll('[data-message-role="assistant"][data-state="streaming"] [data-message-content]');
    if (streaming.length && !partial) partial = (await s.text(streaming[0]).catch(() => "")).trim();
    await sleep(50);
  }
  const done = await s.waitFor('[data-message-role="assistant"][data-state="done"]');
  const answer = (await s.text((await s.findAll("[data-message-content]", done))[0])).trim();
  const stats = (await s.findAll("[data-message-stats]", done))[0];
  assert.ok(partial.length > 0, "the answer streamed in before it was done");
  assert.ok(answer.startsWith(partial.slice(0, 5)), `the streamed text ${JSON.stringify(partial)} begins the answer ${JSON.stringify(answer)}`);
  assert.match(answer, /Paris/, "the greedy answer names Paris");
  assert.ok(Number(await s.attr(stats, "data-tokens-per-s")) > 0, "the answer shows its speed");
  log(`  answer: ${JSON.stringify(answer)} (${(await s.text(stats)).trim()})`);
}

/** Polls `pred` until it holds; `check` may throw to fail early. */
async function until(pred, what, ms = UI_TIMEOUT, check = async () => {}) {
  const end = Date.now() + ms;
  while (!(await pred())) {
    await check();
    if (Date.now() > end) throw new Error(`timed out after ${ms / 1000} s: ${what}`);
    await sleep(200);
  }
}

async function count(s, css) {
  return (await s.findAll(css)).length;
}

/**
 * The Fine-tune screen through the Tauri commands: the demo dataset's preview, a QLoRA run of
 * 3 steps whose curve arrives as `job-event`s and comes back after a reload, then a chat with
 * its adapter, alone and side by side with the base model.
 */
async function checkFineTune(s, model) {
  log("Fine-tune: the demo dataset, a preview, a QLoRA run of 3 steps");
  await s.click(await s.waitFor('[data-nav="finetune"]'));
  await s.waitFor('[data-screen="finetune"][data-view="new"] [data-finetune-model] option[value="smollm2-135m-instruct"]', "the default model in the picker");
  assert.equal(await s.exec("return document.querySelector('[data-finetune-model]').value;"), model.id, "the default model is chosen");
  await s.click(await s.waitFor('[data-demo-dataset="modelfactory-help"]', "the demo dataset button (demo_datasets)"));
  const dataset = await s.exec("return document.querySelector('[data-finetune-dataset]').value;");
  assert.match(dataset, /modelfactory-help\.jsonl$/, "the demo button fills in the dataset path");
  assert.ok(fs.existsSync(dataset), `the demo dataset exists at ${dataset}`);
  const first = JSON.parse(fs.readFileSync(dataset, "utf8").split("\n")[0]);
  await s.click(await s.waitFor('[data-method="qlora"]'));
  await s.click(await s.waitFor('[data-preset="quick"]'));
  await s.click(await s.waitFor("[data-finetune-advanced] summary"));
  for (const [knob, value] of [["max_steps", "3"], ["max_length", "128"], ["eval_every", "1"], ["checkpoint_every", "1"]]) {
    await s.type(await s.waitFor(`[data-knob="${knob}"]`), value);
  }
  const footer = await s.text(await s.waitFor('[data-screen="finetune"] [data-testid="cli"]'));
  assert.ok(
    footer.includes(`--preset quick --max-steps 3 --max-length 128 --eval-every 1 --checkpoint-every 1`),
    `the CLI footer shows the command for the form: ${footer}`,
  );

  await s.click(await s.waitFor("[data-finetune-preview]"));
  const trainedEl = await s.waitFor('[data-preview-example] [data-segment="trained"]', "the preview (preview_dataset)", 120_000);
  const trained = await s.text(trainedEl);
  assert.ok(trained.includes(first.output.slice(0, 40)), `the first trained span holds the first row's answer; it is ${JSON.stringify(trained)}`);

  const t0 = performance.now();
  await s.click(await s.waitFor("[data-finetune-start]"));
  await until(async () => /^#\/finetune\/runs\/[0-9a-f]+$/.test(await s.exec("return location.hash;")), "the run's dashboard opens (start_run)");
  const runId = (await s.exec("return location.hash;")).split("/").at(-1);
  log(`  run ${runId} started`);
  const points = '[data-chart="loss"] circle[data-series="train"]';
  const failed = async () => {
    const errors = await s.findAll("[data-run-error]");
    if (errors.length) throw new Error(`the run failed: ${await s.text(errors[0])}`);
  };
  await until(async () => (await count(s, points)) >= 1, "the loss chart gets its first point (job-event)", 300_000, failed);
  log(`  first point after ${((performance.now() - t0) / 1000).toFixed(1)}s`);
  const before = await count(s, points);
  await s.exec("location.reload();");
  await sleep(500);
  await s.waitFor(`[data-run-view="${runId}"]`, "the run after a reload", 60_000);
  await until(async () => (await count(s, points)) >= before, `after a reload the chart shows its ${before} point(s) again (get_run)`);
  await until(
    async () => (await s.exec(`const v = document.querySelector('[data-run-view]'); return v ? v.getAttribute('data-state') : null;`)) === "finished",
    "the run finishes",
    300_000,
    failed,
  );
  log(`  finished after ${((performance.now() - t0) / 1000).toFixed(1)}s`);
  await until(async () => (await count(s, points)) === 3, "the chart shows the three steps");
  assert.ok((await count(s, '[data-chart="loss"] circle[data-series="eval"]')) >= 1, "the eval loss is drawn");
  assert.equal(await count(s, '[data-step-row]:not([data-step-row="0"])'), 3, "the step log has a row per step");
  assert.ok(Number(await s.attr(await s.waitFor('[data-figure="tokens_per_s"]'), "data-value")) > 0, "tokens/s is shown");
  const shot = path.join(OUT_DIR, "desktop-fine-tune.png");
  await s.screenshot(shot);
  log(`screenshot ${path.relative(process.cwd(), shot)}`);

  log("Chat with the run's adapter");
  await s.click(await s.waitFor("[data-run-chat]"));
  await s.waitFor('[data-screen="chat"]');
  await until(async () => (await s.exec("return document.querySelector('[data-chat-adapter]').value;")) === runId, "the adapter picker shows the run");
  await s.click(await s.waitFor("[data-chat-settings] summary"));
  await s.type(await s.waitFor('[data-sampling="temperature"]'), "0");
  await s.type(await s.waitFor('[data-sampling="max_new_tokens"]'), "32");
  await s.type(await s.waitFor("[data-chat-input]"), "What is ModelFactory?");
  await s.click(await s.waitFor("[data-chat-send]"));
  const chatError = async () => {
    for (const id of ["chat-error", "compare-error"]) {
      const errors = await s.findAll(`[data-testid="${id}"]`);
      if (errors.length) throw new Error(`the Chat screen shows an error: ${await s.text(errors[0])}`);
    }
  };
  const answered = '[data-chat-messages] [data-message-role="assistant"][data-state="done"]';
  await until(async () => (await count(s, answered)) === 1, "the adapter answers", 180_000, chatError);
  const done = await s.waitFor(answered);
  const stats = (await s.findAll("[data-message-stats]", done))[0];
  assert.equal(await s.attr(stats, "data-adapter-run"), runId, "the answer came from the adapter");
  const answer = (await s.text((await s.findAll("[data-message-content]", done))[0])).trim();
  assert.ok(answer.length > 0, "the adapter's answer is not empty");
  log(`  adapter: ${JSON.stringify(answer)}`);

  log("Chat: base model and adapter side by side");
  await s.click(await s.waitFor("[data-chat-compare]"));
  await s.waitFor('[data-testid="chat-compare"]');
  await s.type(await s.waitFor("[data-chat-input]"), "What is ModelFactory?");
  await s.click(await s.waitFor("[data-chat-send]"));
  const doneIn = (side) => `[data-compare-side="${side}"] [data-message-role="assistant"][data-state="done"]`;
  await until(async () => (await count(s, doneIn("base"))) === 1 && (await count(s, doneIn("adapter"))) === 1, "both sides answer", 240_000, chatError);
  for (const [side, want] of [["base", ""], ["adapter", runId]]) {
    const el = await s.waitFor(`${doneIn(side)} [data-message-stats]`);
    assert.equal(await s.attr(el, "data-adapter-run"), want, `the ${side} side's answer ${want ? "used the adapter" : "used no adapter"}`);
  }
  log("  both sides answered");
}

// No stopAll/removeTempDirs: this test starts no tracked children and makes no temp folders;
// main() ends its WebDriver session and tests/desktop/run cleans up the rest.
await runTest("desktop test", main, { cleanup: false });
