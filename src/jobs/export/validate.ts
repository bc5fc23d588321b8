/**
 * Export validation: the original checkpoint and the exported model on the same validation
 * images, fed the very same input tensors (the Node wrapper's pre-processing), their raw outputs
 * compared value by value and their predictions (the wrapper's post-processing) scored against
 * the ground truth by one evaluator (pycocotools mAP50-95, or top-1 accuracy). The difference
 * is then the export's alone: conversion, graph passes, quantization, runtime.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { predictionsToJson, preprocess, type ModelWrapper, type Prediction, type RgbImage, type Tensor } from '../../../runtime/node/model_wrapper.js';
import { type PythonBridge, pythonEntry } from '../../bridge/python.js';
import { primaryMetric, type TaskType } from '../../config/tasks.js';
import type { Dataset, DatasetImage } from '../../datasets/model.js';
import { DatasetError, ExitCode, VisionTrainerError } from '../../errors.js';
import {
  DecodedImageSchema,
  DecodeImagesParamsSchema,
  EvaluateParamsSchema,
  MetricsAnswerSchema,
  type ValidationGroundTruth,
} from '../../frameworks/protocol.js';
import type { Logger } from '../../log.js';
import { summarize } from './latency.js';
import type { PreprocessingSpec, ValidationReport } from './metadata.js';
import { tileBatch, type ModelRunner } from './runners.js';

const MODULE = 'vision_trainer.common.export_validation';
const DECODE_IMAGES = pythonEntry(MODULE, 'decode_images', DecodeImagesParamsSchema, z.array(DecodedImageSchema), { long: true });
const EVALUATE = pythonEntry(MODULE, 'evaluate', EvaluateParamsSchema, MetricsAnswerSchema, { long: true });

/** ultralytics' validation thresholds: mAP needs low-confidence detections too. */
export const METRIC_THRESHOLDS = { confidence: 0.001, iou: 0.7, maxDetections: 100 } as const;
/** Images decoded per Python call. */
const DECODE_CHUNK = 16;

export class ExportValidationError extends VisionTrainerError {
  constructor(readonly report: ValidationReport) {
    super(
      `Export validation failed: ${report.metric} dropped by ${report.accuracy_drop?.toFixed(4)} (original ${report.original_accuracy?.toFixed(4)}, exported ${report.accuracy?.toFixed(4)} on ${report.num_samples} images), more than ACCURACY_DROP_MAX=${report.threshold}`,
      {
        exitCode: ExitCode.framework,
        hint: 'Raise ACCURACY_DROP_MAX, or export with lighter quantization (QUANTIZATION_TYPE=none, or float16 instead of int8).',
      },
    );
  }
}

export type GroundTruth = ValidationGroundTruth;

/**
 * The dataset's labels as the model's class ids (matched by class name): the ids the wrappers'
 * predictions carry, whatever ids the validation dataset itself gives the classes.
 */
export function groundTruthFor(
  dataset: Dataset,
  images: readonly DatasetImage[],
  model: { classNames: readonly string[]; classIds: readonly number[] },
  keypointShape: [number, number] | null,
): GroundTruth {
  const { classNames } = model;
  const modelId = new Map(classNames.map((n, i) => [n, model.classIds[i]!]));
  const byId = new Map(dataset.classes.map((c) => [c.id, c.name]));
  const unknown = new Set<string>();
  const indexOf = (classId: number): number => {
    const name = byId.get(classId) ?? String(classId);
    const id = modelId.get(name);
    if (id === undefined) unknown.add(name);
    return id ?? -1;
  };
  if (keypointShape && dataset.keypointCount !== undefined && dataset.keypointCount !== keypointShape[0]) {
    throw new DatasetError(
      `VALIDATION_DATASET_ID has ${dataset.keypointCount} keypoints per object, the model predicts ${keypointShape[0]}`,
      [],
      'Validate on a dataset with the keypoints the model was trained on.',
    );
  }
  const semantic = dataset.taskType === 'semantic_segmentation';
  const gt: GroundTruth = {
    class_names: [...classNames],
    class_ids: [...model.classIds],
    keypoint_count: keypointShape?.[0] ?? 0,
    // A mask value that is no class of the dataset is unlabelled (ignored), not an error.
    ...(semantic ? { mask_class_ids: dataset.classes.map((c): [number, number] => [c.id, indexOf(c.id)]) } : {}),
    images: images.map((img) => ({
      width: img.width,
      height: img.height,
      ...(img.label !== undefined ? { label: indexOf(img.label) } : {}),
      ...(img.maskPath !== undefined ? { mask: img.maskPath } : {}),
      objects: img.objects.map((o) => ({
        class_id: indexOf(o.classId),
        bbox: [...o.bbox],
        ...(o.segmentation ? { segmentation: o.segmentation } : {}),
        ...(o.keypoints ? { keypoints: o.keypoints.map((k) => [...k]) } : {}),
        ...(o.iscrowd ? { iscrowd: true } : {}),
      })),
    })),
  };
  if (unknown.size) {
    throw new DatasetError(
      `VALIDATION_DATASET_ID labels classes the model does not predict: ${[...unknown].join(', ')}`,
      [],
      `Validate on a dataset with the model's classes (${classNames.join(', ')}).`,
    );
  }
  return gt;
}

