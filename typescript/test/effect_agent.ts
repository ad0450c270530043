// A process that runs one exactly-once effect, for the crash tests of `once`:
//   node effect_agent.js MODE LOG URL NAMESPACE KEY
// The effect appends a line to LOG and returns how many lines LOG has. MODE: `run` (prints the
// result or the error code as one JSON line), `hang` (prints {"event":"inside"} inside the
// effect and waits to be killed), `kill-after-record` (SIGKILLs itself right after the result
// was recorded, before `once` returns).
import { appendFileSync, readFileSync } from "node:fs";
import { Client, InloopError, once } from "../src/index.js";
import { _hooks } from "../src/effects.js";

const [mode, log, url, namespace, key] = process.argv.slice(2);
if (mode === undefined || log === undefined || url === undefined || namespace === undefined || key === undefined) {
  console.error("usage: effect_agent.js MODE LOG URL NAMESPACE KEY");
  process.exit(2);
}
const client = new Client({ databaseUrl: url, namespace });
const emit = (e: unknown): void => void process.stdout.write(JSON.stringify(e) + "\n");
if (mode === "kill-after-record") {
  _hooks.afterRecord = () => {
    emit({ event: "recorded" });
    process.kill(process.pid, "SIGKILL");
  };
}
try {
  const result = await once(key, async () => {
    appendFileSync(log, `${process.pid}\n`);
    if (mode === "hang") {
      emit({ event: "inside" });
      await new Promise((r) => setTimeout(r, 60_000));
    }
    return { lines: readFileSync(log, "utf8").split("\n").filter((l) => l !== "").length };
  }, { client });
  emit({ event: "result", result });
} catch (e) {
  if (!(e instanceof InloopError)) throw e;
  emit({ event: "error", code: e.code, details: e.details });
}
await client.close();
