/**
 * The training call every framework makes: the job's request as the shared TrainParams, the
 * trainer's events parsed with the shared schema before the job sees them, the answer parsed
 * into a TrainOutcome. A framework adds only what is its own (weights it unpacks).
 *
 * A distributed training (request.distributed, src/jobs/distributed.ts) is the same call: the
 * Python side launches the workers; here the reporting node serves the event channel
 * (event-relay.ts), and a stop request becomes this node's stop file, which every rank obeys at
 * the same batch.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { type PythonBridge, type PythonEntry, pythonCallback, pythonEntry } from '../../src/bridge/python.js';
import type { TrainConfig } from '../../src/config/schema.js';
import type { TaskType } from '../../src/config/tasks.js';
import { ConfigError, FrameworkError, VisionTrainerError } from '../../src/errors.js';
import type { JsonValue } from '../../src/events.js';
import type { TrainerEventHandler, TrainingAdapter, TrainOutcome, TrainRequest } from '../../src/frameworks/adapter.js';
import {
  type DistributedParams,
  MarkBestAnswerSchema,
  MarkBestParamsSchema,
  PathParamsSchema,
  RecordedBestSchema,
  type ModelCheck,
  ModelCheckParamsSchema,
  ModelCheckSchema,
  type TrainAnswer,
  TrainerArgsAnswerSchema,
  TrainerArgsParamsSchema,
  TrainerEventSchema,
  type TrainParams,
} from '../../src/frameworks/protocol.js';
import { freePort, rendezvousParams } from '../../src/jobs/distributed.js';
import { extractZip } from '../../src/storage/zip.js';
import { type EventServer, serveEvents } from './event-relay.js';

export type TrainEntry = PythonEntry<TrainParams, TrainAnswer>;

/** What a classifier's validation metrics import (scikit-learn, python/vision_trainer/common/classification_metrics.py): 1.2 s of CPU on first use. */
export const CLASSIFIER_METRICS_MODULE = 'sklearn.metrics';

/** The TRAINER_ARGS preflight of a framework whose key list lives in the framework (python/vision_trainer/<framework>/trainer_args.py). */
export function trainerArgsEntry(framework: string) {
  return pythonEntry(`vision_trainer.${framework}.trainer_args`, 'check', TrainerArgsParamsSchema, TrainerArgsAnswerSchema);
}

/** Asks Python to check TRAINER_ARGS; its problems become one ConfigError naming each key. */
export async function checkTrainerArgsInPython(
  framework: string,
  args: Record<string, JsonValue>,
  taskType: TaskType,
  python: () => Promise<PythonBridge>,
): Promise<Record<string, JsonValue>> {
  if (Object.keys(args).length === 0) return {};
  const bridge = await python();
  const answer = await bridge.call(trainerArgsEntry(framework), { trainer_args: args, task_type: taskType });
  if (answer.problems.length > 0) {
    throw new ConfigError(
      answer.problems.map((p) => ({ variable: `TRAINER_ARGS ${p.key}`, message: p.message })),
      'train',
    );
  }
  return answer.resolved;
}

/** The request in the seam's terms; `overrides` carries a framework's own values. */
export function trainParams(request: TrainRequest, overrides: Partial<TrainParams> = {}): TrainParams {
  const { config } = request;
  return {
    model_name: config.modelName,
    task_type: config.taskType,
    data: request.data.dataPath,
    class_names: request.data.classNames,
    class_ids: request.data.classIds,
    val_images: request.data.valImagesFile,
    epochs: config.epochs,
    batch: config.batchSize,
    imgsz: config.imageSize,
    device: config.device,
    workers: config.numWorkers,
    project: request.outputDir,
    weights: request.weightsPath ?? null,
    lr: config.learningRate ?? null,
    resume_from: request.resumeFrom ?? null,
    best_from: request.bestFrom ?? null,
    log_file: request.logFile,
    primary_metric: request.primaryMetric,
    job_id: config.jobId,
    config_overrides: null,
    distributed: null,
    trainer_args: request.trainerArgs,
    seed: config.seed ?? null,
    tensorboard_dir: request.tensorboardDir ?? null,
    text_encoder: null,
    ...overrides,
  };
}

