/**
 * The skeleton every job (train, infer, export) runs on. A JobContext owns what a job has but
 * does not decide: its configuration, logger, work folder, storage, event stream, callback
 * client, stop controller (signals, AbortSignal, grace period) and the Python bridge's lifetime.
 * `runJob` is the one lifecycle: open → the job's stages → completion → cleanup.
 *
 * What the context guarantees every job (nothing finished is lost):
 *  - storage that retries transient failures for STORAGE_RETRY_SECONDS; downloads end at
 *    the first stop signal, uploads only when the stop is forced (src/storage/retrying.ts);
 *  - the job log in storage from the start, uploaded every LOG_UPLOAD_INTERVAL_SECONDS;
 *  - a durable outcome: the completion body is written to storage (outcome.json) before it
 *    is sent, with an Idempotency-Key derived from its content; an attempt that finds a final
 *    outcome of its JOB_ID re-delivers it and runs nothing (src/jobs/outcome.ts);
 *  - a work folder that is kept, and named in the log, when it holds the only copy of
 *    something (a checkpoint whose upload failed).
 *
 * A job is a JobDefinition (src/jobs/<job>/job.ts): its stages, what it reports when it fails,
 * the `done` event that carries its outcome and the completion callback it becomes, and the
 * subscriber that turns its progress events into the backend's callbacks (reporter.ts).
 */
import { randomUUID } from 'node:crypto';
import { CallbackClient } from '../callbacks/client.js';
import { buildPayload } from '../callbacks/payload.js';
import type { CallbackPayload } from '../callbacks/schemas.js';
import { parseConfig } from '../config/env.js';
import type { ConfigFor } from '../config/schema.js';
import type { Mode } from '../config/variables.js';
import { ExitCode, StorageError, VisionTrainerError, asVisionTrainerError } from '../errors.js';
import { PythonBridge } from '../bridge/python.js';
import { log, Logger } from '../log.js';
import { defaultPythonBin } from '../paths.js';
import { createStorage } from '../storage/index.js';
import { RetryingStorage } from '../storage/retrying.js';
import type { Storage } from '../storage/types.js';
import { LogUploader } from './log-upload.js';
import { type Completion, type CompletionKind, completionKey, isFinal, OUTCOME_SCHEMA_VERSION, type StoredOutcome, StoredOutcomeSchema } from './outcome.js';
import { type JobEvent, RunStream, type Subscriber } from './run-stream.js';
import { installSignalHandlers } from './signals.js';
import { StopController } from './stop.js';
import { createWorkDir, type WorkDir } from './workdir.js';
import { EventLog, filesUnder } from './run-files.js';

/** How any job ended. */
export interface JobOutcome {
  status: 'succeeded' | 'failed';
  exitCode: number;
  error?: VisionTrainerError | undefined;
  /** This attempt found the job's final outcome in storage, re-delivered it and ran nothing. */
  redelivered?: boolean;
}

/**
 * The last writes of a job (its outcome, the final log) after the stop was forced, or after
 * storage already failed it: a short try, so the completion still goes out in time.
 */
const LAST_WRITES_BUDGET_MS = 15_000;

/** How a caller runs a job: the CLI turns signals and callbacks on; a script picks. */
export interface JobOptions<E> {
  /** Log lines (default: the process logger). `false` for silence. */
  logger?: Logger | false;
  /** Send the HTTP callbacks when the configuration names a backend (default true). */
  callbacks?: boolean;
  /**
   * Handle SIGTERM/SIGINT as the container does: stop at the next safe point, report `failed`,
   * and kill Python if it has not stopped after the job's grace period (or `graceSeconds`) or on
   * a second signal.
   */
  signals?: boolean | { graceSeconds: number };
  /** Aborting it asks the job to stop, as a signal would. */
  signal?: AbortSignal;
  /** Called for every event, synchronously (training: a throw stops the run and fails it). */
  onEvent?: Subscriber<E>;
}

