/**
 * Resume leases shared by the framework adapters' resumers (LangGraph, Mastra): before a
 * resumer resumes a run for an ended task, it creates the inloop task keyed
 * `inloop-resume:<task id>:<attempt>`; only the process whose create made it new holds the
 * lease. A lease that expires (its holder died mid-resume) lets the next attempt take over;
 * one answered `{resumed: true}` means the resume is done.
 *
 * @internal
 * @module
 */

import { hostname } from "node:os";
import type { Client, Timeout } from "./client.js";
import { Conflict } from "./errors.js";
import type { Task } from "./types.js";

/** Who holds the leases this process takes. */
export const holder = `resumer:${hostname()}:${process.pid}`;

/** The lease on resuming for `taskId`, or `null` when another resumer holds it or is done. */
export async function acquire(client: Client, taskId: string, ns: string, ttl: Timeout, title: string): Promise<Task | null> {
  for (let attempt = 0; attempt < 1000; attempt++) {
    const lease = await client.create({
      title,
      payload: { task_id: taskId, attempt },
      responseSchema: { type: "object" },
      key: `inloop-resume:${taskId}:${attempt}`,
      timeout: ttl,
      namespace: ns,
    });
    if (lease.created) return lease;
    if (lease.status === "completed") return null;
    if (lease.status === "pending" && (lease.deadline === null || lease.deadline.getTime() > Date.now())) return null;
  }
  throw new Error(`gave up leasing the resume of task ${taskId}`);
}

/** Marks the resume under `lease` done (a lease that expired meanwhile is left as it is). */
export async function release(client: Client, lease: Task, channel: string): Promise<void> {
  try {
    await client.answer(lease.id, { resumed: true }, { by: holder, channel });
  } catch (e) {
    if (!(e instanceof Conflict)) throw e;
  }
}
