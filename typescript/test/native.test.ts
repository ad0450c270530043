// The addon loader (src/native.ts over the napi-generated native/index.cjs): on a platform
// inloop ships no addon for, the first native call fails with a ConfigError that names the
// platform and what inloop ships. Other platforms are simulated in a child Node process whose
// process.platform / process.arch are redefined before the loader runs.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { ConfigError } from "../src/index.js";
import { SHIPPED_PLATFORMS, missingAddon, native, platformName } from "../src/native.js";

interface Seen {
  name?: string;
  code?: string;
  message?: string;
  details?: Record<string, unknown>;
  loaded?: boolean;
}

/** Loads the addon in a child process that believes it runs on `platform`/`arch`. */
function loadAs(platform: string, arch: string): Seen {
  const loader = new URL("../src/native.js", import.meta.url).href;
  const script = `
    Object.defineProperty(process, "platform", { value: ${JSON.stringify(platform)} });
    Object.defineProperty(process, "arch", { value: ${JSON.stringify(arch)} });
    const { native } = await import(${JSON.stringify(loader)});
    try {
      native();
      console.log(JSON.stringify({ loaded: true }));
    } catch (e) {
      console.log(JSON.stringify({ name: e.name, code: e.code, message: e.message, details: e.details }));
    }`;
  const run = spawnSync(process.execPath, ["--input-type=module", "-e", script], { encoding: "utf8" });
  assert.equal(run.status, 0, run.stderr);
  return JSON.parse(run.stdout.trim().split("\n").pop() ?? "{}") as Seen;
}

for (const [platform, arch, name] of [
  ["darwin", "arm64", "darwin-arm64"],
  ["win32", "x64", "win32-x64"],
  ["linux", "arm64", "linux-arm64-gnu"],
  ["freebsd", "x64", "freebsd-x64"],
] as const) {
  test(`on ${name} the loader fails with a ConfigError naming the platform`, () => {
    const seen = loadAs(platform, arch);
    assert.equal(seen.loaded, undefined, "an addon loaded on a platform inloop ships none for");
    assert.equal(seen.name, "ConfigError");
    assert.equal(seen.code, "config");
    assert.equal(
      seen.message,
      `inloop: no native addon for platform ${name}: inloop ships prebuilt addons only for ` +
        "linux-x64-gnu; on this platform build the addon from a checkout " +
        "(cd typescript && npm ci && npm run build, needs Rust)",
    );
    assert.deepEqual(seen.details, { platform: name, package: `inloop-${name}`, shipped: ["linux-x64-gnu"] });
  });
}

test("on this machine (linux-x64-gnu) the dev tree's local build loads", () => {
  assert.equal(platformName(), "linux-x64-gnu");
  assert.deepEqual(loadAs("linux", "x64"), { loaded: true });
  assert.equal(typeof native().Engine.open, "function");
});

test("a shipped platform without its package: the error says which package to install", () => {
  const cause = new Error("Cannot find module 'inloop-linux-x64-gnu'");
  const e = missingAddon("linux-x64-gnu", cause);
  assert.ok(e instanceof ConfigError);
  assert.equal(e.cause, cause);
  assert.match(e.message, /its platform package inloop-linux-x64-gnu is not installed/);
  assert.match(e.message, /npm install inloop-linux-x64-gnu/);
});

test("SHIPPED_PLATFORMS matches package.json's napi.targets and typescript/npm/", () => {
  const root = fileURLToPath(new URL("../../", import.meta.url));
  const pkg = JSON.parse(readFileSync(`${root}package.json`, "utf8")) as { napi: { targets: string[] } };
  const names: Record<string, string> = { "x86_64-unknown-linux-gnu": "linux-x64-gnu" };
  assert.deepEqual(pkg.napi.targets.map((t) => names[t] ?? t), [...SHIPPED_PLATFORMS]);
  for (const platform of SHIPPED_PLATFORMS) {
    const sub = JSON.parse(readFileSync(`${root}npm/${platform}/package.json`, "utf8")) as Record<string, unknown>;
    assert.equal(sub["name"], `inloop-${platform}`);
    assert.equal(sub["main"], `inloop.${platform}.node`);
  }
});
