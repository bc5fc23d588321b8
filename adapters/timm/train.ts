/**
 * timm training: image classification with any timm model name, on an ImageFolder tree.
 * Python side: python/vision_trainer/timm/train.py (timm's own train.py loop, reporting the
 * shared trainer events; checkpoints in the format of python/vision_trainer/common/checkpoints.py).
 */
import { pythonEntry } from '../../src/bridge/python.js';
import { convertToImageFolder } from '../../src/datasets/convert/index.js';
import type { TrainingAdapter } from '../../src/frameworks/adapter.js';
import { TrainAnswerSchema, TrainParamsSchema } from '../../src/frameworks/protocol.js';
import { resolveTimmArgs } from '../../src/config/trainer-args.js';
import type { JsonValue } from '../../src/events.js';
import { CLASSIFIER_METRICS_MODULE, markBest, modelCheck, recordedBest, trainerEvents, trainInPython, trainParams } from '../common/training.js';

const TRAIN = pythonEntry('vision_trainer.timm.train', 'train', TrainParamsSchema, TrainAnswerSchema, { long: true });

export const timmTraining: TrainingAdapter = {
  checkModel: modelCheck('vision_trainer.timm.train'),
  markBest: markBest('vision_trainer.common.checkpoints'),
  recordedBest: recordedBest('vision_trainer.common.checkpoints'),
  // Our own loop: its options are a static table, checked with the configuration; here the defaults are filled in.
  resolveTrainerArgs: async (args) => resolveTimmArgs(args) as Record<string, JsonValue>,

  // The trainer module imports torch and timm at its top: the preflight's model check loaded them.
  // The first validation's metrics import scikit-learn: 1.2 s after the first epoch, otherwise.
  pythonModules: () => [CLASSIFIER_METRICS_MODULE],

  async prepareDataset(dataset, splits, outDir) {
    // The tree carries classes.txt, which pins timm's class numbering to classNames' order.
    const r = await convertToImageFolder(dataset, splits, outDir);
    return { dataPath: r.root, classNames: r.classNames, classIds: r.classIds, valImagesFile: r.valImagesFile, counts: r.counts };
  },

  train: (bridge, request, onEvent) => trainInPython(bridge, TRAIN, request, trainParams(request), trainerEvents('timm', onEvent)),
};
