// An agent that needs a person's approval before it refunds an order (TypeScript).
//
// Build and run it (from typescript/):  npm run build && node dist/examples/refund_approval.js
// then answer from a second terminal in the same directory:
//
//     .venv/bin/inloop tasks answer --key refund-A-1 '{"approved": true, "note": "fine"}'
//
// Kill it while it waits and start it again: same key, same request, and the answer if one
// came while it was down.
import { z } from "zod";
import { awaitHuman, Cancelled, Client, TimedOut } from "inloop";

const Refund = z.object({
  orderId: z.string(),
  amount: z.number().min(0).describe("Amount in EUR"),
  reason: z.string(),
});
const Decision = z.object({
  approved: z.boolean(),
  note: z.string().optional().describe("Shown to the customer"),
});

const refund: z.infer<typeof Refund> = {
  orderId: "A-1",
  amount: 500,
  reason: "Parcel arrived damaged",
};
const key = `refund-${refund.orderId}`;
const client = new Client();

console.log(`agent: asking a person to approve a refund of ${refund.amount} EUR (${key})`);
console.log("agent: answer it from another terminal with");
console.log(`         .venv/bin/inloop tasks answer --key ${key} '{"approved": true}'`);
try {
  const decision = await awaitHuman({
    title: "Approve this refund?",
    payload: refund,
    payloadSchema: Refund,
    responseSchema: Decision,
    key,
    timeout: process.env.REFUND_TIMEOUT ?? "4h",
    client,
  });
  if (decision.approved) {
    console.log(`agent: approved (${decision.note ?? "no note"}); refunding ${refund.orderId}`);
  } else {
    console.log(`agent: rejected (${decision.note ?? "no note"}); telling the customer`);
  }
} catch (e) {
  if (e instanceof TimedOut) console.log("agent: nobody answered in time; escalating");
  else if (e instanceof Cancelled) console.log(`agent: the request was cancelled (${e.message})`);
  else throw e;
} finally {
  await client.close();
}
