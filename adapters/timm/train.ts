/**
 * timm training: image classification with any timm model name, on an ImageFolder tree.
 * Python side: python/vision_trainer/timm_train.py (timm's own train.py loop, reporting the
 * shared trainer events; checkpoints in the format of python/vision_trainer/checkpoints.py).
 */
import { join } from 'node:path';
import { FrameworkError } from '../../src/errors.js';
import { TrainerEventSchema, type TrainerAnswer, type TrainerEvent } from '../trainer-events.js';
import type { PreparedDataset, TrainingAdapter, TrainOutcome, TrainRequest } from '../types.js';
import { convertToImageFolder } from '../../src/datasets/convert/index.js';
import type { Dataset } from '../../src/datasets/model.js';
import type { SplitAssignment } from '../../src/datasets/splits.js';
import type { PythonBridge } from '../../src/bridge/python.js';

const MODULE = 'vision_trainer.timm_train';

export const timmTraining: TrainingAdapter = {
  pythonEnv(workDir: string) {
    // Weights come from PRETRAINED_WEIGHT_URL only: timm must never reach for the hub.
    return { HF_HUB_OFFLINE: '1', HF_HOME: join(workDir, 'hf-home'), TORCH_HOME: join(workDir, 'torch-home') };
  },

  async prepareDataset(dataset: Dataset, splits: SplitAssignment, outDir: string): Promise<PreparedDataset> {
    // The tree carries classes.txt, which pins timm's class numbering to classNames' order.
    const r = await convertToImageFolder(dataset, splits, outDir);
    return { dataPath: r.root, classNames: r.classNames, counts: r.counts };
  },

  async train(bridge: PythonBridge, request: TrainRequest, onEvent: (event: TrainerEvent) => TrainerAnswer): Promise<TrainOutcome> {
    const { config } = request;
    const emit = (raw: unknown): TrainerAnswer => {
      const parsed = TrainerEventSchema.safeParse(raw);
      if (!parsed.success) {
        throw new FrameworkError(`The timm trainer sent an event this version does not understand: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
      }
      return onEvent(parsed.data);
    };
    const params = {
      model_name: config.modelName,
      task_type: config.taskType,
      data: request.data.dataPath,
      class_names: request.data.classNames,
      epochs: config.epochs,
      batch: config.batchSize,
      imgsz: config.imageSize,
      device: config.device,
      workers: config.numWorkers,
      project: request.outputDir,
      weights: request.weightsPath ?? null,
      lr: config.learningRate ?? null,
      resume_from: request.resumeFrom ?? null,
      log_file: request.logFile,
      primary_metric: request.primaryMetric,
      job_id: config.jobId,
    };
    const result = await bridge.call<{ best_epoch: number | null; best_path: string | null; last_path: string | null; stopped_early: boolean }>(MODULE, 'train', [params, emit], {}, { long: true });
    return { bestEpoch: result.best_epoch, bestPath: result.best_path, lastPath: result.last_path, stoppedEarly: result.stopped_early };
  },
};