export interface JobDefinition<M extends Mode, E extends JobEvent, O extends JobOutcome> {
  readonly mode: M;
  /** Seconds from the first SIGTERM until Python is killed (what a safe stop may take). */
  graceSeconds(config: ConfigFor<M>): number;
  /** What the job does on the first SIGTERM, for the log. */
  readonly stopping: string;
  /**
   * Whether this process reports the job: callbacks, the log upload. Every process does but the
   * nodes other than node 0 of a multi-node training (src/jobs/distributed.ts). Default true.
   */
  reports?(config: ConfigFor<M>): boolean;
  /** The job's events as the backend's callbacks. */
  reporter(client: CallbackClient, config: ConfigFor<M>): Subscriber<E>;
  /** The job's events as log lines, if they need more than the job's own logging. */
  console?(logger: Logger): Subscriber<E>;
  /**
   * Experiment trackers (MLflow and the like, src/tracking/): more subscribers of the event
   * stream. A tracker never throws; its `done` handling is awaited before the process ends.
   */
  trackers?(config: ConfigFor<M>, logger: Logger): Subscriber<E>[];
  /**
   * Every event of the job as one JSON line (`metrics.jsonl`), uploaded to this key beside the
   * log before the completion is reported.
   */
  eventLogKey?(config: ConfigFor<M>): string;
  /**
   * The job's log file in storage. The logger writes into it from the moment the work folder
   * exists; it is uploaded while the job runs and last after the completion.
   */
  logKey(config: ConfigFor<M>): string;
  /** Where the durable outcome goes (outcome.json beside the log). */
  outcomeKey(config: ConfigFor<M>): string;
  /** The stages. A failure the job can describe better than `failed` does may throw. */
  run(ctx: JobContext<M, E>): Promise<O>;
  /** The outcome of a failed job: the error, and what it achieved before. */
  failed(ctx: JobContext<M, E>, error: VisionTrainerError): O;
  /** The last event of the stream. */
  done(ctx: JobContext<M, E>, outcome: O): E;
  /** The completion callback the `done` event becomes. */
  completion(config: ConfigFor<M>, done: E): Completion;
  /**
   * Whether a failed outcome with an exit code that is final by itself (a time limit) can still
   * be continued by a retry (a checkpoint was saved). Storage, delivery and signal failures
   * always can.
   */
  resumable?(outcome: O): boolean;
  /** The outcome an attempt reports when it found this job's final outcome in storage. */
  restored(ctx: JobContext<M, E>, stored: StoredOutcome): O;
}

export class JobContext<M extends Mode, E extends JobEvent> {
  readonly events = new RunStream<E>();
  readonly stop = new StopController();
  readonly logger: Logger;
  readonly callbacks: CallbackClient | undefined;
  /** False on a node that trains but does not report (JobDefinition.reports). */
  readonly reports: boolean;
  private workDir: WorkDir | undefined;
  private store: RetryingStorage | undefined;
  private logFile: string | undefined;
  private eventLog: EventLog | undefined;
  private readonly runFiles: Array<{ path: string; key: string; include: (relative: string) => boolean }> = [];
  private logs: LogUploader | undefined;
  private python: Promise<PythonBridge> | undefined;
  private readonly cleanups: Array<() => void> = [];
  private readonly kept: string[] = [];

  readonly mode: M;

