/**
 * What the Python trainers (ultralytics, timm, transformers) send to TypeScript while they
 * train: one shared protocol, validated here so a drift on the Python side is a clear error
 * instead of `undefined` deep inside the job.
 */
import { z } from 'zod';

const num = z.number().nullable();
const metrics = z.record(z.string(), num);

export const TrainerEventSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('start'), epochs: z.number().int(), start_epoch: z.number().int(), batches_per_epoch: z.number().int(), device: z.string(), save_dir: z.string().optional() }),
  z.object({ kind: z.literal('batch'), epoch: z.number().int(), epochs: z.number().int(), batch: z.number().int(), batches: z.number().int(), losses: metrics }),
  z.object({
    kind: z.literal('epoch'),
    epoch: z.number().int(),
    epochs: z.number().int(),
    losses: metrics,
    learning_rate: num,
    metrics,
    validation: z
      .object({
        primary_metric_name: z.string(),
        primary_metric_value: num,
        metrics,
        per_class_metrics: z.array(z.looseObject({ class_id: z.number().int(), class_name: z.string() })),
        confusion_matrix: z.array(z.array(z.number())).optional(),
        pr_curves: z.record(z.string(), z.object({ precision: z.array(num), recall: z.array(num) })).optional(),
        num_images_validated: z.number().int(),
        validation_time_seconds: num,
      })
      .nullable(),
    fitness: num.optional(),
    is_best: z.boolean(),
    epoch_time_seconds: num.optional(),
  }),
  z.object({ kind: z.literal('checkpoint'), epoch: z.number().int(), last_path: z.string(), best_path: z.string().nullable(), is_best: z.boolean() }),
  z.object({ kind: z.literal('end'), best_epoch: z.number().int().nullable(), last_epoch: z.number().int().nullable(), best_path: z.string().nullable(), last_path: z.string().nullable() }),
]);
export type TrainerEvent = z.infer<typeof TrainerEventSchema>;
export type TrainerEventOf<K extends TrainerEvent['kind']> = Extract<TrainerEvent, { kind: K }>;

/** The trainer's answer to an event: "stop" ends training after the current batch. */
export type TrainerAnswer = 'stop' | undefined;
