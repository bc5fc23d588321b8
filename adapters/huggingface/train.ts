/**
 * transformers training: image classification (any AutoModelForImageClassification
 * architecture) and CLIP zero-shot classification, through `transformers.Trainer`, on the
 * JSON-lines manifest of writeHuggingFaceManifest. Python side: python/vision_trainer/huggingface/train.py.
 *
 * Weights: PRETRAINED_WEIGHT_URL is a zip of a `save_pretrained` folder, extracted here with the
 * same safe extraction as datasets. Without it the model is built from its configuration, which
 * HF_CONFIG_OVERRIDES may reshape (a tiny ViT or CLIP for tests, or another architecture).
 */
import { pythonEntry } from '../../src/bridge/python.js';
import { writeHuggingFaceManifest } from '../../src/datasets/convert/index.js';
import type { TrainingAdapter } from '../../src/frameworks/adapter.js';
import { TrainAnswerSchema, TrainParamsSchema } from '../../src/frameworks/protocol.js';
import {
  CLASSIFIER_METRICS_MODULE,
  checkTrainerArgsInPython,
  extractSavePretrained,
  markBest,
  modelCheck,
  recordedBest,
  trainerEvents,
  trainInPython,
  trainParams,
} from '../common/training.js';

const TRAIN = pythonEntry('vision_trainer.huggingface.train', 'train', TrainParamsSchema, TrainAnswerSchema, { long: true });

export const huggingfaceTraining: TrainingAdapter = {
  checkModel: modelCheck('vision_trainer.huggingface.train'),
  markBest: markBest('vision_trainer.common.checkpoints'),
  recordedBest: recordedBest('vision_trainer.common.checkpoints'),
  resolveTrainerArgs: (args, taskType, python) => checkTrainerArgsInPython('huggingface', args, taskType, python),

  // transformers loads its Trainer lazily, inside train(); a classifier's first validation then
  // imports scikit-learn for its metrics (semantic segmentation's metrics do without it).
  pythonModules: (taskType) => ['transformers.trainer', ...(taskType === 'semantic_segmentation' ? [] : [CLASSIFIER_METRICS_MODULE])],

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

/** The downloaded zip, extracted beside it. */
function extractPretrained(zipPath: string): Promise<string> {
  return extractSavePretrained(
    zipPath,
    'pretrained',
    'PRETRAINED_WEIGHT_URL',
    'For FRAMEWORK=huggingface, zip the folder that model.save_pretrained(dir) wrote (config.json and model.safetensors, plus the image processor and, for CLIP, tokenizer files).',
  );
}