  constructor(
    private readonly definition: JobDefinition<M, E, JobOutcome>,
    readonly config: ConfigFor<M>,
    options: JobOptions<E> = {},
  ) {
    this.mode = definition.mode;
    const fields = { job_id: config.jobId, trace_id: config.traceId };
    this.logger = options.logger === false ? Logger.create({ sink: () => {} }) : (options.logger ?? log()).child(fields);
    if (options.onEvent) this.events.subscribe(options.onEvent);
    if (options.logger !== false && definition.console) this.events.subscribe(definition.console(this.logger));
    this.reports = definition.reports?.(config) ?? true;
    const backend = options.callbacks === false || !this.reports ? undefined : config.backend;
    if (backend) {
      this.callbacks = new CallbackClient({
        baseUrl: backend.baseUrl,
        token: backend.token,
        jobId: config.jobId,
        traceId: config.traceId,
        logger: this.logger,
        retry: { completion: { maxAttempts: config.callbackMaxAttempts } },
      });
      this.events.subscribe(definition.reporter(this.callbacks, config));
    }
    // One run per job in the trackers too: only the reporting node logs to them.
    if (this.reports) for (const tracker of definition.trackers?.(config, this.logger) ?? []) this.events.subscribe(tracker);
    if (options.signals) {
      const grace = typeof options.signals === 'object' ? options.signals.graceSeconds : definition.graceSeconds(config);
      this.cleanups.push(installSignalHandlers(this.stop, grace, this.logger, definition.stopping));
    }
    if (options.signal) {
      const signal = options.signal;
      const onAbort = () => this.stop.request({ kind: 'requested', message: String(signal.reason ?? 'aborted') });
      if (signal.aborted) onAbort();
      signal.addEventListener('abort', onAbort, { once: true });
      this.cleanups.push(() => signal.removeEventListener('abort', onAbort));
    }
    // A forced stop (second signal, grace period over) kills Python mid-call.
    this.cleanups.push(
      this.stop.onForce(
        () =>
          void this.python?.then(
            (bridge) => bridge.close(),
            () => undefined,
          ),
      ),
    );
  }

  /** The job's own folder under WORK_DIR; removed at the end unless KEEP_WORK_DIR. */
  get work(): WorkDir {
    if (!this.workDir) throw new Error('the job context is not open yet');
    return this.workDir;
  }

  /**
   * The job's storage: transient failures are retried for STORAGE_RETRY_SECONDS; a stop
   * abandons downloads at once and uploads when it is forced.
   */
  get storage(): RetryingStorage {
    if (!this.store) throw new Error('the job context is not open yet');
    return this.store;
  }

  /**
   * Keeps the work folder after the job: it holds the only copy of something (a checkpoint
   * whose upload failed). The folder and the reason are logged when the job ends.
   */
  keepWorkDir(reason: string): void {
    this.kept.push(reason);
  }

  /** Uploads the job log now (training does after every epoch); it never fails the job. */
  uploadLog(): void {
    void this.logs?.upload();
  }

  /** Creates the work folder and the storage client; from here on the log file is written and uploaded. */
  async open(): Promise<void> {
    this.workDir = await createWorkDir({ parent: this.config.workDir, jobId: this.config.jobId, keep: this.config.keepWorkDir });
    const s = this.config.storage;
    const base = createStorage(s.type === 'local' ? { type: 'local', root: s.root, bucket: s.bucket } : s);
    this.store = new RetryingStorage(base, {
      budgetMs: this.config.storageRetrySeconds * 1000,
      downloads: this.stop.stopSignal,
      uploads: this.stop.forceSignal,
      logger: this.logger,
    });
    this.logFile = this.workDir.sub(this.mode === 'train' ? 'training.log' : 'job.log');
    this.logger.teeTo(this.logFile);
    // Periodic uploads try once: the next interval is the retry. Only the reporting node's log
    // goes up (the other nodes of a distributed training would overwrite it).
    if (this.reports) {
      this.logs = new LogUploader(this.logFile, this.definition.logKey(this.config), this.store.with({ budgetMs: 0 }), this.logger);
      this.logs.start(this.config.logUploadIntervalSeconds * 1000);
    }
    if (this.definition.eventLogKey) {
      const eventLog = new EventLog(this.workDir.sub('metrics.jsonl'));
      this.eventLog = eventLog;
      this.events.subscribe((event) => eventLog.write(event));
    }
  }

  /**
   * A file, or a folder's files, uploaded beside the log when the job completes (`key` is the
   * object key of a file, the key prefix of a folder; `include` picks a folder's files by their
   * relative path). A failed upload is a warning.
   */
  uploadAtEnd(path: string, key: string, include: (relative: string) => boolean = () => true): void {
    if (!this.runFiles.some((f) => f.path === path && f.key === key)) this.runFiles.push({ path, key, include });
  }

