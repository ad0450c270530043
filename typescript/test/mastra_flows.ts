// The Mastra workflow of the adapter tests: a human step (inloop) then a refund step whose side
// effect is a line appended to a file, so a test can count how often it ran.
import { appendFileSync } from "node:fs";
import { Mastra } from "@mastra/core";
import { createStep, createWorkflow } from "@mastra/core/workflows";
import { LibSQLStore } from "@mastra/libsql";
import { z } from "zod";
import { verifiers, type Client, type Timeout } from "../src/index.js";
import { humanStep } from "../src/mastra.js";

export const Order = z.object({ orderId: z.string(), amount: z.number().positive() });
export const Decision = z.object({ approved: z.boolean(), note: z.string().max(200).optional() });

export interface Flow {
  mastra: Mastra;
  close(): Promise<void>;
}

/** The Mastra app: storage in the LibSQL file `store`, side effects appended to `effects`. */
export function refundApp(
  client: Client,
  store: string,
  effects: string,
  timeout?: Timeout,
  onTimeout?: { default: z.input<typeof Decision> },
): Flow {
  const approve = humanStep({
    id: "approve",
    title: (o) => `Refund ${o.amount} EUR for ${o.orderId}?`,
    inputSchema: Order,
    resumeSchema: Decision,
    client,
    ...(timeout !== undefined ? { timeout } : {}),
    ...(onTimeout !== undefined ? { onTimeout } : {}),
  });
  const refund = createStep({
    id: "refund",
    inputSchema: Decision,
    outputSchema: z.object({ refunded: z.boolean(), note: z.string().nullable() }),
    execute: async ({ inputData, getInitData }) => {
      const order = getInitData<z.infer<typeof Order>>();
      if (inputData.approved) appendFileSync(effects, `refund ${order.orderId} ${order.amount} pid=${process.pid}\n`);
      return { refunded: inputData.approved, note: inputData.note ?? null };
    },
  });
  const workflow = createWorkflow({
    id: "refund-flow",
    inputSchema: Order,
    outputSchema: z.object({ refunded: z.boolean(), note: z.string().nullable() }),
  })
    .then(approve)
    .then(refund)
    .commit();
  const storage = new LibSQLStore({ id: "inloop-test", url: `file:${store}` });
  const mastra = new Mastra({ workflows: { refund: workflow }, storage, logger: false });
  return {
    mastra,
    async close() {
      await client.close();
    },
  };
}

export const Partial = z.object({ approved: z.boolean(), amount: z.number() });

/** A one-step app whose human step is verified by a core rule: the refund is at most the order. */
export function cappedApp(client: Client, store: string): Flow {
  const approve = humanStep({
    id: "approve",
    title: "How much do we refund?",
    inputSchema: Order,
    resumeSchema: Partial,
    client,
    verification: verifiers.rules(
      [{ name: "cap", check: { "<=": [{ var: "/answer/amount" }, { var: "/payload/amount" }] }, message: "at most the order amount" }],
      { maxAttempts: 2 },
    ),
  });
  const workflow = createWorkflow({ id: "capped", inputSchema: Order, outputSchema: Partial }).then(approve).commit();
  const storage = new LibSQLStore({ id: "inloop-test-capped", url: `file:${store}` });
  const mastra = new Mastra({ workflows: { capped: workflow }, storage, logger: false });
  return { mastra, close: () => client.close() };
}

/** Two human steps in parallel (legal and finance sign off), then a step that needs both. */
export function parallelApp(client: Client, store: string, effects: string): Flow {
  const legal = humanStep({ id: "legal", title: "Legal: refund?", inputSchema: Order, resumeSchema: Decision, client });
  const finance = humanStep({ id: "finance", title: "Finance: refund?", inputSchema: Order, resumeSchema: Decision, client });
  const both = createStep({
    id: "both",
    inputSchema: z.object({ legal: Decision, finance: Decision }),
    outputSchema: z.object({ refunded: z.boolean() }),
    execute: async ({ inputData, getInitData }) => {
      const refunded = inputData.legal.approved && inputData.finance.approved;
      if (refunded) appendFileSync(effects, `refund ${getInitData<z.infer<typeof Order>>().orderId}\n`);
      return { refunded };
    },
  });
  const workflow = createWorkflow({ id: "two-sign-offs", inputSchema: Order, outputSchema: z.object({ refunded: z.boolean() }) })
    .parallel([legal, finance])
    .then(both)
    .commit();
  const storage = new LibSQLStore({ id: "inloop-test-parallel", url: `file:${store}` });
  const mastra = new Mastra({ workflows: { twoSignOffs: workflow }, storage, logger: false });
  return { mastra, close: () => client.close() };
}
