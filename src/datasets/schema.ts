/**
 * The two annotation file formats a dataset may arrive in, as zod schemas: the Platform
 * Format (`annotations.json`, see docs/contract.md) and COCO JSON. They describe
 * the structure only; the checks that need the whole file (class ids exist, boxes inside
 * the image, one keypoint count, unique ids) live in `checks.ts`, and both formats are read
 * into the one model of `model.ts`.
 *
 * Objects are loose (unknown keys are kept and ignored) because exporters add their own
 * fields (`statistics`, `color`, `area`, ...) and a new optional field must not fail a job.
 */
import { z } from 'zod';

/** The task names the design uses for TASK_TYPE, plus semantic segmentation (Platform Format only). */
export const TaskTypeSchema = z.enum([
  'image_classification',
  'zero_shot_classification',
  'object_detection',
  'instance_segmentation',
  'pose_estimation',
  'semantic_segmentation',
]);
export type TaskType = z.infer<typeof TaskTypeSchema>;

/** What a task needs from each image: one class, boxes, boxes + polygons, boxes + keypoints, or a mask. */
export type LabelKind = 'classification' | 'detection' | 'segmentation' | 'pose' | 'semantic';

export function labelKindOf(taskType: TaskType): LabelKind {
  switch (taskType) {
    case 'image_classification':
    case 'zero_shot_classification':
      return 'classification';
    case 'object_detection':
      return 'detection';
    case 'instance_segmentation':
      return 'segmentation';
    case 'pose_estimation':
      return 'pose';
    case 'semantic_segmentation':
      return 'semantic';
  }
}

/**
 * Which dataset `task_type`s a job may train on. A dataset labelled for a richer task carries
 * what a simpler one needs (polygons and keypoints come with boxes), so a detector may train
 * on a segmentation or pose dataset; classification labels serve both classification tasks.
 * Every other pairing is a mistake in the job or the dataset.
 */
export const COMPATIBLE_DATASET_TASKS: Readonly<Record<TaskType, readonly TaskType[]>> = {
  image_classification: ['image_classification', 'zero_shot_classification'],
  zero_shot_classification: ['zero_shot_classification', 'image_classification'],
  object_detection: ['object_detection', 'instance_segmentation', 'pose_estimation'],
  instance_segmentation: ['instance_segmentation'],
  pose_estimation: ['pose_estimation'],
  semantic_segmentation: ['semantic_segmentation'],
};

export const SplitNameSchema = z.enum(['train', 'val', 'test']);
export type SplitName = z.infer<typeof SplitNameSchema>;

/** Image ids may be numbers or strings in the file; everywhere else they are compared as strings. */
export const ImageIdSchema = z.union([z.int(), z.string().min(1)], { error: 'must be an integer or a non-empty string' });

const finite = z.number();
/** `[x, y, w, h]` in absolute pixels, top-left origin. */
export const BoxSchema = z.tuple([finite, finite, finite, finite]);
/** One polygon as a flat list `[x1, y1, x2, y2, ...]` in absolute pixels. */
export const PolygonSchema = z.array(finite);
export const VisibilitySchema = z.union([z.literal(0), z.literal(1), z.literal(2)], {
  error: 'keypoint visibility must be 0 (not labelled), 1 (occluded) or 2 (visible)',
});
const CrowdFlagSchema = z.union([z.boolean(), z.literal(0), z.literal(1)], { error: 'iscrowd must be 0, 1, true or false' });

/** Ratios of two (train/val) or three (train/val/test) parts that add up to 1. */
export const SplitRatioSchema = z
  .array(z.number().min(0).max(1))
  .min(2, 'give two parts (train, val) or three (train, val, test)')
  .max(3, 'give two parts (train, val) or three (train, val, test)')
  .refine((parts) => Math.abs(parts.reduce((a, b) => a + b, 0) - 1) < 1e-6, 'the parts must add up to 1')
  .refine((parts) => (parts[0] ?? 0) > 0 && (parts[1] ?? 0) > 0, 'train and val parts must be above 0');

/**
 * Seeds are integers a JSON number holds exactly (|seed| < 2^53): a larger literal is
 * silently rounded by every JSON parser, so the split would no longer be the one the seed
 * names. Negative seeds are allowed and, as in CPython, split as their absolute value.
 */
