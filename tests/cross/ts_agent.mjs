// A TypeScript agent for the cross-language tests: asks once with a key, prints the outcome
// as one JSON line. Usage: node ts_agent.mjs DATABASE_URL NAMESPACE KEY
import { awaitHuman, Client } from "../../typescript/dist/src/index.js";

const [url, namespace, key] = process.argv.slice(2);
const client = new Client({ databaseUrl: url, namespace });
const Decision = {
  type: "object",
  properties: { approved: { type: "boolean" }, note: { type: ["string", "null"] } },
  required: ["approved"],
};
console.log(JSON.stringify({ event: "started" }));
try {
  const decision = await awaitHuman({
    title: "Approve this refund?",
    payload: { order_id: key, amount: 12.5 },
    responseSchema: Decision,
    key,
    client,
  });
  const page = await client.list({ keyPrefix: key });
  console.log(
    JSON.stringify({ event: "answered", decision, task_ids: page.items.map((t) => t.id) }),
  );
} catch (e) {
  console.log(JSON.stringify({ event: "error", code: e.code, message: e.message }));
} finally {
  await client.close();
}
