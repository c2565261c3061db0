// Shared by the end-to-end tests: where the binaries and the default model are, running the
// `modelfactory` CLI, temp workspaces, the list of screens the studio must have, and the runner
// that ends every test the same way.
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { inspect } from "node:util";

export const TESTS_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
export const REPO_ROOT = path.resolve(TESTS_DIR, "..");
export const OUT_DIR = path.join(TESTS_DIR, "out");

const cache = process.env.MODELFACTORY_CACHE || path.join(os.homedir(), ".cache", "modelfactory");
export const TARGET_DIR = process.env.CARGO_TARGET_DIR || path.join(cache, "target");
export const BIN_DIR = path.join(TARGET_DIR, "debug");
export const CLI = path.join(BIN_DIR, "modelfactory");
export const DESKTOP = path.join(BIN_DIR, "modelfactory-desktop");
export const DEFAULT_GGUF =
  process.env.MODELFACTORY_DEFAULT_GGUF || path.join(cache, "default-model", "SmolLM2-135M-Instruct.Q4_1.gguf");
export const DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct";

/** Every screen, in nav order; `built: false` ones must show [data-not-built]. */
export const SCREENS = [
  { id: "datanets", built: true },
  { id: "datasets", built: true },
  { id: "finetune", built: true },
  { id: "chat", built: true },
  { id: "models", built: true },
  { id: "publish", built: true },
  { id: "settings", built: true },
];

export function log(msg) {
  const t = ((performance.now() / 1000)).toFixed(1).padStart(5);
  console.log(`[${t}s] ${msg}`);
}

export function requireFile(file, how) {
  if (!fs.existsSync(file)) {
    throw new Error(`${file} does not exist; ${how}`);
  }
}

export function checkPrerequisites() {
  requireFile(CLI, "build it with `cargo build --workspace --bins` (CARGO_TARGET_DIR decides where)");
  requireFile(DEFAULT_GGUF, "run scripts/setup, or point MODELFACTORY_DEFAULT_GGUF at SmolLM2-135M-Instruct.Q4_1.gguf");
}

const tempDirs = [];
export function tempDir(label) {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), `modelfactory-e2e-${label}-`));
  tempDirs.push(d);
  return d;
}
export function removeTempDirs() {
  if (process.env.KEEP_TMP) {
    if (tempDirs.length) console.log(`kept (KEEP_TMP): ${tempDirs.join(" ")}`);
    return;
  }
  for (const d of tempDirs.splice(0)) {
    try {
      fs.rmSync(d, { recursive: true, force: true, maxRetries: 3 });
    } catch (e) {
      console.error(`could not remove ${d}: ${e.message}`);
    }
  }
}