const SEED_RULE =
  'the seed must be an integer between -(2^53 - 1) and 2^53 - 1 (9007199254740991): larger JSON numbers are rounded, so they cannot name a split exactly';
export const SplitSeedSchema = z.number({ error: SEED_RULE }).refine((seed) => Number.isSafeInteger(seed), { error: SEED_RULE });

// ---------------------------------------------------------------------------------------------
// Platform Format
// ---------------------------------------------------------------------------------------------

export const PlatformClassSchema = z.looseObject({
  id: z.int().min(0),
  name: z.string().min(1),
  color: z.string().optional(),
  supercategory: z.string().optional(),
});

/** The dataset's own split decision (design "Split Handling", level 2). */
export const DatasetSplitConfigSchema = z.looseObject({
  method: z.enum(['manual', 'auto', 'partial']),
  default_ratio: SplitRatioSchema.optional(),
  seed: SplitSeedSchema.optional(),
  splits: z.record(z.string(), SplitNameSchema).optional(),
});
export type DatasetSplitConfig = z.infer<typeof DatasetSplitConfigSchema>;

export const PlatformClassificationLabelSchema = z.looseObject({
  class_id: z.int().min(0),
  class_name: z.string().optional(),
  confidence: z.number().min(0).max(1).optional(),
});

export const PlatformBoxAnnotationSchema = z.looseObject({
  id: ImageIdSchema.optional(),
  class_id: z.int().min(0),
  class_name: z.string().optional(),
  bbox: BoxSchema,
  bbox_format: z.literal('xywh').optional(),
  area: z.number().optional(),
  iscrowd: CrowdFlagSchema.optional(),
});

export const PlatformInstanceAnnotationSchema = PlatformBoxAnnotationSchema.extend({
  // Optional: an object without a polygon is trained on its box outline, as ultralytics does.
  segmentation: z.array(PolygonSchema).optional(),
});

export const PlatformPoseAnnotationSchema = PlatformBoxAnnotationSchema.extend({
  keypoints: z.array(z.tuple([finite, finite, VisibilitySchema])).optional(),
  num_keypoints: z.int().min(0).optional(),
});

export const PlatformSemanticLabelSchema = z.looseObject({
  /** Relative to the dataset folder (e.g. `masks/0001.png`); pixel value = class id. */
  mask_file: z.string().min(1),
  mask_format: z.literal('indexed_png'),
  num_classes: z.int().min(1).optional(),
});

const platformImageBase = {
  id: ImageIdSchema,
  /** Relative to the dataset's `images/` folder. */
  file_name: z.string().min(1),
  width: z.int().min(1),
  height: z.int().min(1),
  depth: z.int().min(1).optional(),
  split: SplitNameSchema.optional(),
};

/** One image entry of the Platform Format, per label kind. A missing label makes a background image. */
export const PlatformImageSchemas = {
  classification: z.looseObject({ ...platformImageBase, annotation: PlatformClassificationLabelSchema.nullish() }),
  detection: z.looseObject({ ...platformImageBase, annotations: z.array(PlatformBoxAnnotationSchema).nullish() }),
  segmentation: z.looseObject({ ...platformImageBase, annotations: z.array(PlatformInstanceAnnotationSchema).nullish() }),
  pose: z.looseObject({ ...platformImageBase, annotations: z.array(PlatformPoseAnnotationSchema).nullish() }),
  semantic: z.looseObject({ ...platformImageBase, annotation: PlatformSemanticLabelSchema.nullish() }),
} as const satisfies Record<LabelKind, z.ZodType>;

export type PlatformClass = z.infer<typeof PlatformClassSchema>;
export type PlatformClassificationImage = z.infer<(typeof PlatformImageSchemas)['classification']>;
export type PlatformDetectionImage = z.infer<(typeof PlatformImageSchemas)['detection']>;
export type PlatformSegmentationImage = z.infer<(typeof PlatformImageSchemas)['segmentation']>;
export type PlatformPoseImage = z.infer<(typeof PlatformImageSchemas)['pose']>;
export type PlatformSemanticImage = z.infer<(typeof PlatformImageSchemas)['semantic']>;
export type PlatformImage = PlatformClassificationImage | PlatformDetectionImage | PlatformSegmentationImage | PlatformPoseImage | PlatformSemanticImage;

