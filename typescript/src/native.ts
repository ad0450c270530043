/**
 * Loads the native addon (built by `npm run build:native` into `native/`) from ESM.
 * The path logic lives here only: compiled, this file is `dist/src/native.js`.
 * @internal
 */
import { createRequire } from "node:module";

/** The native `Engine` (see `native/index.d.ts`): methods take and return JSON text. */
export interface NativeEngine {
  /** The database URL (password redacted), or the server URL in remote mode. */
  readonly url: string;
  /** `"sqlite"`, `"postgres"` or `"remote"`. */
  readonly backend: string;
  abortHandle(): number;
  abort(handle: number): void;
  create(request: string): Promise<string>;
  ask(request: string, abort?: number | undefined | null): Promise<string>;
  get(id: string): Promise<string>;
  getByKey(namespace: string, key: string): Promise<string>;
  list(filter: string): Promise<string>;
  answer(id: string, response: string, by: string, channel: string): Promise<string>;
  submitVerdict(id: string, verdict: string): Promise<string>;
  cancel(id: string, by: string, channel: string, reason?: string | undefined | null): Promise<string>;
  wait(id: string, timeoutMs?: number | undefined | null, abort?: number | undefined | null): Promise<string>;
  awaitResponse(id: string, abort?: number | undefined | null): Promise<string>;
  audit(id: string): Promise<string>;
  verifyAudit(id: string): Promise<string>;
  effectBegin(namespace: string, key: string, token?: string | undefined | null, by?: string | undefined | null): Promise<string>;
  effectFinish(namespace: string, key: string, token: string, result: string): Promise<string>;
  effectAbort(namespace: string, key: string, token: string, error?: string | undefined | null): Promise<string>;
  effectResolve(namespace: string, key: string, resolution: string): Promise<string>;
  effect(namespace: string, key: string): Promise<string>;
  effects(filter: string): Promise<string>;
  effectAudit(namespace: string, key: string): Promise<string>;
  close(): Promise<void>;
  parked(): number;
}

/** The addon's module exports. */
export interface NativeModule {
  Engine: {
    open(
      url?: string | undefined | null,
      remoteUrl?: string | undefined | null,
      apiKey?: string | undefined | null,
    ): Promise<NativeEngine>;
  };
  resolveDatabaseUrl(explicit?: string | undefined | null): string;
  resolveTarget(
    url?: string | undefined | null,
    remoteUrl?: string | undefined | null,
    apiKey?: string | undefined | null,
  ): { kind: string; url: string };
  taskDigest(task: string, payload: string): string;
  verifyDigest(task: string, payload: string): void;
  verifyWebhook(
    secret: string,
    id: string,
    timestamp: string,
    signature: string,
    body: Buffer,
    toleranceSecs?: number | undefined | null,
  ): void;
  telemetryInit(): boolean;
  telemetryShutdown(): void;
}

let loaded: NativeModule | undefined;

/** The addon, loaded on first use. */
export function native(): NativeModule {
  if (loaded === undefined) {
    const require = createRequire(import.meta.url);
    loaded = require("../../native/index.cjs") as NativeModule;
    startTelemetry(loaded);
  }
  return loaded;
}

/**
 * Traces of the tasks this process touches, when `OTEL_EXPORTER_OTLP_ENDPOINT` (or another
 * standard `OTEL_*` variable) asks for them: the exporter starts here and flushes at exit. A
 * setting inloop cannot honour is a process warning, and tracing stays off.
 */
function startTelemetry(m: NativeModule): void {
  let on = false;
  try {
    on = m.telemetryInit();
  } catch (e) {
    process.emitWarning(`inloop: tracing is off: ${(e as Error).message}`, "InloopTelemetryWarning");
  }
  if (on) process.once("exit", () => m.telemetryShutdown());
}
