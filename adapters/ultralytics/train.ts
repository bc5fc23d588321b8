/**
 * ultralytics training: object detection, instance segmentation, pose estimation and image
 * classification, and YOLO-World detection prompted by the class names. Python side:
 * python/vision_trainer/ultralytics/train.py (and world.py).
 */
import { pythonEntry } from '../../src/bridge/python.js';
import { convertToImageFolder, convertToYolo } from '../../src/datasets/convert/index.js';
import type { TrainingAdapter } from '../../src/frameworks/adapter.js';
import { LabelCheckAnswerSchema, LabelCheckParamsSchema, TrainAnswerSchema, TrainParamsSchema } from '../../src/frameworks/protocol.js';
import { checkTrainerArgsInPython, extractSavePretrained, markBest, modelCheck, trainerEvents, trainInPython, trainParams } from '../common/training.js';

const TRAIN = pythonEntry('vision_trainer.ultralytics.train', 'train', TrainParamsSchema, TrainAnswerSchema, { long: true });
const CHECK_LABELS = pythonEntry('vision_trainer.ultralytics.train', 'check_labels_while_downloading', LabelCheckParamsSchema, LabelCheckAnswerSchema);

export const ultralyticsTraining: TrainingAdapter = {
  checkModel: modelCheck('vision_trainer.ultralytics.train'),
  markBest: markBest('vision_trainer.ultralytics.train'),
  resolveTrainerArgs: (args, taskType, python) => checkTrainerArgsInPython('ultralytics', args, taskType, python),

  // The trainer imports ultralytics' models lazily, inside train(): the YOLO model and trainers.
  // Its init_seeds sets torch's deterministic mode on or off in every run, and the first
  // torch.use_deterministic_algorithms call imports torch's compiler (torch._inductor,
  // torch._dynamo): 1.5-3 s of CPU here, more than the rest of a small run's set-up. (timm and
  // transformers import it with their own modules, in the preflight or below.)
  pythonModules: () => ['ultralytics.models.yolo', 'torch._inductor.config'],

  async prepareDataset(dataset, splits, outDir) {
    if (dataset.taskType === 'image_classification') {
      const r = await convertToImageFolder(dataset, splits, outDir);
      return { dataPath: r.root, classNames: r.classNames, classIds: r.classIds, valImagesFile: r.valImagesFile, counts: r.counts };
    }
    const r = await convertToYolo(dataset, splits, outDir);
    return { dataPath: r.dataYaml, classNames: r.classNames, classIds: r.classIds, valImagesFile: r.valImagesFile, counts: r.counts };
  },

  // ultralytics checks every image and label file when it builds a dataset (5 s for 20,000 small
  // images on 2 CPUs, after the download): begun here on each image as it arrives, the label
  // caches are written from those checks when training starts (label_cache.py).
  whileImagesArrive: (bridge, layout, taskType, trainerArgs) =>
    bridge.call(CHECK_LABELS, { data: layout.dataPath, task_type: taskType, trainer_args: trainerArgs }),

  async train(bridge, request, onEvent) {
    // YOLO-World: the CLIP text encoder that embeds the class names (python/vision_trainer/ultralytics/world.py).
    const textEncoder = request.textEncoderPath
      ? await extractSavePretrained(
          request.textEncoderPath,
          'text-encoder',
          'TEXT_ENCODER_WEIGHT_URL',
          'Zip the folder that a transformers CLIP model and its tokenizer were saved to with save_pretrained (config.json, model.safetensors, tokenizer files), e.g. openai/clip-vit-base-patch32.',
        )
      : null;
    return trainInPython(bridge, TRAIN, request, trainParams(request, { text_encoder: textEncoder }), trainerEvents('ultralytics', onEvent));
  },
};
