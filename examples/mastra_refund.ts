// A Mastra workflow that needs a person's approval before it refunds an order.
// Build with `cd typescript && npm run build`, run `node typescript/dist/examples/mastra_refund.js`,
// then answer from a second terminal:
//   .venv/bin/inloop tasks list
//   .venv/bin/inloop tasks answer ID '{"approved": true, "note": "fine"}'
// Mastra keeps the suspended run in .inloop/mastra.db (LibSQL): if this process dies, a
// `new Resumer(mastra).runOnce()` in any process with the same storage finishes the run.
import { mkdirSync } from "node:fs";
import { Mastra } from "@mastra/core";
import { createStep, createWorkflow } from "@mastra/core/workflows";
import { LibSQLStore } from "@mastra/libsql";
import { z } from "zod";
import { humanStep, runWorkflow } from "inloop/mastra";

const Order = z.object({ orderId: z.string(), amount: z.number() });
const Decision = z.object({ approved: z.boolean(), note: z.string().optional() });

const approve = humanStep({
  id: "approve",
  title: (o) => `Approve the refund of ${o.amount} EUR for order ${o.orderId}?`,
  inputSchema: Order,
  resumeSchema: Decision,
  timeout: "4h",
});
const refund = createStep({
  id: "refund",
  inputSchema: Decision,
  outputSchema: z.object({ outcome: z.string() }),
  execute: async ({ inputData: d }) => ({ outcome: `${d.approved ? "refunded" : "refused"} (${d.note ?? "no note"})` }),
});
const workflow = createWorkflow({ id: "refund", inputSchema: Order, outputSchema: z.object({ outcome: z.string() }) })
  .then(approve)
  .then(refund)
  .commit();
mkdirSync(".inloop", { recursive: true });
const mastra = new Mastra({
  workflows: { refund: workflow },
  storage: new LibSQLStore({ id: "example", url: "file:.inloop/mastra.db" }),
  logger: false,
});

console.log("agent: asking a person to approve the refund of order A-1 (500 EUR)");
console.log("agent: answer it with  .venv/bin/inloop tasks list  and  tasks answer ID '{...}'");
const out = await runWorkflow(mastra, "refund", { orderId: "A-1", amount: 500 }, { runId: "refund-A-1" });
const result = out["result"] as { outcome?: string } | undefined;
console.log(`agent: ${out.status === "success" ? String(result?.outcome) : `the run ended ${out.status}`}`);
process.exit(0);
