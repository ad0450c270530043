// Answers the task a key names, from TypeScript. Usage:
// node ts_answer.mjs DATABASE_URL NAMESPACE KEY RESPONSE_JSON
import { Client } from "../../typescript/dist/src/index.js";

const [url, namespace, key, response] = process.argv.slice(2);
const client = new Client({ databaseUrl: url, namespace });
try {
  const task = await client.getByKey(key);
  const done = await client.answer(task.id, JSON.parse(response), { by: "ts-reviewer" });
  console.log(JSON.stringify({ event: "answered", status: done.status, by: done.answeredBy }));
} catch (e) {
  console.log(JSON.stringify({ event: "error", code: e.code, message: e.message }));
  process.exitCode = 1;
} finally {
  await client.close();
}
