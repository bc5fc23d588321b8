/**
 * The one place that says how a job can fail and which exit code each failure gets.
 * Exit codes are part of the contract with the platform (deploy/k8s maps them to
 * retry or fail in its podFailurePolicy), so they never change meaning.
 */
import { redact } from './redact.js';

export const ExitCode = {
  ok: 0,
  /** A bug or an unexpected condition: the message says what happened. */
  internal: 1,
  /** Environment/configuration is invalid. Retrying with the same env cannot help. */
  config: 2,
  /** The dataset is missing or malformed. Retrying cannot help. */
  dataset: 3,
  /** Object storage or a download failed after retries. Often transient: retry. */
  storage: 4,
  /** The framework (Python side) raised during training/inference/export. */
  framework: 5,
  /** The work finished but the completion callback could not be delivered. Retry. */
  callbackUndelivered: 6,
  /** MAX_TRAINING_TIME_SECONDS was exceeded; the last checkpoint was uploaded. */
  timeLimit: 7,
  /** The accelerator ran out of memory; the message names a batch size to try. */
  outOfMemory: 8,
  /**
   * A checkpoint or weights file was refused unread: its pickle names Python code outside the
   * allow-list (see README "Security model"). Retrying the same file cannot help.
   */
  unsafeArtifact: 9,
  /** Storage refused the credentials (401/403, InvalidAccessKeyId, SignatureDoesNotMatch, AccessDenied). Retrying cannot help. */
  storageAccessDenied: 10,
  /**
   * Multi-node training: another node was lost (killed, evicted, unreachable) or stopped, or never
   * joined. Retry: the job resumes from its last checkpoint on a fresh rendezvous.
   */
  nodeLost: 11,
  /** Stopped by SIGTERM/SIGINT (preemption, kubectl delete); the last checkpoint was uploaded. */
  terminated: 143,
} as const;
export type ExitCodeName = keyof typeof ExitCode;

export class VisionTrainerError extends Error {
  readonly exitCode: number;
  readonly hint: string | undefined;

