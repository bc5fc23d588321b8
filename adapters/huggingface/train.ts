/**
 * transformers training: image classification (any AutoModelForImageClassification
 * architecture) and CLIP zero-shot classification, through `transformers.Trainer`, on the
 * JSON-lines manifest of writeHuggingFaceManifest. Python side: python/vision_trainer/huggingface/train.py.
 *
 * Weights: PRETRAINED_WEIGHT_URL is a zip of a `save_pretrained` folder, extracted here with the
 * same safe extraction as datasets. Without it the model is built from its configuration, which
 * HF_CONFIG_OVERRIDES may reshape (a tiny ViT or CLIP for tests, or another architecture).
 */
import { dirname, join } from 'node:path';
import { pythonEntry } from '../../src/bridge/python.js';
import { writeHuggingFaceManifest } from '../../src/datasets/convert/index.js';
import { FrameworkError, VisionTrainerError } from '../../src/errors.js';
import type { TrainingAdapter } from '../../src/frameworks/adapter.js';
import { TrainAnswerSchema, TrainParamsSchema } from '../../src/frameworks/protocol.js';
import { extractZip } from '../../src/storage/zip.js';
import { checkTrainerArgsInPython, markBest, modelCheck, trainerEvents, trainInPython, trainParams } from '../common/training.js';

const TRAIN = pythonEntry('vision_trainer.huggingface.train', 'train', TrainParamsSchema, TrainAnswerSchema, { long: true });
/** A save_pretrained folder of the largest models this runtime fine-tunes fits well within this. */
const MAX_PRETRAINED_BYTES = 8 * 1024 ** 3;

export const huggingfaceTraining: TrainingAdapter = {
  checkModel: modelCheck('vision_trainer.huggingface.train'),
  markBest: markBest('vision_trainer.common.checkpoints'),
  resolveTrainerArgs: (args, taskType, python) => checkTrainerArgsInPython('huggingface', args, taskType, python),

  // transformers loads its Trainer lazily, inside train().
  pythonModules: ['transformers.trainer'],

  async prepareDataset(dataset, splits, outDir) {
    const r = await writeHuggingFaceManifest(dataset, splits, outDir);
    return { dataPath: r.root, classNames: r.classNames, classIds: r.classIds, valImagesFile: r.valImagesFile, counts: r.counts };
  },

  async train(bridge, request, onEvent) {
    // A resumed run rebuilds its model from the checkpoint; the pretrained folder is not needed.
    const weights = request.weightsPath && !request.resumeFrom ? await extractPretrained(request.weightsPath) : null;
    const params = trainParams(request, { weights, config_overrides: request.config.hfConfigOverrides ?? null });
    return trainInPython(bridge, TRAIN, request, params, trainerEvents('transformers', onEvent));
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
