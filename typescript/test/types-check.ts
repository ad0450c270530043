// Compile-time checks only (this module has no runtime effect worth running).
import { z } from "zod";
import { z as z3 } from "zod/v3";
import type { Engine } from "../native/index.js";
import type * as Addon from "../native/index.js";
import type { NativeEngine, NativeModule } from "../src/native.js";
import type { Approvers, AwaitHumanOptions, Infer } from "../src/index.js";
import { humanStep } from "../src/mastra.js";
import type { Step } from "@mastra/core/workflows";

type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
export type Assert<T extends true> = T;

const D4 = z.object({ approved: z.boolean(), note: z.string().default("") });
const D3 = z3.object({ approved: z3.boolean(), note: z3.string().default("") });
export type C1 = Assert<Equal<Infer<typeof D4>, { approved: boolean; note: string }>>;
export type C2 = Assert<Equal<Infer<typeof D3>, { approved: boolean; note: string }>>;
export type C3 = Assert<Equal<Infer<{ type: "object" }>, unknown>>;
// The hand-written NativeEngine matches the generated native/index.d.ts.
export type C4 = Assert<Engine extends NativeEngine ? true : false>;
// ... and so does the hand-written NativeModule (Engine.open, resolveTarget, ...).
export type C5 = Assert<Pick<typeof Addon, "Engine" | "resolveDatabaseUrl" | "resolveTarget" | "verifyWebhook" | "taskDigest" | "verifyDigest" | "telemetryInit" | "telemetryShutdown"> extends NativeModule ? true : false>;

// onTimeout's default is an answer in the schema's input type (fields with defaults optional).
const Approval = z.object({ approved: z.boolean(), comment: z.string().default("") });
export const defaultOk: AwaitHumanOptions<typeof Approval> = {
  title: "Wire?",
  payload: {},
  responseSchema: Approval,
  approvers: { anyOf: ["alice", "bob"], required: 2, rejectOn: "majority" },
  onTimeout: { default: { approved: false } },
};
export const defaultBad: AwaitHumanOptions<typeof Approval> = {
  title: "Wire?",
  payload: {},
  responseSchema: Approval,
  // @ts-expect-error: not an answer of the schema
  onTimeout: { default: { approved: "no" } },
};
// @ts-expect-error: rejectOn is "any" or "majority"
export const badRejectOn: Approvers = { anyOf: ["a"], rejectOn: "all" };

// inloop/mastra: humanStep's step types come from its Zod schemas (not `any`).
const MOrder = z.object({ orderId: z.string(), amount: z.number() });
const MDecision = z.object({ approved: z.boolean(), note: z.string().optional() });
export const mApprove = humanStep({
  id: "approve",
  title: (o) => `Refund ${o.amount.toFixed(2)} for ${o.orderId}?`,
  inputSchema: MOrder,
  resumeSchema: MDecision,
});
export type M1 = Assert<
  typeof mApprove extends Step<
    "approve",
    unknown,
    { orderId: string; amount: number },
    { approved: boolean; note?: string | undefined },
    { approved: boolean; note?: string | undefined },
    { orderId: string; amount: number }
  >
    ? true
    : false
>;
type StepTypes<T> = T extends Step<string, unknown, infer In, infer Out, infer Res, infer Sus> ? [In, Out, Res, Sus] : never;
export type M2 = Assert<
  Equal<
    StepTypes<typeof mApprove>,
    [{ orderId: string; amount: number }, { approved: boolean; note?: string | undefined }, { approved: boolean; note?: string | undefined }, { orderId: string; amount: number }]
  >
>;
export const mRefunded = humanStep({
  id: "approve2",
  title: "Refund?",
  inputSchema: MOrder,
  resumeSchema: MDecision,
  outputSchema: z.object({ ok: z.boolean() }),
  output: (d, o) => ({ ok: d.approved && o.amount > 0 }),
  onTimeout: { default: { approved: false } },
});
// @ts-expect-error: the default must be an answer of the resumeSchema
humanStep({ id: "x", title: "t", inputSchema: MOrder, resumeSchema: MDecision, onTimeout: { default: { approved: "no" } } });
export type M3 = Assert<Equal<StepTypes<typeof mRefunded>[1], { ok: boolean }>>;