  constructor(message: string, options: { exitCode?: number; hint?: string; cause?: unknown } = {}) {
    super(redact(message), options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.exitCode = options.exitCode ?? ExitCode.internal;
    this.hint = options.hint === undefined ? undefined : redact(options.hint);
  }

  /** The text that goes into logs and into the `failed` completion callback. */
  describe(): string {
    return this.hint ? `${this.message}\n${this.hint}` : this.message;
  }
}

export interface ConfigProblem {
  /** The environment variable (or config field for TypeScript callers) at fault. */
  variable: string;
  /** The offending value, already redacted when the variable holds a secret. */
  value?: string | undefined;
  /** What is wrong and what is allowed. */
  message: string;
}

export class ConfigError extends VisionTrainerError {
  readonly problems: ConfigProblem[];
  constructor(problems: ConfigProblem[], mode?: string) {
    const lines = problems.map((p) =>
      p.value === undefined ? `  - ${p.variable}: ${p.message}` : `  - ${p.variable}=${JSON.stringify(p.value)}: ${p.message}`,
    );
    const head = `Invalid ${mode ? `${mode} ` : ''}configuration (${problems.length} problem${problems.length === 1 ? '' : 's'}):`;
    super([head, ...lines].join('\n'), {
      exitCode: ExitCode.config,
      hint: `Run \`vision-trainer ${mode ?? '<mode>'} --help\` for every variable, its meaning and default.`,
    });
    this.problems = problems;
  }
}

export interface DatasetProblem {
  /** Image id or file name the problem belongs to, when it belongs to one. */
  image?: string | undefined;
  /** Field path inside the annotations file, e.g. `annotations[2].bbox`. */
  field?: string | undefined;
  message: string;
}

export class DatasetError extends VisionTrainerError {
  readonly problems: DatasetProblem[];
  constructor(summary: string, problems: DatasetProblem[] = [], hint?: string) {
    const shown = problems.slice(0, 20).map((p) => {
      const where = [p.image === undefined ? undefined : `image ${p.image}`, p.field].filter(Boolean).join(', ');
      return `  - ${where ? `${where}: ` : ''}${p.message}`;
    });
    if (problems.length > shown.length) shown.push(`  ... and ${problems.length - shown.length} more`);
    super([summary, ...shown].join('\n'), { exitCode: ExitCode.dataset, ...(hint ? { hint } : {}) });
    this.problems = problems;
  }
}

export class StorageError extends VisionTrainerError {
  readonly key: string | undefined;
  /**
   * The storage could not be reached or answered with a server error: the same request may
   * succeed later, so it is retried (src/storage/retrying.ts). A missing object, refused
   * credentials or an invalid key are not transient.
   */
  readonly transient: boolean;
  /** exitCode: storage (retry) unless the failure cannot pass by itself, e.g. storageAccessDenied. */
  constructor(message: string, options: { key?: string; hint?: string; cause?: unknown; exitCode?: number; transient?: boolean } = {}) {
    const { transient, ...rest } = options;
    super(message, { exitCode: ExitCode.storage, ...rest });
    this.key = options.key;
    this.transient = transient ?? false;
  }
}

/** A Python exception that crossed the bridge, with its type and traceback kept. */
export class PythonError extends VisionTrainerError {
  readonly pythonType: string;
  readonly traceback: string;
  constructor(pythonType: string, pythonMessage: string, traceback: string, options: { exitCode?: number; hint?: string } = {}) {
    super(`${pythonType}: ${pythonMessage}`, { exitCode: options.exitCode ?? ExitCode.framework, ...(options.hint ? { hint: options.hint } : {}) });
    this.pythonType = pythonType;
    this.traceback = redact(traceback);
  }
}

export class FrameworkError extends VisionTrainerError {
  constructor(message: string, options: { hint?: string; cause?: unknown; exitCode?: number } = {}) {
    super(message, { exitCode: options.exitCode ?? ExitCode.framework, ...options });
  }
}

export class OutOfMemoryError extends VisionTrainerError {
  constructor(message: string, hint: string) {
    super(message, { exitCode: ExitCode.outOfMemory, hint });
  }
}

export class TimeLimitError extends VisionTrainerError {
  constructor(limitSeconds: number, detail = '') {
    super(`Training exceeded the maximum time limit of ${limitSeconds} s (MAX_TRAINING_TIME_SECONDS)${detail}`, {
      exitCode: ExitCode.timeLimit,
      hint: 'Run the job again with the same JOB_ID to continue from its last checkpoint in storage, or raise MAX_TRAINING_TIME_SECONDS.',
    });
  }
}

/** A node of a multi-node training was lost or stopped, or never joined (exit 11: retry). */
export class NodeLostError extends VisionTrainerError {
  constructor(message: string, detail = '') {
    super(`${message}${detail}`, { exitCode: ExitCode.nodeLost, hint: 'Retry the job: it resumes from its last checkpoint once every node has joined again.' });
  }
}

export class CancelledError extends VisionTrainerError {
  readonly signal: string;
  constructor(signal: string, detail = '') {
    super(`Job stopped by ${signal}${detail}`, { exitCode: ExitCode.terminated });
    this.signal = signal;
  }
}

export class CallbackDeliveryError extends VisionTrainerError {
  readonly status: number | undefined;
  constructor(message: string, options: { status?: number; cause?: unknown } = {}) {
    super(message, { exitCode: ExitCode.callbackUndelivered, ...(options.cause ? { cause: options.cause } : {}) });
    this.status = options.status;
  }
}

/** Any thrown value as a VisionTrainerError, so every failure path reports the same way. */
export function asVisionTrainerError(err: unknown): VisionTrainerError {
  if (err instanceof VisionTrainerError) return err;
  if (err instanceof Error) return new VisionTrainerError(`${err.name}: ${err.message}`, { cause: err });
  return new VisionTrainerError(`Unexpected failure: ${String(err)}`);
}
