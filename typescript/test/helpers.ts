import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { test } from "node:test";
import { Client, NotFound, type Task } from "../src/index.js";

export interface Env {
  backend: "sqlite" | "postgres";
  url: string;
  namespace: string;
  /** A new client on this test's database and namespace (closed after the test). */
  client(): Client;
}

const PG_URL = process.env["INLOOP_TEST_PG_URL"];
const REQUIRE_PG = process.env["INLOOP_REQUIRE_PG"] === "1";

/** Registers `name` once per backend: SQLite always, PostgreSQL when INLOOP_TEST_PG_URL is set. */
export function scenario(name: string, fn: (env: Env) => Promise<void>, timeoutMs = 30_000): void {
  test(`${name} [sqlite]`, { timeout: timeoutMs }, async () => {
    const dir = mkdtempSync(join(tmpdir(), "inloop-ts-"));
    try {
      await run({ backend: "sqlite", url: `sqlite://${dir}/x.db` }, fn);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
  if (PG_URL === undefined || PG_URL === "") {
    if (REQUIRE_PG) {
      test(`${name} [postgres]`, () => {
        throw new Error("INLOOP_REQUIRE_PG=1 but INLOOP_TEST_PG_URL is not set");
      });
    } else {
      test(`${name} [postgres]`, { skip: "INLOOP_TEST_PG_URL is not set" }, () => undefined);
    }
  } else {
    test(`${name} [postgres]`, { timeout: timeoutMs }, async () => {
      await run({ backend: "postgres", url: PG_URL }, fn);
    });
  }
}

async function run(base: Pick<Env, "backend" | "url">, fn: (env: Env) => Promise<void>): Promise<void> {
  const namespace = `t-${randomBytes(6).toString("hex")}`;
  const clients: Client[] = [];
  const env: Env = {
    ...base,
    namespace,
    client() {
      const c = new Client({ databaseUrl: base.url, namespace });
      clients.push(c);
      return c;
    },
  };
  try {
    await fn(env);
  } finally {
    for (const c of clients) await c.close();
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls until the task `key` names exists (another party is creating it). */
export async function taskByKey(client: Client, key: string, withinMs = 10_000): Promise<Task> {
  const until = Date.now() + withinMs;
  for (;;) {
    try {
      return await client.getByKey(key);
    } catch (e) {
      if (!(e instanceof NotFound) || Date.now() > until) throw e;
    }
    await sleep(20);
  }
}