  /**
   * The outcome an earlier attempt of this JOB_ID stored, when RESUME=auto and there is one.
   * A file that is not an outcome of ours is ignored (and logged): the job then runs.
   */
  async storedOutcome(): Promise<StoredOutcome | undefined> {
    if (this.config.resume === 'never') return undefined;
    const key = this.definition.outcomeKey(this.config);
    if (!(await this.storage.exists(key))) return undefined;
    const parsed = StoredOutcomeSchema.safeParse(await this.storage.getJson(key));
    if (parsed.success && parsed.data.job_id === this.config.jobId && parsed.data.mode === this.mode) return parsed.data;
    this.logger.warn(`${this.storage.uri(key)} is not an outcome of this job; it is ignored and will be replaced`);
    return undefined;
  }

  /** The file the job's log lines go to (and Python's, when the job passes it on). */
  get logPath(): string | undefined {
    return this.logFile;
  }

  /**
   * Starts the job's Python interpreter with `env` (one per job, started at most once). It
   * closes with the job, and is killed at once on a forced stop.
   */
  startPython(env: Record<string, string>): Promise<PythonBridge> {
    // CPU_THREADS reaches python/vision_trainer/cpu_budget.py, which sizes the thread pools at import.
    const threads: Record<string, string> = this.config.cpuThreads === undefined ? {} : { VISION_TRAINER_CPU_THREADS: String(this.config.cpuThreads) };
    this.python ??= PythonBridge.open({ pythonBin: this.config.pythonBin ?? defaultPythonBin(), env: { ...env, ...threads }, logger: this.logger });
    // Awaited by the stage that needs it; an earlier failure must not leave it unobserved.
    this.python.catch(() => {});
    return this.python;
  }

  /** The interpreter startPython began. */
  get bridge(): Promise<PythonBridge> {
    if (!this.python) throw new Error('Python was not started for this job');
    return this.python;
  }

  async closePython(): Promise<void> {
    const bridge = await this.python?.catch(() => undefined);
    await bridge?.close();
  }

  /**
   * Reports the outcome: its completion body is written to storage (outcome.json), the `done`
   * event goes to the subscribers, the completion callback to the backend; last, the log.
   * An outcome that is final but could not be delivered fails the process with exit 6: a retry
   * re-delivers the stored outcome without running again.
   */
  async complete<O extends JobOutcome>(outcome: O, done: E): Promise<O> {
    if (!this.reports) return this.completeQuietly(outcome, done);
    await this.uploadRunFiles(done);
    const final = isFinal(outcome, this.definition.resumable?.(outcome) ?? false);
    const { kind, input } = this.definition.completion(this.config, done);
    const { body, nonFinite } = buildPayload(kind, final ? input : ({ ...input, resumable: true } as never));
    if (nonFinite.length > 0) this.logger.warn(`The completion carries non-finite numbers, sent as null: ${nonFinite.join(', ')}`);
    const key = completionKey(this.config.jobId, kind, body);
    // Without storage (the job failed before it had any) there is nothing to write to.
    const last = this.store ? this.lastWritesStorage(outcome) : undefined;
    const stored: StoredOutcome = {
      schema_version: OUTCOME_SCHEMA_VERSION,
      job_id: this.config.jobId,
      mode: this.mode,
      callback: kind,
      final,
      exit_code: outcome.exitCode,
      idempotency_key: key,
      body: body as Record<string, unknown>,
      written_at: new Date().toISOString(),
    };
    const outcomeKey = this.definition.outcomeKey(this.config);
    try {
      if (!last) throw new VisionTrainerError('the job has no storage');
      await last.putJson(outcomeKey, stored);
      this.logger.info(`Outcome stored: ${last.uri(outcomeKey)} (${outcome.status}${final ? ', final' : ', a retry continues it'})`);
    } catch (err) {
      this.logger.error(`The outcome could not be stored at ${outcomeKey}: ${asVisionTrainerError(err).message}`);
    }
    return this.report(outcome, done, { kind, body, key, final }, last);
  }