/** Runs the CLI to completion; throws with its output unless it exits 0. */
export function cli(home, args, { allowFail = false } = {}) {
  const r = spawnSync(CLI, ["--home", home, ...args], { encoding: "utf8", timeout: 60_000 });
  if (r.error) throw new Error(`modelfactory ${args.join(" ")}: ${r.error.message}`);
  if (!allowFail && r.status !== 0) {
    throw new Error(`modelfactory --home ${home} ${args.join(" ")} exited ${r.status}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  }
  return r;
}

/** Registers the default model in a workspace and returns `models list --json`'s entry for it. */
export function registerDefaultModel(home) {
  cli(home, ["models", "add", DEFAULT_GGUF, "--name", DEFAULT_MODEL_NAME]);
  const listed = cli(home, ["models", "list", "--json"]).stdout;
  let models;
  try {
    models = JSON.parse(listed);
  } catch (e) {
    throw new Error(`models list --json printed something that is not JSON (${e.message}):\n${listed}`);
  }
  if (!Array.isArray(models)) throw new Error(`models list --json is not an array: ${listed}`);
  const real = fs.realpathSync(DEFAULT_GGUF);
  const model = models.find((m) => m.path === real || m.path === DEFAULT_GGUF);
  if (!model) {
    throw new Error(`models list --json has no entry with path ${real}: ${listed}`);
  }
  return { model, models };
}

/** Child processes to end when the test ends, however it ends. */
const children = new Set();
export function track(child) {
  children.add(child);
  child.on("exit", () => children.delete(child));
  return child;
}
/** The last resort, on exit or a signal: no waiting, so no graceful shutdown either. */
export function killChildren() {
  for (const c of children) {
    try {
      c.kill("SIGKILL");
    } catch {
      /* already gone */
    }
  }
}
process.on("exit", killChildren);
for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"]) {
  process.on(sig, () => {
    killChildren();
    removeTempDirs();
    process.exit(128 + (os.constants.signals[sig] ?? 1));
  });
}

/**
 * Starts `modelfactory serve` and resolves once it prints its address. Returns
 * { child, url, output() }. Rejects if it exits first or says nothing in `ms`.
 */
export function startServe(home, args, ms = 20_000) {
  const child = track(spawn(CLI, ["--home", home, "serve", ...args], { stdio: ["ignore", "pipe", "pipe"] }));
  let out = "";
  child.stdout.setEncoding("utf8");
  child.stderr.setEncoding("utf8");
  child.stderr.on("data", (d) => (out += d));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`modelfactory serve printed no address in ${ms} ms; output:\n${out}`)), ms);
    child.stdout.on("data", (d) => {
      out += d;
      const m = out.match(/^ModelFactory studio: (http:\/\/\S+)$/m);
      if (m) {
        clearTimeout(timer);
        resolve({ child, url: m[1], output: () => out });
      }
    });
    child.on("exit", (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`modelfactory serve exited (${code ?? signal}) before printing its address; output:\n${out}`));
    });
  });
}

/** Runs a command that is expected to exit by itself; resolves { code, output }. */
export function runToExit(cmd, args, ms = 20_000) {
  const child = track(spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"] }));
  let out = "";
  child.stdout.on("data", (d) => (out += d));
  child.stderr.on("data", (d) => (out += d));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`${path.basename(cmd)} ${args.join(" ")} was still running after ${ms} ms; output:\n${out}`));
    }, ms);
    child.on("exit", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, output: out });
    });
  });
}

/** Stops every tracked child and waits for them to be gone. */
export async function stopAll() {
  await Promise.all([...children].map((c) => stop(c)));
}

/** Stops a child and waits for it to be gone. */
export async function stop(child, ms = 5000) {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise((r) => child.once("exit", r));
  child.kill("SIGTERM");
  const t = setTimeout(() => child.kill("SIGKILL"), ms);
  await gone;
  clearTimeout(t);
}

/**
 * Runs a test's `main()` and ends the process: on failure prints `FAIL: message` and either the
 * assertion's actual/expected (when it has its own message) or the first stack lines, and
 * screenshots the browser's first page into OUT_DIR/`failureScreenshot`;
 * then, however it went, closes the browser, stops the tracked children and removes the temp
 * folders (unless `cleanup` is false), prints "<name> passed in Xs" or "<name> FAILED after Xs"
 * and exits 0 or 1. `browser` is a function returning the browser (context), since tests assign
 * theirs inside main(). Never returns.
 */
export async function runTest(name, main, { browser = () => undefined, failureScreenshot, cleanup = true } = {}) {
  const started = performance.now();
  let code = 0;
  try {
    await main();
  } catch (e) {
    code = 1;
    console.error(`\nFAIL: ${e?.message}`);
    if (e instanceof assert.AssertionError) {
      if (!e.generatedMessage) console.error(`  actual:   ${inspect(e.actual, { depth: 4 })}\n  expected: ${inspect(e.expected, { depth: 4 })}`);
    } else if (e?.stack) {
      console.error(e.stack.split("\n").slice(1, 6).join("\n"));
    }
    if (failureScreenshot) {
      try {
        const page = browser()?.pages()[0];
        if (page) await page.screenshot({ path: path.join(OUT_DIR, failureScreenshot), fullPage: true });
      } catch {
        /* best effort */
      }
    }
  }
  try {
    await browser()?.close();
  } catch {
    /* best effort */
  }
  if (cleanup) {
    await stopAll();
    removeTempDirs();
  }
  const secs = ((performance.now() - started) / 1000).toFixed(1);
  console.log(code === 0 ? `\n${name} passed in ${secs}s` : `\n${name} FAILED after ${secs}s`);
  process.exit(code);
}