export interface SamplePrediction {
  /** The image file on disk and its name inside the package's samples/. */
  path: string;
  name: string;
  /** The exported model's predictions at the metadata's default thresholds, as the wrappers print them. */
  predictions: Record<string, unknown>[];
  /** The predictions the validation step scored (METRIC_THRESHOLDS). */
  validationPredictions: Record<string, unknown>[];
}

export interface ValidationInput {
  bridge: PythonBridge;
  taskType: TaskType;
  /** Pre- and post-processing (and, for ONNX, the exported model itself). */
  wrapper: ModelWrapper;
  original: ModelRunner;
  exported: ModelRunner;
  batchSize: number;
  dataset: Dataset;
  images: readonly DatasetImage[];
  datasetId: string;
  split: string;
  classNames: readonly string[];
  /** The class id of each model output (the checkpoint's). */
  classIds: readonly number[];
  keypointShape: [number, number] | null;
  threshold: number;
  /** When the export embeds its pre-processing: the original checkpoint's (float32 NCHW), from the same resized pixels. */
  originalPreprocessing?: PreprocessingSpec;
  /** Images whose exported-model predictions go into the package as samples. */
  samples: number;
  scratchDir: string;
  logger: Logger;
}

export interface ValidationOutcome {
  report: ValidationReport;
  samples: SamplePrediction[];
  /** A preprocessed validation image, for latency measurements on real input. */
  sampleInput: Tensor;
}

function compareOutputs(a: Tensor[], b: Tensor[], acc: { max: number; sum: number; count: number }): void {
  if (a.length !== b.length)
    throw new VisionTrainerError(`The exported model has ${b.length} outputs, the original ${a.length}`, { exitCode: ExitCode.framework });
  a.forEach((x, i) => {
    const y = b[i] as Tensor;
    if (x.data.length !== y.data.length) {
      throw new VisionTrainerError(`Output ${i} of the exported model has shape [${y.dims}], the original's [${x.dims}]`, { exitCode: ExitCode.framework });
    }
    for (let k = 0; k < x.data.length; k++) {
      const d = Math.abs((x.data[k] as number) - (y.data[k] as number));
      if (d > acc.max) acc.max = d;
      acc.sum += d;
    }
    acc.count += x.data.length;
  });
}

/** Decodes images in Python (OpenCV reads every format the platform accepts) to RGB pixels. */
export async function decodeImages(bridge: PythonBridge, images: readonly DatasetImage[], dir: string, offset = 0): Promise<RgbImage[]> {
  const items = images.map((img, i) => ({ path: img.path, out: join(dir, `decoded-${offset + i}.rgb`) }));
  const sizes = await bridge.call(DECODE_IMAGES, { items });
  if (sizes.length !== items.length) throw new VisionTrainerError(`Python decoded ${sizes.length} of ${items.length} images`, { exitCode: ExitCode.framework });
  return Promise.all(
    items.map(async (item, i) => {
      const bytes = await readFile(item.out);
      const size = sizes[i]!;
      return { data: new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength), width: size.width, height: size.height };
    }),
  );
}

