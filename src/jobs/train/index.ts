/**
 * Training for TypeScript scripts, over the same job the container runs:
 *
 *   const run = train({ jobId: 'exp-1', taskType: 'object_detection', modelName: 'yolo11n', ... });
 *   for await (const event of run) if (event.type === 'epoch') console.log(event.metrics);
 *   const result = await run.result;
 *
 * `config` is the same zod-validated shape the container's env parser builds. Several runs may
 * go one after another in one process.
 */
import { randomUUID } from 'node:crypto';
import { parseConfig } from '../../config/env.js';
import type { TrainConfig, TrainConfigInput } from '../../config/schema.js';
import type { RunEvent, RunSubscriber } from '../../events.js';
import type { Logger } from '../../log.js';
import { startJob } from '../context.js';
import { type TrainResult, trainingJob } from './job.js';

export type { TrainResult } from './job.js';

export interface TrainOptions {
  /** Called for every event, synchronously; a throw stops training and fails the run. */
  onEvent?: RunSubscriber;
  /** Log lines (default: the process logger). Pass `false` for silence. */
  logger?: Logger | false;
  /** Send the design's HTTP callbacks when `config.backend` is set (default true). */
  callbacks?: boolean;
  /**
   * Handle SIGTERM/SIGINT as the container does: stop after the current batch, upload the last
   * checkpoint, report `failed`; kill Python if it has not stopped after STOP_GRACE_SECONDS (or
   * `graceSeconds`) or on a second signal. The CLI turns this on; scripts decide (default false).
   */
  signals?: boolean | { graceSeconds: number };
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
  const { ctx, outcome } = startJob(trainingJob, config, options);
  return {
    config,
    result: outcome,
    stop: (message = 'stop() called') => ctx.stop.request({ kind: 'requested', message }),
    subscribe: (fn) => ctx.events.subscribe(fn),
    [Symbol.asyncIterator]: () => ctx.events[Symbol.asyncIterator](),
  };
}
