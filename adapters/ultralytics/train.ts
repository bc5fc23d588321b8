/**
 * ultralytics training: object detection, instance segmentation, pose estimation and image
 * classification. Python side: python/vision_trainer/ultralytics/train.py.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { pythonEntry } from '../../src/bridge/python.js';
import { convertToImageFolder, convertToYolo } from '../../src/datasets/convert/index.js';
import type { TrainingAdapter } from '../../src/frameworks/adapter.js';
import { TrainAnswerSchema, TrainParamsSchema } from '../../src/frameworks/protocol.js';
import { tailEvents } from '../common/event-relay.js';
import { checkTrainerArgsInPython, modelCheck, trainerEvents, trainInPython, trainParams } from '../common/training.js';

const TRAIN = pythonEntry('vision_trainer.ultralytics.train', 'train', TrainParamsSchema, TrainAnswerSchema, { long: true });

export const ultralyticsTraining: TrainingAdapter = {
  checkModel: modelCheck('vision_trainer.ultralytics.train'),
  resolveTrainerArgs: (args, taskType, python) => checkTrainerArgsInPython('ultralytics', args, taskType, python),

  // The trainer imports ultralytics' models lazily, inside train(): the YOLO model and trainers.
  pythonModules: ['ultralytics.models.yolo'],

  async prepareDataset(dataset, splits, outDir) {
    if (dataset.taskType === 'image_classification') {
      const r = await convertToImageFolder(dataset, splits, outDir);
      return { dataPath: r.root, classNames: r.classNames, classIds: r.classIds, valImagesFile: r.valImagesFile, counts: r.counts };
    }
    const r = await convertToYolo(dataset, splits, outDir);
    return { dataPath: r.dataYaml, classNames: r.classNames, classIds: r.classIds, valImagesFile: r.valImagesFile, counts: r.counts };
  },

  async train(bridge, request, onEvent) {
    const emit = trainerEvents('ultralytics', onEvent);
    // Several GPUs: ultralytics trains in DDP processes of its own; their events come through a file.
    const relay = request.config.device.includes(',') || process.env.VISION_TRAINER_EVENT_RELAY === 'file';
    const files = relay ? { events_file: join(request.outputDir, 'trainer-events.jsonl'), stop_file: join(request.outputDir, 'trainer-stop') } : null;
    if (files) await mkdir(request.outputDir, { recursive: true });
    const tail = files ? tailEvents(files.events_file, files.stop_file, emit) : undefined;
    try {
      return await trainInPython(bridge, TRAIN, trainParams(request, { event_relay: files }), emit);
    } finally {
      await tail?.finish();
    }
  },
};
