/**
 * Ground truth of a test run in the model's terms. The test dataset's classes are matched to the
 * model's by name, so a test set may hold a subset of the model's classes or list them in
 * another order, but a class the model never learned is an error: its objects could never be
 * found. The evaluator compares the model's class indices; results.json states every class by
 * the id the model's training dataset gave it (the checkpoint's class ids), the same id its
 * predictions carry. A test dataset that numbers a class differently is told in the log.
 */
import type { GroundTruthInput } from '../../frameworks/protocol.js';
import type { Dataset, DatasetImage } from '../../datasets/model.js';
import { DatasetError } from '../../errors.js';
import type { GroundTruthRecord } from './results.js';

export interface ClassMapping {
  /** Test dataset class id → model class index. */
  toModel: Map<number, number>;
  modelNames: readonly string[];
  /** The class id of each model index (the checkpoint's class ids). */
  modelIds: readonly number[];
  /** Classes the test dataset numbers otherwise than the model's training dataset did. */
  renumbered: Array<{ name: string; testId: number; modelId: number }>;
}

export function mapClasses(dataset: Pick<Dataset, 'classes'>, model: { class_names: readonly string[]; class_ids: readonly number[] }): ClassMapping {
  const modelNames = model.class_names;
  const byName = new Map(modelNames.map((name, index) => [name, index]));
  const toModel = new Map<number, number>();
  const unknown: string[] = [];
  const renumbered: ClassMapping['renumbered'] = [];
  for (const c of dataset.classes) {
    const index = byName.get(c.name);
    if (index === undefined) unknown.push(c.name);
    else {
      toModel.set(c.id, index);
      if (model.class_ids[index] !== c.id) renumbered.push({ name: c.name, testId: c.id, modelId: model.class_ids[index]! });
    }
  }
  if (unknown.length > 0) {
    throw new DatasetError(
      `The test dataset has class${unknown.length === 1 ? '' : 'es'} the model was not trained on: ${unknown.map((n) => JSON.stringify(n)).join(', ')}`,
      [],
      `The checkpoint knows: ${modelNames.map((n) => JSON.stringify(n)).join(', ')}. Test with a dataset whose class names are among these (a subset is fine), or with a checkpoint trained on these classes.`,
    );
  }
  return { toModel, modelNames, modelIds: model.class_ids, renumbered };
}

export interface ImageGroundTruth {
  /** What the Python evaluator takes. */
  input: GroundTruthInput;
  /** What results.json shows; null when only Python can say it (a semantic mask's classes, in the image's outcome). */
  record: GroundTruthRecord | null;
}

/**
 * The image's ground truth, or null for an unlabelled classification image (nothing to evaluate).
 * Crowd regions are left out, as the converters and ultralytics' validator leave them out.
 */
export function groundTruthOf(image: DatasetImage, dataset: Pick<Dataset, 'taskType' | 'keypointCount'>, mapping: ClassMapping): ImageGroundTruth | null {
  const { taskType } = dataset;
  const model = (datasetClassId: number): number => {
    const index = mapping.toModel.get(datasetClassId);
    if (index === undefined) throw new DatasetError(`Image ${image.id} uses class id ${datasetClassId}, which the dataset does not list in "classes"`);
    return index;
  };
  if (taskType === 'semantic_segmentation') {
    if (image.maskPath === undefined) return null;
    // The mask's values are this dataset's ids: each is paired with the model's index of the same class name.
    return { input: { mask: image.maskPath, class_map: [...mapping.toModel.entries()] }, record: null };
  }
  if (taskType === 'image_classification' || taskType === 'zero_shot_classification') {
    if (image.label === undefined) return null;
    const index = model(image.label);
    return { input: { class: index }, record: { class_id: mapping.modelIds[index]!, class_name: mapping.modelNames[index]! } };
  }
  const objects = image.objects.filter((o) => !o.iscrowd);
  const boxes = objects.map((o): [number, number, number, number] => [o.bbox[0], o.bbox[1], o.bbox[0] + o.bbox[2], o.bbox[1] + o.bbox[3]]);
  const classes = objects.map((o) => model(o.classId));
  const input: GroundTruthInput = { boxes, classes };
  if (taskType === 'instance_segmentation') input.segmentations = objects.map((o) => o.segmentation ?? []);
  // An object without keypoints has them all absent (visibility 0), so every object has the model's count.
  const absent = (): Array<[number, number, number]> => Array.from({ length: dataset.keypointCount ?? 0 }, () => [0, 0, 0]);
  if (taskType === 'pose_estimation')
    input.keypoints = objects.map((o) => (o.keypoints ? o.keypoints.map(([x, y, v]): [number, number, number] => [x, y, v]) : absent()));
  return {
    input,
    record: {
      objects: objects.map((o, i) => ({
        bbox: boxes[i]!,
        class_id: mapping.modelIds[classes[i]!]!,
        class_name: mapping.modelNames[classes[i]!]!,
        ...(o.segmentation ? { segmentation: o.segmentation } : {}),
        ...(taskType === 'pose_estimation' && o.keypoints ? { keypoints: o.keypoints.map(([x, y, v]): [number, number, number] => [x, y, v]) } : {}),
      })),
    },
  };
}
