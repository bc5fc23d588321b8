/**
 * ultralytics training: object detection, instance segmentation, pose estimation and image
 * classification. Python side: python/vision_trainer/ultralytics_train.py.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { tailEvents } from '../event-relay.js';
import { FrameworkError } from '../../src/errors.js';
import { TrainerEventSchema, type TrainerAnswer, type TrainerEvent } from '../trainer-events.js';
import type { PreparedDataset, TrainingAdapter, TrainOutcome, TrainRequest } from '../types.js';
import { convertToImageFolder, convertToYolo } from '../../src/datasets/convert/index.js';
import type { Dataset } from '../../src/datasets/model.js';
import type { SplitAssignment } from '../../src/datasets/splits.js';
import type { PythonBridge } from '../../src/bridge/python.js';

const MODULE = 'vision_trainer.ultralytics_train';

export const ultralyticsTraining: TrainingAdapter = {

  pythonEnv(workDir: string) {
    // shared/notes/offline-ml.md: "true" (not "1") switches ultralytics offline; no pip at run time.
    return { YOLO_OFFLINE: 'true', YOLO_AUTOINSTALL: 'false', YOLO_CONFIG_DIR: join(workDir, 'ultralytics-config') };
  },

  async prepareDataset(dataset: Dataset, splits: SplitAssignment, outDir: string): Promise<PreparedDataset> {
    if (dataset.taskType === 'image_classification') {
      const r = await convertToImageFolder(dataset, splits, outDir);
      return { dataPath: r.root, classNames: r.classNames, counts: r.counts };
    }
    const r = await convertToYolo(dataset, splits, outDir);
    return { dataPath: r.dataYaml, classNames: r.classNames, counts: r.counts };
  },

  async train(bridge: PythonBridge, request: TrainRequest, onEvent: (event: TrainerEvent) => TrainerAnswer): Promise<TrainOutcome> {
    const { config } = request;
    const emit = (raw: unknown): TrainerAnswer => {
      const parsed = TrainerEventSchema.safeParse(raw);
      if (!parsed.success) {
        throw new FrameworkError(`The ultralytics trainer sent an event this version does not understand: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
      }
      return onEvent(parsed.data);
    };
    const params = {
      model_name: config.modelName,
      task_type: config.taskType,
      data: request.data.dataPath,
      epochs: config.epochs,
      batch: config.batchSize,
      imgsz: config.imageSize,
      device: config.device,
      workers: config.numWorkers,
      project: request.outputDir,
      weights: request.weightsPath ?? null,
      lr0: config.learningRate ?? null,
      resume_from: request.resumeFrom ?? null,
      log_file: request.logFile,
      primary_metric: request.primaryMetric,
    };
    // Several GPUs: ultralytics trains in DDP processes of its own; their events come through a file.
    const relay = config.device.includes(',') || process.env.VISION_TRAINER_EVENT_RELAY === 'file';
    const events = relay ? { events_file: join(request.outputDir, 'trainer-events.jsonl'), stop_file: join(request.outputDir, 'trainer-stop') } : null;
    if (events) await mkdir(request.outputDir, { recursive: true });
    const tail = events ? tailEvents(events.events_file, events.stop_file, emit) : undefined;
    let result;
    try {
      result = await bridge.call<{ best_epoch: number | null; best_path: string | null; last_path: string | null; stopped_early: boolean }>(
        MODULE,
        'train',
        [{ ...params, event_relay: events }, emit],
        {},
        { long: true },
      );
    } finally {
      await tail?.finish();
    }
    return { bestEpoch: result.best_epoch, bestPath: result.best_path, lastPath: result.last_path, stoppedEarly: result.stopped_early };
  },
};
