/**
 * The per-image results of one validated epoch: `validation-results/job-{JOB_ID}/epoch-{N}/images.json`,
 * whose URI the validation callback carries as `image_results_path`. The trainers write it while
 * they validate (python/vision_trainer/common/validation_images.py), at most one entry per image
 * of the val split; the job uploads it before it sends the callback. The vocabulary is
 * results.json's: `image_path`, `predictions`, `ground_truth` and per-image `metrics`, class ids
 * the dataset's. Its JSON Schema is docs/schemas/images.schema.json.
 */
import { z } from 'zod';
import { TimestampSchema } from '../../callbacks/schemas.js';
import { TASK_TYPES } from '../../config/tasks.js';
import { GroundTruthSchema, ImageMetricsSchema, PredictionsSchema } from '../infer/results.js';

const Count = z.number().int().nonnegative();

export const ValidationImageSchema = z.object({
  /** The image's file name in the dataset (relative to images/). */
  image_path: z.string(),
  predictions: PredictionsSchema,
  ground_truth: GroundTruthSchema,
  /** Classification: correct / top5_correct; detection tasks: precision, recall, mean IoU and the matches. */
  metrics: ImageMetricsSchema,
  image_id: z.string(),
  file_name: z.string(),
  /** Known for detection tasks (the original image's size); null for classifiers. */
  width: Count.nullable(),
  height: Count.nullable(),
});

export const ValidationImagesSchema = z.object({
  job_id: z.string().nullable(),
  epoch: Count,
  task_type: z.enum(TASK_TYPES),
  generated_at: TimestampSchema,
  /** The model's classes: the dataset's id and the name of each output. */
  class_ids: z.array(Count),
  class_names: z.array(z.string()),
  /** Detections are listed (and judged) from this confidence up; mAP used every detection. */
  confidence_threshold: z.number().min(0).max(1),
  results: z.array(ValidationImageSchema),
  num_images: Count,
});

export type ValidationImages = z.infer<typeof ValidationImagesSchema>;

/** `{ is_best: boolean }`, as the backend answers a validation callback. */
const IsBestAnswer = z.looseObject({ is_best: z.boolean() });

/**
 * What the subscribers of a `validation` event answered: the first `{ is_best }` among them
 * (the HTTP reporter's is the backend's response), or undefined when none answered.
 */
export function answeredIsBest(answers: unknown): boolean | undefined {
  for (const answer of Array.isArray(answers) ? answers : [answers]) {
    const parsed = IsBestAnswer.safeParse(answer);
    if (parsed.success) return parsed.data.is_best;
  }
  return undefined;
}
