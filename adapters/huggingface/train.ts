/**
 * transformers training: image classification (any AutoModelForImageClassification
 * architecture) and CLIP zero-shot classification, through `transformers.Trainer`, on the
 * JSON-lines manifest of writeHuggingFaceManifest. Python side: python/vision_trainer/hf_train.py.
 *
 * Weights: PRETRAINED_WEIGHT_URL is a zip of a `save_pretrained` folder, extracted here with the
 * same safe extraction as datasets. Without it the model is built from its configuration, which
 * HF_CONFIG_OVERRIDES may reshape (a tiny ViT or CLIP for tests, or another architecture).
 */
import { dirname, join } from 'node:path';
import { FrameworkError, VisionTrainerError } from '../../src/errors.js';
import { extractZip } from '../../src/storage/zip.js';
import { TrainerEventSchema, type TrainerAnswer, type TrainerEvent } from '../trainer-events.js';
import type { PreparedDataset, TrainingAdapter, TrainOutcome, TrainRequest } from '../types.js';
import { writeHuggingFaceManifest } from '../../src/datasets/convert/index.js';
import type { Dataset } from '../../src/datasets/model.js';
import type { SplitAssignment } from '../../src/datasets/splits.js';
import type { PythonBridge } from '../../src/bridge/python.js';

const MODULE = 'vision_trainer.hf_train';
/** A save_pretrained folder of the largest models this runtime fine-tunes fits well within this. */
const MAX_PRETRAINED_BYTES = 8 * 1024 ** 3;

export const huggingfaceTraining: TrainingAdapter = {
  pythonEnv(workDir: string) {
    // No hub at run time: weights come from PRETRAINED_WEIGHT_URL or are built from a config.
    return { HF_HUB_OFFLINE: '1', TRANSFORMERS_OFFLINE: '1', HF_HUB_DISABLE_TELEMETRY: '1', HF_HOME: join(workDir, 'hf-home') };
  },

  async prepareDataset(dataset: Dataset, splits: SplitAssignment, outDir: string): Promise<PreparedDataset> {
    const r = await writeHuggingFaceManifest(dataset, splits, outDir);
    return { dataPath: r.root, classNames: r.classNames, counts: r.counts };
  },

  async train(bridge: PythonBridge, request: TrainRequest, onEvent: (event: TrainerEvent) => TrainerAnswer): Promise<TrainOutcome> {
    const { config } = request;
    const emit = (raw: unknown): TrainerAnswer => {
      const parsed = TrainerEventSchema.safeParse(raw);
      if (!parsed.success) {
        throw new FrameworkError(`The transformers trainer sent an event this version does not understand: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
      }
      return onEvent(parsed.data);
    };
    // A resumed run rebuilds its model from the checkpoint; the pretrained folder is not needed.
    const weights = request.weightsPath && !request.resumeFrom ? await extractPretrained(request.weightsPath) : null;
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
      weights,
      config_overrides: config.hfConfigOverrides ?? null,
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

/** The downloaded zip, extracted beside it; Python finds config.json at its root or one level down. */
async function extractPretrained(zipPath: string): Promise<string> {
  const folder = join(dirname(zipPath), 'pretrained');
  try {
    await extractZip(zipPath, folder, { maxTotalBytes: MAX_PRETRAINED_BYTES });
  } catch (err) {
    const why = err instanceof VisionTrainerError ? err.message : String(err);
    throw new FrameworkError(`PRETRAINED_WEIGHT_URL is not a zip of a save_pretrained folder: ${why}`, {
      hint: 'For FRAMEWORK=huggingface, zip the folder that model.save_pretrained(dir) wrote (config.json and model.safetensors, plus the image processor and, for CLIP, tokenizer files).',
      cause: err,
    });
  }
  return folder;
}