  /**
   * An attempt that found this job's final outcome in storage: it tells the subscribers and
   * the backend again, with the stored body and Idempotency-Key, and runs nothing.
   */
  async redeliver<O extends JobOutcome>(stored: StoredOutcome, outcome: O, done: E): Promise<O> {
    this.logger.info(
      `Job ${this.config.jobId} already ended (${String(stored.body.status)}, stored ${stored.written_at} in ${this.storage.uri(this.definition.outcomeKey(this.config))}): re-delivering that outcome, nothing runs again. Set RESUME=never to run it anew.`,
    );
    const result = await this.report(
      { ...outcome, redelivered: true },
      done,
      { kind: stored.callback, body: stored.body, key: stored.idempotency_key, final: true },
      this.storage,
    );
    return result;
  }

  private async report<O extends JobOutcome>(
    outcome: O,
    done: E,
    completion: { kind: CompletionKind; body: object; key: string; final: boolean },
    last: Storage | undefined,
  ): Promise<O> {
    let result = outcome;
    try {
      await this.events.emit(done);
      await this.callbacks?.deliverCompletion(completion.kind, completion.body as CallbackPayload<CompletionKind>, completion.key);
    } catch (err) {
      const e = asVisionTrainerError(err);
      this.logger.error(`The completion could not be delivered: ${e.message}`);
      // A final outcome nobody heard of: exit 6, and the retry re-delivers it. Otherwise the
      // outcome's own code (a stop, a storage failure) already makes the platform retry.
      result = { ...outcome, exitCode: completion.final ? ExitCode.callbackUndelivered : outcome.exitCode, error: outcome.error ?? e };
    } finally {
      this.events.end();
    }
    if (this.logFile) {
      this.logger.untee(this.logFile);
      if (last) await this.logs?.finish(last);
    }
    return result;
  }

  /**
   * A node other than node 0 of a distributed training: its subscribers see `done`, but it stores
   * no outcome, uploads no files and sends no completion (node 0 reports the job).
   */
  private async completeQuietly<O extends JobOutcome>(outcome: O, done: E): Promise<O> {
    await this.eventLog?.close(done);
    try {
      await this.events.emit(done);
    } finally {
      this.events.end();
    }
    if (this.logFile) this.logger.untee(this.logFile);
    return outcome;
  }

  /** metrics.jsonl (with the `done` event about to be sent) and what `uploadAtEnd` registered. */
  private async uploadRunFiles(done: E): Promise<void> {
    const files = [...this.runFiles];
    if (this.eventLog && this.definition.eventLogKey) {
      await this.eventLog.close(done);
      files.unshift({ path: this.eventLog.path, key: this.definition.eventLogKey(this.config), include: () => true });
    }
    for (const { path, key, include } of files) {
      try {
        for (const file of (await filesUnder(path)).filter((f) => f.relative === '' || include(f.relative))) {
          const objectKey = file.relative === '' ? key : `${key.replace(/\/$/, '')}/${file.relative}`;
          await this.storage.uploadFile(file.path, objectKey);
        }
      } catch (err) {
        this.logger.warn(`upload of ${key} failed: ${asVisionTrainerError(err).message}`);
      }
    }
  }

  /** Undoes what the context set up: signal handlers, the callback client, the work folder. */

  /** The storage for the last writes: as usual, unless the stop was forced or storage already failed the job. */
  private lastWritesStorage(outcome: JobOutcome): RetryingStorage {
    const storageFailed = outcome.error instanceof StorageError && outcome.error.transient;
    if (!this.stop.isForced && !storageFailed) return this.storage;
    return this.storage.with({ budgetMs: Math.min(LAST_WRITES_BUDGET_MS, this.config.storageRetrySeconds * 1000), uploads: undefined, downloads: undefined });
  }

  /** Undoes what the context set up: signal handlers, the callback client, the work folder (unless it must be kept). */
  async close(): Promise<void> {
    for (const undo of this.cleanups.splice(0).reverse()) undo();
    await this.callbacks?.close();
    if (this.kept.length > 0 && this.workDir) {
      this.logger.warn(`Work folder kept: ${this.workDir.path} (${[...new Set(this.kept)].join('; ')})`);
    } else await this.workDir?.cleanup();
  }
}