export async function validateExport(input: ValidationInput): Promise<ValidationOutcome> {
  const { bridge, wrapper, logger } = input;
  if (input.images.length === 0) throw new DatasetError(`VALIDATION_DATASET_ID ${input.datasetId} has no images in its ${input.split} split`);
  const groundTruth = groundTruthFor(input.dataset, input.images, input, input.keypointShape);
  const diff = { max: 0, sum: 0, count: 0 };
  const latency = { original: [] as number[], exported: [] as number[] };
  const predictions = { original: [] as Record<string, unknown>[][], exported: [] as Record<string, unknown>[][] };
  const samples: SamplePrediction[] = [];
  let sampleInput: Tensor | undefined;
  const toJson = (p: Prediction[], w: number, h: number) => predictionsToJson(p, w, h);

  for (let start = 0; start < input.images.length; start += DECODE_CHUNK) {
    const chunk = input.images.slice(start, start + DECODE_CHUNK);
    const decoded = await decodeImages(bridge, chunk, input.scratchDir, start);
    for (const [i, rgb] of decoded.entries()) {
      const index = start + i;
      const image = chunk[i] as DatasetImage;
      const { tensor, transform } = wrapper.preprocess(rgb);
      const batch = tileBatch(tensor, input.batchSize);
      sampleInput ??= batch;
      const reference = input.originalPreprocessing ? tileBatch(preprocess(rgb, input.originalPreprocessing).tensor, input.batchSize) : batch;
      const original = await input.original.run(reference);
      const exported = await input.exported.run(batch);
      compareOutputs(original.outputs, exported.outputs, diff);
      latency.original.push(original.milliseconds);
      latency.exported.push(exported.milliseconds);
      const scored = toJson(wrapper.postprocess(exported.outputs, transform, METRIC_THRESHOLDS), rgb.width, rgb.height);
      predictions.original.push(toJson(wrapper.postprocess(original.outputs, transform, METRIC_THRESHOLDS), rgb.width, rgb.height));
      predictions.exported.push(scored);
      if (index < input.samples) {
        const name = `${String(index + 1).padStart(2, '0')}-${image.fileName.split('/').pop()}`;
        samples.push({
          path: image.path,
          name,
          predictions: toJson(wrapper.postprocess(exported.outputs, transform), rgb.width, rgb.height),
          validationPredictions: scored,
        });
      }
    }
    logger.info(`validation: ${Math.min(start + DECODE_CHUNK, input.images.length)}/${input.images.length} images`);
  }

  const evaluate = (predictions: Record<string, unknown>[][]) => bridge.call(EVALUATE, { task: input.taskType, ground_truth: groundTruth, predictions });
  const originalMetrics = await evaluate(predictions.original);
  const exportedMetrics = await evaluate(predictions.exported);
  const metric = primaryMetric(input.taskType) as ValidationReport['metric'];
  const originalValue = originalMetrics[metric] ?? null;
  const exportedValue = exportedMetrics[metric] ?? null;
  const drop = originalValue === null || exportedValue === null ? null : Math.round((originalValue - exportedValue) * 1e6) / 1e6;
  const report: ValidationReport = {
    accuracy: exportedValue,
    original_accuracy: originalValue,
    accuracy_drop: drop,
    passed: drop === null || drop <= input.threshold,
    metric,
    threshold: input.threshold,
    num_samples: input.images.length,
    max_abs_output_diff: diff.count ? diff.max : null,
    mean_abs_output_diff: diff.count ? diff.sum / diff.count : null,
    latency_ms: { exported: summarize(latency.exported), original: summarize(latency.original) },
    exported_metrics: exportedMetrics,
    original_metrics: originalMetrics,
    exported_runtime: input.exported.engine,
    dataset_id: input.datasetId,
    split: input.split,
  };
  if (drop === null) logger.warn(`validation: the ${input.split} split of ${input.datasetId} has no labels to score ${metric} on; outputs were compared only`);
  return { report, samples, sampleInput: sampleInput as Tensor };
}
