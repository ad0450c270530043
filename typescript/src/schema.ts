/**
 * Schema glue: Zod 4, Zod 3 or a plain JSON Schema to the JSON Schema the core stores and
 * checks, and accepted answers back to the schema's output type.
 * @module
 */

import { InvalidAnswer, InvalidArgument, InvalidPayload, InvalidSchema, type FieldError } from "./errors.js";
import type { JsonSchema } from "./types.js";

interface SafeParseResult {
  success: boolean;
  data?: unknown;
  error?: { issues: ReadonlyArray<{ path: ReadonlyArray<PropertyKey>; message: string }> };
}

/** A Zod 4 schema (classic or mini), described structurally so `zod` stays optional. */
export interface Zod4Schema<Output = unknown> {
  readonly _zod: { readonly output: Output };
  safeParse(value: unknown): unknown;
}

/** A Zod 3 schema (including `zod/v3`), described structurally. */
export interface Zod3Schema<Output = unknown> {
  readonly _def: unknown;
  readonly _output: Output;
  safeParse(value: unknown): unknown;
}

/** What a schema argument may be: a Zod 4 schema, a Zod 3 schema, or a JSON Schema object. */
export type Schema = Zod4Schema | Zod3Schema | JsonSchema;

/**
 * The type a schema's answers parse to: `z.output<S>` for a Zod schema, `unknown` for a
 * plain JSON Schema.
 */
export type Infer<S> = S extends { readonly _zod: { readonly output: infer O } }
  ? O
  : S extends { readonly _def: unknown; readonly _output: infer O }
    ? O
    : unknown;

/**
 * The type an answer is written in, before parsing: `z.input<S>` for a Zod schema (fields
 * with defaults optional), `unknown` for a plain JSON Schema. What `onTimeout: { default }`
 * takes: the core checks it against the response schema, as it checks people's answers.
 */
export type InferInput<S> = S extends { readonly _zod: { readonly input: infer I } }
  ? I
  : S extends { readonly _def: unknown; readonly _input: infer I }
    ? I
    : unknown;

type Kind = "zod4" | "zod3" | "json";

function kind(schema: unknown, what: string): Kind {
  if (typeof schema !== "object" || schema === null || Array.isArray(schema)) {
    // Zod schemas are objects; anything else is not a schema.
    throw new InvalidArgument(`${what} must be a Zod schema or a JSON Schema object, not ${describe(schema)}`);
  }
  if ("_zod" in schema) return "zod4";
  if ("_def" in schema && typeof (schema as { safeParse?: unknown }).safeParse === "function") return "zod3";
  return "json";
}

function describe(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "an array";
  return typeof v;
}

interface Zod4Core {
  toJSONSchema(schema: unknown, params?: { io?: "input" | "output"; unrepresentable?: "throw" | "any" }): unknown;
}

interface ZodToJsonSchemaModule {
  zodToJsonSchema(schema: unknown, options?: Record<string, unknown>): unknown;
}

async function zod4Core(): Promise<Zod4Core> {
  try {
    // Present in zod 4 and in zod >= 3.25 (which ships the v4 API): the schema's own Zod.
    return (await import("zod/v4/core")) as unknown as Zod4Core;
  } catch (e) {
    throw new InvalidSchema("a Zod 4 schema was given but `zod/v4/core` cannot be imported", { cause: e });
  }
}

async function zodToJsonSchema(): Promise<ZodToJsonSchemaModule> {
  const name = "zod-to-json-schema";
  try {
    return (await import(name)) as ZodToJsonSchemaModule;
  } catch (e) {
    throw new InvalidSchema(
      "a Zod 3 schema needs the `zod-to-json-schema` package (npm install zod-to-json-schema), " +
        "or use Zod 4",
      { cause: e },
    );
  }
}

/**
 * The JSON Schema for `schema`. `io` is `"input"` for the response (the form a person fills
 * in: fields with defaults are optional) and `"output"` for a payload schema.
 * @internal
 */
export async function toJsonSchema(schema: Schema, io: "input" | "output", what: string): Promise<JsonSchema> {
  const k = kind(schema, what);
  let out: unknown;
  if (k === "json") {
    out = schema;
  } else if (k === "zod4") {
    // Never through zod-to-json-schema: it silently returns an empty schema for Zod 4.
    const core = await zod4Core();
    try {
      out = core.toJSONSchema(schema, { io });
    } catch (e) {
      throw new InvalidSchema(`${what} cannot be represented as JSON Schema: ${message(e)}`, { cause: e });
    }
  } else {
    const mod = await zodToJsonSchema();
    try {
      out = mod.zodToJsonSchema(schema, { $refStrategy: "root" });
    } catch (e) {
      throw new InvalidSchema(`${what} cannot be represented as JSON Schema: ${message(e)}`, { cause: e });
    }
  }
  if (typeof out !== "object" || out === null || Array.isArray(out)) {
    throw new InvalidSchema(`${what} did not give a JSON Schema object`);
  }
  return out as JsonSchema;
}

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function pointer(path: ReadonlyArray<PropertyKey>): string {
  return path.map((p) => "/" + String(p).replace(/~/g, "~0").replace(/\//g, "~1")).join("");
}

function safeParse(schema: Schema, value: unknown): { ok: true; value: unknown } | { ok: false; errors: FieldError[] } {
  const r = (schema as { safeParse(v: unknown): SafeParseResult }).safeParse(value);
  if (r.success) return { ok: true, value: r.data };
  const issues = r.error?.issues ?? [];
  return { ok: false, errors: issues.map((i) => ({ path: pointer(i.path), message: i.message })) };
}

/**
 * The payload as given to the core: a Zod payload schema parses it first (fills defaults,
 * and a bad payload fails here with field errors).
 * @internal
 */
export function parsePayload(schema: Schema | undefined, payload: unknown): unknown {
  if (schema === undefined || kind(schema, "payloadSchema") === "json") return payload;
  const r = safeParse(schema, payload);
  if (r.ok) return r.value;
  throw new InvalidPayload(
    "the payload does not match payloadSchema: " + r.errors.map((e) => `${e.path || "/"}: ${e.message}`).join("; "),
    { details: { errors: r.errors } },
  );
}

/**
 * The accepted answer as the schema's output type (a Zod schema fills its defaults); a plain
 * JSON Schema returns the answer as is.
 * @internal
 */
export function parseAnswer<S extends Schema>(schema: S, value: unknown): Infer<S> {
  if (kind(schema, "responseSchema") === "json") return value as Infer<S>;
  const r = safeParse(schema, value);
  if (r.ok) return r.value as Infer<S>;
  // The core accepted it against the JSON Schema; the Zod schema is stricter (a refinement).
  throw new InvalidAnswer(
    "the accepted answer does not fit the Zod schema: " +
      r.errors.map((e) => `${e.path || "/"}: ${e.message}`).join("; "),
    { details: { errors: r.errors } },
  );
}
