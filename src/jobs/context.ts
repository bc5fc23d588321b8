/**
 * The skeleton every job (train, infer, export) runs on. A JobContext owns what a job has but
 * does not decide: its configuration, logger, work folder, storage, event stream, callback
 * client, stop controller (signals, AbortSignal, grace period) and the Python bridge's lifetime.
 * `runJob` is the one lifecycle: open → the job's stages → completion → cleanup.
 *
 * A job is a JobDefinition (src/jobs/<job>/job.ts): its stages, what it reports when it fails,
 * the `done` event that carries its outcome, and the subscriber that turns its events into the
 * backend's HTTP callbacks (src/jobs/<job>/reporter.ts).
 */
import { randomUUID } from 'node:crypto';
import { CallbackClient } from '../callbacks/client.js';
import { parseConfig } from '../config/env.js';
import type { ConfigFor } from '../config/schema.js';
import type { Mode } from '../config/variables.js';
import { asVisionTrainerError, type VisionTrainerError } from '../errors.js';
import { PythonBridge } from '../bridge/python.js';
import { log, Logger } from '../log.js';
import { defaultPythonBin } from '../paths.js';
import { createStorage } from '../storage/index.js';
import type { Storage } from '../storage/types.js';
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
}

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
   * The job's log file, uploaded to this storage key before the completion is reported. The
   * logger writes into it from the moment the work folder exists.
   */
  logKey?(config: ConfigFor<M>): string;
  /** The stages. A failure the job can describe better than `failed` does may throw. */
  run(ctx: JobContext<M, E>): Promise<O>;
  /** The outcome of a failed job: the error, and what it achieved before. */
  failed(ctx: JobContext<M, E>, error: VisionTrainerError): O;
  /** The last event; the reporter sends the completion callback from it. */
  done(ctx: JobContext<M, E>, outcome: O): E;
}

export class JobContext<M extends Mode, E extends JobEvent> {
  readonly events = new RunStream<E>();
  readonly stop = new StopController();
  readonly logger: Logger;
  readonly callbacks: CallbackClient | undefined;
  private workDir: WorkDir | undefined;
  private store: Storage | undefined;
  private logFile: string | undefined;
  private eventLog: EventLog | undefined;
  private readonly runFiles: Array<{ path: string; key: string; include: (relative: string) => boolean }> = [];
  private python: Promise<PythonBridge> | undefined;
  private readonly cleanups: Array<() => void> = [];

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
    const backend = options.callbacks === false ? undefined : config.backend;
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
    for (const tracker of definition.trackers?.(config, this.logger) ?? []) this.events.subscribe(tracker);
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

  get storage(): Storage {
    if (!this.store) throw new Error('the job context is not open yet');
    return this.store;
  }

  /** Creates the work folder and the storage client; from here on the log file is written. */
  async open(): Promise<void> {
    this.workDir = await createWorkDir({ parent: this.config.workDir, jobId: this.config.jobId, keep: this.config.keepWorkDir });
    const s = this.config.storage;
    this.store = createStorage(s.type === 'local' ? { type: 'local', root: s.root, bucket: s.bucket } : s);
    if (this.definition.logKey) {
      this.logFile = this.workDir.sub(`${this.mode === 'train' ? 'training' : this.mode}.log`);
      this.logger.teeTo(this.logFile);
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
   * Reports the outcome: the log goes to storage, then the `done` event, whose completion
   * callback must arrive. Work that succeeded but could not be reported fails the process: the
   * backend does not know it happened.
   */
  async complete<O extends JobOutcome>(outcome: O, done: E): Promise<O> {
    await this.uploadRunFiles(done);
    if (this.logFile && this.definition.logKey) {
      this.logger.untee(this.logFile);
      try {
        await this.storage.uploadFile(this.logFile, this.definition.logKey(this.config), { contentType: 'text/plain' });
      } catch (err) {
        this.logger.warn(`${this.mode === 'train' ? 'training' : this.mode} log upload failed: ${asVisionTrainerError(err).message}`);
      }
    }
    try {
      await this.events.emit(done);
      return outcome;
    } catch (err) {
      const e = asVisionTrainerError(err);
      this.logger.error(`completion could not be delivered: ${e.message}`);
      return { ...outcome, exitCode: outcome.status === 'succeeded' ? e.exitCode : outcome.exitCode, error: outcome.error ?? e };
    } finally {
      this.events.end();
    }
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
  async close(): Promise<void> {
    for (const undo of this.cleanups.splice(0).reverse()) undo();
    await this.callbacks?.close();
    await this.workDir?.cleanup();
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

/** The one lifecycle of every job: open, the job's stages, completion, cleanup. */
async function runJob<M extends Mode, E extends JobEvent, O extends JobOutcome>(ctx: JobContext<M, E>, definition: JobDefinition<M, E, O>): Promise<O> {
  let outcome: O;
  try {
    await ctx.open();
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
