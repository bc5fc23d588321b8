/**
 * Turning what a job hands the callback client into a body the backend accepts: numbers made
 * JSON-safe, the timestamp added, the endpoint's schema applied. A body that still fails its
 * schema is a bug in the caller, reported with every problem at once.
 */
import { z } from 'zod';
import { ExitCode, VisionTrainerError } from '../errors.js';
import { ENDPOINTS, type CallbackInput, type CallbackKind, type CallbackPayload } from './schemas.js';

/** A callback body that does not match its endpoint's schema: a programming error. */
export class CallbackPayloadError extends VisionTrainerError {
  readonly kind: CallbackKind;
  readonly issues: z.core.$ZodIssue[];
  constructor(kind: CallbackKind, error: z.ZodError) {
    super(`The ${kind} callback body does not match its schema (src/callbacks/schemas.ts):\n${z.prettifyError(error)}`, {
      exitCode: ExitCode.internal,
      hint: 'This is a bug in the code building the callback, not a backend problem: fix the fields named above.',
    });
    this.kind = kind;
    this.issues = error.issues;
  }
}

/**
 * A copy of `value` that JSON can carry: NaN and ±Infinity become null at any depth (a
 * diverging loss must not break the callback), and undefined object entries are dropped as
 * JSON.stringify would. `onReplaced` hears the path of each number replaced, e.g.
 * `metrics.loss`, so the caller can say which metric was not finite.
 */
export function sanitizeNumbers<T>(value: T, onReplaced?: (path: string) => void): T {
  return sanitizeAt(value, '', onReplaced) as T;
}

function sanitizeAt(value: unknown, path: string, onReplaced?: (path: string) => void): unknown {
  if (typeof value === 'number') {
    if (Number.isFinite(value)) return value;
    onReplaced?.(path || '(value)');
    return null;
  }
  if (Array.isArray(value)) return value.map((item, i) => sanitizeAt(item, `${path}[${i}]`, onReplaced));
  if (isPlainObject(value)) {
    const out: Record<string, unknown> = {};
    for (const [key, item] of Object.entries(value)) {
      if (item === undefined) continue;
      out[key] = sanitizeAt(item, path ? `${path}.${key}` : key, onReplaced);
    }
    return out;
  }
  return value;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (value === null || typeof value !== 'object') return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/** Now as the design writes timestamps: ISO 8601, UTC, `Z` suffix. */
export function isoTimestamp(date: Date = new Date()): string {
  return date.toISOString();
}

export interface BuiltPayload<K extends CallbackKind> {
  body: CallbackPayload<K>;
  /** Paths of the numbers that were NaN/Infinity and are sent as null. */
  nonFinite: string[];
}

/**
 * The wire body for a callback: sanitised, timestamped, validated and with the schema's
 * defaults filled in. Throws CallbackPayloadError when the fields do not fit the schema.
 */
export function buildPayload<K extends CallbackKind>(kind: K, input: CallbackInput<K>, now: Date = new Date()): BuiltPayload<K> {
  const nonFinite: string[] = [];
  const candidate = sanitizeNumbers({ ...(input as object), timestamp: isoTimestamp(now) }, (path) => nonFinite.push(path));
  const schema: z.ZodType = ENDPOINTS[kind].schema;
  const parsed = schema.safeParse(candidate);
  if (!parsed.success) throw new CallbackPayloadError(kind, parsed.error);
  return { body: parsed.data as CallbackPayload<K>, nonFinite };
}

/** The smallest valid body of each progress kind, touching every nested schema once. */
const WARM_UP_INPUTS: { [K in CallbackKind]?: CallbackInput<K> } = {
  heartbeat: { epoch: 0, progress: 0, total_epochs: 1, metrics: { loss: 0 } },
  event: { event_type: 'warm_up', message: '', data: { value: [0, '', true, null, {}] } },
  validation: {
    epoch: 0,
    task_type: 'image_classification',
    primary_metric_name: 'accuracy',
    primary_metric_value: 0,
    metrics: { accuracy: 0 },
    per_class_metrics: [{ class_id: 0, class_name: 'c', precision: 0, recall: 0, ap: 0, support: 0 }],
    confusion_matrix: [[0]],
    pr_curves: { c: { precision: [0], recall: [0] } },
  },
  inferenceProgress: { processed_images: 0, total_images: 0, progress_percent: 0, avg_inference_time_ms: 0 },
  exportProgress: { progress_percent: 0, stage: 'downloading', message: '' },
};

/**
 * The first run of each schema costs milliseconds (zod compiles object parsers, V8 compiles
 * every function on first call), and several times that on a busy CPU. Building one body of
 * each progress kind when a client is created keeps that cost out of the first heartbeat,
 * which is called from inside the training loop.
 */
export function warmUpProgressPayloads(): void {
  for (const [kind, input] of Object.entries(WARM_UP_INPUTS) as Array<[CallbackKind, CallbackInput<CallbackKind>]>) {
    buildPayload(kind, input);
  }
}
