/**
 * Training for TypeScript scripts:
 *
 *   const run = train({ jobId: 'exp-1', taskType: 'object_detection', modelName: 'yolo11n', ... });
 *   for await (const event of run) if (event.type === 'epoch') console.log(event.metrics);
 *   const result = await run.result;
 *
 * `config` is the same zod-validated shape the container's env parser builds. Several runs may
 * go one after another in one process.
 */
import { randomUUID } from 'node:crypto';
import { CallbackClient } from './callbacks/client.js';
import { parseConfig } from './config/env.js';
import type { TrainConfig, TrainConfigInput } from './config/schema.js';
import { asVisionTrainerError } from './errors.js';
import type { RunEvent, RunSubscriber } from './events.js';
import { log, Logger } from './log.js';
import { installSignalHandlers } from './jobs/signals.js';
import { consoleReporter } from './jobs/console.js';
import { trainingReporter } from './jobs/reporter.js';
import { RunStream } from './jobs/run-stream.js';
import { StopController } from './jobs/stop.js';
import { runTrainingJob, type TrainResult } from './jobs/train.js';

export interface TrainOptions {
  /** Called for every event, synchronously; a throw stops training and fails the run. */
  onEvent?: RunSubscriber;
  /** Log lines (default: the process logger). Pass `false` for silence. */
  logger?: Logger | false;
  /** Send the design's HTTP callbacks when `config.backend` is set (default true). */
  callbacks?: boolean;
  /**
   * Handle SIGTERM/SIGINT as the container does: stop after the current batch, upload the last
   * checkpoint, report `failed`; kill Python if it has not stopped after `graceSeconds` or on a
   * second signal. The CLI turns this on; scripts decide for themselves (default false).
   */
  signals?: { graceSeconds: number };
}

export interface TrainingRun extends AsyncIterable<RunEvent> {
  readonly config: TrainConfig;
  /** Resolves when the run has ended (it does not reject: a failed run has status 'failed'). */
  readonly result: Promise<TrainResult>;
  /** Asks training to stop after the current batch; the last checkpoint is uploaded. */
  stop(message?: string): void;
  subscribe(fn: RunSubscriber): () => void;
}

export function train(input: TrainConfigInput | TrainConfig, options: TrainOptions = {}): TrainingRun {
  const config = parseConfig('train', { traceId: randomUUID(), ...input });
  const logger = options.logger === false ? Logger.create({ sink: () => {} }) : (options.logger ?? log()).child({ job_id: config.jobId, trace_id: config.traceId });
  const stream = new RunStream();
  const stop = new StopController();
  if (options.onEvent) stream.subscribe(options.onEvent);
  if (options.logger !== false) stream.subscribe(consoleReporter(logger));
  const client =
    config.backend && options.callbacks !== false
      ? new CallbackClient({ baseUrl: config.backend.baseUrl, token: config.backend.token, jobId: config.jobId, traceId: config.traceId, logger, retry: { completion: { maxAttempts: config.callbackMaxAttempts } } })
      : undefined;
  if (client) stream.subscribe(trainingReporter(client, config.taskType));

  // Started on the next turn, so a `for await` written right after train() sees every event.
  const uninstall = options.signals ? installSignalHandlers(stop, options.signals.graceSeconds, logger) : () => {};
  const result = new Promise<void>((resolve) => setImmediate(resolve)).then(async () => {
    try {
      return await runTrainingJob(config, { stream, stop, logger });
    } catch (err) {
      // The job reports its own failures; this is one before it could (e.g. no work folder).
      const error = asVisionTrainerError(err);
      logger.error(error.describe());
      const exitCode = error.exitCode;
      // Best effort: the original failure is what the process exits with either way.
      await stream
        .emit({ type: 'done', status: 'failed', bestEpoch: null, primaryMetricName: '', bestMetricValue: null, checkpointUri: null, totalTimeSeconds: 0, finalMetrics: {}, errorMessage: error.describe(), exitCode })
        .catch(() => undefined);
      stream.end();
      return { status: 'failed' as const, exitCode, bestEpoch: null, bestMetricValue: null, checkpointUri: null, totalTimeSeconds: 0, error };
    } finally {
      uninstall();
      await client?.close();
    }
  });

  return {
    config,
    result,
    stop: (message = 'stop() called') => stop.request({ kind: 'requested', message }),
    subscribe: (fn) => stream.subscribe(fn),
    [Symbol.asyncIterator]: () => stream[Symbol.asyncIterator](),
  };
}