/**
 * The top level of `annotations.json`. `images` stays unparsed here: the loader parses each
 * image on its own so that one broken entry is reported next to the others instead of
 * hiding them, and so that problems name the image they belong to.
 */
export const PlatformHeaderSchema = z.looseObject({
  format_version: z.string().optional(),
  dataset_id: z.string().optional(),
  dataset_name: z.string().optional(),
  task_type: z.string().optional(),
  classes: z.array(z.unknown()).min(1, 'the dataset declares no classes'),
  images: z.array(z.unknown()),
  splits: z.record(z.string(), z.unknown()).optional(),
  statistics: z.unknown().optional(),
  split_config: z.unknown().optional(),
});

/** A whole Platform Format file for one label kind, for callers that want a single parse. */
export function platformFileSchema(kind: LabelKind) {
  return PlatformHeaderSchema.extend({
    classes: z.array(PlatformClassSchema).min(1),
    images: z.array(PlatformImageSchemas[kind]),
    split_config: DatasetSplitConfigSchema.optional(),
  });
}
export type PlatformFile = z.infer<ReturnType<typeof platformFileSchema>>;

// ---------------------------------------------------------------------------------------------
// COCO
// ---------------------------------------------------------------------------------------------

export const CocoCategorySchema = z.looseObject({
  id: z.int().min(0),
  name: z.string().min(1),
  supercategory: z.string().optional(),
  keypoints: z.array(z.string()).optional(),
  skeleton: z.array(z.tuple([z.int(), z.int()])).optional(),
});

export const CocoImageSchema = z.looseObject({
  id: ImageIdSchema,
  file_name: z.string().min(1),
  width: z.int().min(1),
  height: z.int().min(1),
  /** Not COCO, but exporters that know the split write it here as in the Platform Format. */
  split: SplitNameSchema.optional(),
});

/** Run-length encoded mask, used by COCO for crowd regions. */
export const CocoRleSchema = z.looseObject({
  counts: z.union([z.string(), z.array(z.int())]),
  size: z.tuple([z.int(), z.int()]),
});

export const CocoAnnotationSchema = z.looseObject({
  id: ImageIdSchema.optional(),
  image_id: ImageIdSchema,
  category_id: z.int().min(0),
  /** Optional only for classification, where an annotation just names the image's class. */
  bbox: BoxSchema.optional(),
  segmentation: z.union([z.array(PolygonSchema), CocoRleSchema]).optional(),
  /** Flat `[x1, y1, v1, x2, y2, v2, ...]`. */
  keypoints: z.array(finite).optional(),
  num_keypoints: z.int().min(0).optional(),
  iscrowd: CrowdFlagSchema.optional(),
  area: z.number().optional(),
});

export const CocoHeaderSchema = z.looseObject({
  info: z.unknown().optional(),
  licenses: z.unknown().optional(),
  categories: z.array(z.unknown()).min(1, 'the dataset declares no categories'),
  images: z.array(z.unknown()),
  annotations: z.array(z.unknown()),
});

export const CocoFileSchema = CocoHeaderSchema.extend({
  categories: z.array(CocoCategorySchema).min(1),
  images: z.array(CocoImageSchema),
  annotations: z.array(CocoAnnotationSchema),
});

export type CocoCategory = z.infer<typeof CocoCategorySchema>;
export type CocoImage = z.infer<typeof CocoImageSchema>;
export type CocoAnnotation = z.infer<typeof CocoAnnotationSchema>;
export type CocoFile = z.infer<typeof CocoFileSchema>;

/** The 17 COCO person keypoints, in COCO order. */
export const COCO_KEYPOINT_NAMES = [
  'nose',
  'left_eye',
  'right_eye',
  'left_ear',
  'right_ear',
  'left_shoulder',
  'right_shoulder',
  'left_elbow',
  'right_elbow',
  'left_wrist',
  'right_wrist',
  'left_hip',
  'right_hip',
  'left_knee',
  'right_knee',
  'left_ankle',
  'right_ankle',
] as const;

/** Left/right swap for horizontal flips of COCO-17 (the `flip_idx` of ultralytics' coco-pose.yaml). */
export const COCO_KEYPOINT_FLIP_INDEX = [0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15] as const;
