// A traced TypeScript agent (python/tests/test_tracing.py): asks with an explicit traceparent
// on the embedded engine, answers itself from a second client, prints the task id as JSON.
// Usage: node ts_otel_agent.mjs DATABASE_URL KEY TRACEPARENT
import { awaitHuman, Client } from "../../typescript/dist/src/index.js";

const [url, key, traceparent] = process.argv.slice(2);
const asker = new Client({ databaseUrl: url });
const answerer = new Client({ databaseUrl: url });
const answering = (async () => {
  let page;
  while ((page = await answerer.list({ keyPrefix: key })).items.length === 0) {
    await new Promise((r) => setTimeout(r, 20));
  }
  await new Promise((r) => setTimeout(r, 200)); // the wait shows in the trace
  await answerer.answer(page.items[0].id, { approved: true }, { by: "alice" });
})();
const answer = await awaitHuman({
  title: "Approve?",
  payload: { order: key },
  responseSchema: { type: "object", properties: { approved: { type: "boolean" } }, required: ["approved"] },
  key,
  client: asker,
  traceparent,
});
await answering;
const task = (await asker.list({ keyPrefix: key })).items[0];
console.log(JSON.stringify({ answer, task_id: task.id }));
await asker.close();
await answerer.close();