/** A save_pretrained folder of the largest models this runtime uses fits well within this. */
const MAX_PRETRAINED_BYTES = 8 * 1024 ** 3;

/**
 * A downloaded zip of a transformers `save_pretrained` folder, extracted beside it (into `folder`)
 * with the datasets' safe extraction; Python finds config.json at its root or one level down.
 */
export async function extractSavePretrained(zipPath: string, folder: string, variable: string, hint: string): Promise<string> {
  const target = join(dirname(zipPath), folder);
  try {
    await extractZip(zipPath, target, { maxTotalBytes: MAX_PRETRAINED_BYTES });
  } catch (err) {
    const why = err instanceof VisionTrainerError ? err.message : String(err);
    throw new FrameworkError(`${variable} is not a zip of a save_pretrained folder: ${why}`, { hint, cause: err });
  }
  return target;
}

/** Trainer events as Python sends them, parsed; the job answers "stop" or nothing. */
export function trainerEvents(trainer: string, onEvent: TrainerEventHandler): (payload: unknown) => ReturnType<TrainerEventHandler> {
  return pythonCallback(TrainerEventSchema, `An event of the ${trainer} trainer`, onEvent);
}

export async function trainInPython(
  bridge: PythonBridge,
  entry: TrainEntry,
  request: TrainRequest,
  params: TrainParams,
  emit: (payload: unknown) => ReturnType<TrainerEventHandler>,
): Promise<TrainOutcome> {
  const plan = request.distributed;
  let server: EventServer | undefined;
  try {
    if (plan) {
      server = plan.reports ? await serveEvents(emit) : undefined;
      params = { ...params, distributed: await distributedParams(request, server) };
    }
    const answer = await bridge.call(entry, params, emit);
    return {
      bestEpoch: answer.best_epoch,
      bestPath: answer.best_path,
      lastPath: answer.last_path,
      stoppedEarly: answer.stopped_early,
      stoppedByNode: answer.stopped_by_node ?? null,
    };
  } finally {
    await server?.close();
  }
}

async function distributedParams(request: TrainRequest, server: EventServer | undefined): Promise<DistributedParams> {
  const plan = request.distributed!;
  const folder = join(request.outputDir, 'distributed');
  await mkdir(folder, { recursive: true });
  const stopFile = join(folder, 'stop');
  request.onStopRequest?.((reason) => void writeFile(stopFile, `${reason}\n`).catch(() => undefined));
  // One node without MASTER_PORT: any free port (several jobs may share a machine).
  return rendezvousParams(plan, request.config.jobId, plan.masterPort ?? (await freePort()), { eventsSocket: server?.path ?? null, stopFile });
}

/** The preflight's model check of a framework's trainer module (`check_model` beside its `train`). */
/** recordedBest through `recorded_best` of our checkpoint format (timm, transformers). */
export function recordedBest(module: string): NonNullable<TrainingAdapter['recordedBest']> {
  const entry = pythonEntry(module, 'recorded_best', PathParamsSchema, RecordedBestSchema);
  return (bridge, path) => bridge.call(entry, { path });
}

/** markBest through `mark_best` of the framework's checkpoint module. */
export function markBest(module: string): TrainingAdapter['markBest'] {
  const entry = pythonEntry(module, 'mark_best', MarkBestParamsSchema, MarkBestAnswerSchema);
  return async (bridge, path, best) => {
    const answer = await bridge.call(entry, { path, epoch: best.epoch, value: best.value, score: best.score, decided_by: best.decidedBy });
    return answer.previous_best_epoch;
  };
}

export function modelCheck(module: string): (bridge: PythonBridge, config: TrainConfig) => Promise<ModelCheck> {
  const entry = pythonEntry(module, 'check_model', ModelCheckParamsSchema, ModelCheckSchema, { long: true });
  return (bridge, config) =>
    bridge.call(entry, {
      model_name: config.modelName,
      task_type: config.taskType,
      imgsz: config.imageSize,
      has_weights: Boolean(config.pretrainedWeightUrl || config.resumeCheckpointPath),
      config_overrides: config.hfConfigOverrides ?? null,
    });
}