/**
 * Starts a job on the next turn of the event loop, so that a caller can subscribe to or iterate
 * `ctx.events` first. `outcome` does not reject: a failed job has a failed outcome.
 */
export function startJob<M extends Mode, E extends JobEvent, O extends JobOutcome>(
  definition: JobDefinition<M, E, O>,
  config: ConfigFor<M>,
  options: JobOptions<E> = {},
): { ctx: JobContext<M, E>; outcome: Promise<O> } {
  const ctx = new JobContext(definition, config, options);
  const outcome = new Promise<void>((resolve) => setImmediate(resolve)).then(() => runJob(ctx, definition));
  return { ctx, outcome };
}

/** The one lifecycle of every job: open, the job's stages (unless an earlier attempt already ended the job), completion, cleanup. */
async function runJob<M extends Mode, E extends JobEvent, O extends JobOutcome>(ctx: JobContext<M, E>, definition: JobDefinition<M, E, O>): Promise<O> {
  let outcome: O;
  let stored: StoredOutcome | undefined;
  try {
    await ctx.open();
    stored = await ctx.storedOutcome();
    if (stored?.final) {
      const restored = definition.restored(ctx, stored);
      try {
        return await ctx.redeliver(stored, restored, definition.done(ctx, restored));
      } finally {
        await ctx.close();
      }
    }
    if (stored)
      ctx.logger.info(`An earlier attempt of job ${ctx.config.jobId} ended without a final outcome (exit ${stored.exit_code}): this attempt continues it`);
    outcome = await definition.run(ctx);
  } catch (err) {
    // What the job's stages did not turn into an outcome themselves (e.g. no work folder).
    const error = asVisionTrainerError(err);
    ctx.logger.error(error.describe());
    outcome = definition.failed(ctx, error);
  } finally {
    await ctx.closePython();
  }
  try {
    return await ctx.complete(outcome, definition.done(ctx, outcome));
  } finally {
    await ctx.close();
  }
}

/**
 * What `train`, `infer` and `exportModel` return: the run's typed events (async-iterable), its
 * outcome, and a way to stop it. The same handle for every job.
 */
export interface JobRun<C, E extends JobEvent, R> extends AsyncIterable<E> {
  /** The validated configuration the run uses (defaults applied). */
  readonly config: C;
  /**
   * Resolves when the run has ended, callbacks delivered and work folder removed. It does not
   * reject: a failed run has `status: 'failed'`, its `exitCode` and a typed `error`.
   */
  readonly result: Promise<R>;
  /**
   * Asks the run to stop at its next safe point, as SIGTERM does in the container (training:
   * after the current batch, the last checkpoint uploaded; inference: after the current batch;
   * export: at once). `result` then reports `failed` with exit code 143.
   */
  stop(reason?: string): void;
  /** Another consumer of the events, called synchronously in order; returns its unsubscribe function. */
  subscribe(fn: Subscriber<E>): () => void;
}

/**
 * The library entry points: validates `input` (the same shape the environment parser builds;
 * a ConfigError listing every problem is thrown at once), starts the job on the next turn and
 * returns its handle. Iterating the handle is optional; leaving a `for await` loop (break,
 * return, throw) detaches the iterator and the run goes on: `stop()` or `signal` stop it.
 */
export function startRun<M extends Mode, E extends JobEvent, O extends JobOutcome>(
  definition: JobDefinition<M, E, O>,
  input: unknown,
  options: JobOptions<E> = {},
): JobRun<ConfigFor<M>, E, O> {
  const config = parseConfig(definition.mode, input && typeof input === 'object' ? { traceId: randomUUID(), ...input } : input);
  const { ctx, outcome } = startJob(definition, config, options);
  return {
    config,
    result: outcome,
    stop: (reason = 'stop() called') => ctx.stop.request({ kind: 'requested', message: reason }),
    subscribe: (fn) => ctx.events.subscribe(fn),
    [Symbol.asyncIterator]: () => ctx.events[Symbol.asyncIterator](),
  };
}
