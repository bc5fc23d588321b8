/**
 * The durable outcome of a job: its completion callback's body, written to storage
 * (`outcome.json` beside the job's log) before the callback is sent, so an outcome outlives the
 * process that reached it. A later attempt of the same JOB_ID reads it first:
 *
 *  - a **final** outcome (succeeded, or failed for a reason a retry cannot fix: configuration,
 *    dataset, refused credentials, a framework error) is re-delivered as it was, with the same
 *    Idempotency-Key, and nothing runs again;
 *  - a **not final** one (stopped by a signal, a time limit that left a checkpoint, storage or
 *    delivery failures) is replaced by what the new attempt reaches. Its completion carries the
 *    added field `resumable: true`.
 *
 * The Idempotency-Key of a completion is derived from the job id and the body without its
 * timestamp: the same outcome sent again (a dropped connection, a retried pod) is the same
 * delivery to the backend, a different outcome of the same job is a new one.
 */
import { z } from 'zod';
import type { CallbackInput, CallbackKind } from '../callbacks/schemas.js';
export { completionKey } from '../callbacks/idempotency.js';
import { ExitCode } from '../errors.js';

export const COMPLETION_KINDS = ['trainingDone', 'testRunDone', 'inferenceJobDone', 'exportDone'] as const satisfies readonly CallbackKind[];
export type CompletionKind = (typeof COMPLETION_KINDS)[number];

/** A completion callback as a job hands it over: which endpoint, and the body without its timestamp. */
export type Completion = { [K in CompletionKind]: { kind: K; input: CallbackInput<K> } }[CompletionKind];

export const OUTCOME_SCHEMA_VERSION = 1;

/** outcome.json. */
export const StoredOutcomeSchema = z.object({
  schema_version: z.number().int(),
  job_id: z.string(),
  mode: z.enum(['train', 'infer', 'export']),
  callback: z.enum(COMPLETION_KINDS),
  /** A retry cannot change it: the next attempt re-delivers it instead of running. */
  final: z.boolean(),
  exit_code: z.number().int(),
  idempotency_key: z.string().min(1),
  /** The completion body exactly as sent (timestamp included). */
  body: z.record(z.string(), z.unknown()),
  written_at: z.string(),
});
export type StoredOutcome = z.infer<typeof StoredOutcomeSchema>;

/** Exit codes whose failure another attempt can get past: it continues where this one stopped. */
export const RESUMABLE_EXITS: ReadonlySet<number> = new Set([ExitCode.storage, ExitCode.callbackUndelivered, ExitCode.nodeLost, ExitCode.terminated]);

/**
 * Whether an outcome is final. `resumable` is the job's own say for exit codes that depend on
 * what was saved (a training time limit that left a checkpoint).
 */
export function isFinal(outcome: { status: 'succeeded' | 'failed'; exitCode: number }, resumable = false): boolean {
  return outcome.status === 'succeeded' || !(RESUMABLE_EXITS.has(outcome.exitCode) || resumable);
}
