// The README's TypeScript quickstart, as tests/release/install.sh compiles (tsc --strict,
// against the installed package's types) and runs it from the installed npm tarballs.
// The key comes from QUICKSTART_KEY, the database from INLOOP_DATABASE_URL.
import { z } from "zod";
import { awaitHuman } from "inloop";

const Refund = z.object({ orderId: z.string(), amount: z.number().min(0) });
const Decision = z.object({ approved: z.boolean(), note: z.string().optional() });

const key = process.env["QUICKSTART_KEY"];
if (key === undefined) throw new Error("QUICKSTART_KEY is not set");

const decision = await awaitHuman({
  title: "Approve this refund?",
  payload: { orderId: "A-1", amount: 500 },
  payloadSchema: Refund,
  responseSchema: Decision,
  key,
  timeout: "2m",
});
const approved: boolean = decision.approved;
console.log(`decision: ${JSON.stringify({ approved, note: decision.note })}`);
