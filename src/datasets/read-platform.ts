/**
 * Reads a parsed Platform Format `annotations.json` into the dataset model, collecting every
 * problem instead of stopping at the first.
 */
import { addZodProblems, checkObject, ClassTable, KeypointCount, ObjectPlace, preview, type ObjectRules } from './checks.js';
import type { DatasetImage } from './model.js';
import { forEachImage, readClasses, resolveInside, type ReadContext, type ReadResult } from './read-common.js';
import {
  COMPATIBLE_DATASET_TASKS,
  DatasetSplitConfigSchema,
  PlatformClassSchema,
  PlatformHeaderSchema,
  PlatformImageSchemas,
  TaskTypeSchema,
  type PlatformClassificationImage,
  type PlatformPoseImage,
  type PlatformSegmentationImage,
  type PlatformSemanticImage,
} from './schema.js';

export function readPlatform(doc: unknown, ctx: ReadContext): ReadResult | undefined {
  const { problems } = ctx;
  const header = PlatformHeaderSchema.safeParse(doc);
  if (!header.success) {
    addZodProblems(problems, header.error, undefined, []);
    return undefined;
  }
  const file = header.data;

  if (file.task_type !== undefined) {
    const fileTask = TaskTypeSchema.safeParse(file.task_type);
    if (!fileTask.success) {
      problems.add(undefined, 'task_type', `${preview(file.task_type)} is not a task type; use one of ${TaskTypeSchema.options.join(', ')}`);
      return undefined;
    }
    if (!COMPATIBLE_DATASET_TASKS[ctx.taskType].includes(fileTask.data)) {
      // Every image would fail against the job's expectations; this one line says why.
      problems.add(
        undefined,
        'task_type',
        `the dataset is labelled for ${fileTask.data} but the job's TASK_TYPE is ${ctx.taskType}; pick a dataset labelled for ${COMPATIBLE_DATASET_TASKS[ctx.taskType].join(' or ')}, or change TASK_TYPE`,
      );
      return undefined;
    }
  }

  const classes = readClasses(file.classes, PlatformClassSchema, 'classes', problems);
  const rules: ObjectRules = {
    classes: new ClassTable(classes),
    keypointCount: new KeypointCount(),
    problems,
    withPolygons: ctx.kind === 'segmentation',
    withKeypoints: ctx.kind === 'pose',
  };

  const result: ReadResult = { classes, images: [] };
  if (file.dataset_id !== undefined) result.datasetId = file.dataset_id;
  if (file.dataset_name !== undefined) result.name = file.dataset_name;
  if (file.split_config !== undefined && file.split_config !== null) {
    const splitConfig = DatasetSplitConfigSchema.safeParse(file.split_config);
    if (splitConfig.success) result.splitConfig = splitConfig.data;
    else addZodProblems(problems, splitConfig.error, undefined, ['split_config']);
  }

  const schema = PlatformImageSchemas[ctx.kind];
  forEachImage(file.images, schema, ctx.imagesDir, problems, (entry, read) => {
    const { image, label, field } = read;
    const ok =
      ctx.kind === 'classification'
        ? readClassificationLabel(entry as PlatformClassificationImage, image, label, field, rules)
        : ctx.kind === 'semantic'
          ? readSemanticLabel(entry as PlatformSemanticImage, image, label, field, ctx)
          : readObjects(entry as PlatformSegmentationImage | PlatformPoseImage, image, label, field, rules);
    if (ok) result.images.push(read);
  });

  if (rules.keypointCount.count !== undefined) result.keypointCount = rules.keypointCount.count;
  return result;
}

function readClassificationLabel(entry: PlatformClassificationImage, image: DatasetImage, label: string, field: string, rules: ObjectRules): boolean {
  const annotation = entry.annotation;
  if (annotation === undefined || annotation === null) return true; // unlabelled
  if (!rules.classes.check(annotation.class_id, annotation.class_name, { image: label, field: `${field}.annotation` }, rules.problems)) return false;
  image.label = annotation.class_id;
  return true;
}

function readSemanticLabel(entry: PlatformSemanticImage, image: DatasetImage, label: string, field: string, ctx: ReadContext): boolean {
  const annotation = entry.annotation;
  if (annotation === undefined || annotation === null) return true; // unlabelled
  const maskPath = resolveInside(ctx.root, annotation.mask_file, { image: label, field: `${field}.annotation.mask_file` }, ctx.problems);
  if (maskPath === undefined) return false;
  image.maskPath = maskPath;
  return true;
}

function readObjects(entry: PlatformSegmentationImage | PlatformPoseImage, image: DatasetImage, label: string, field: string, rules: ObjectRules): boolean {
  const annotations = entry.annotations ?? [];
  const place = new ObjectPlace(label, `${field}.annotations`, image.width, image.height);
  let ok = true;
  for (let a = 0; a < annotations.length; a++) {
    place.index = a;
    const annotation = annotations[a] as (typeof annotations)[number] & { segmentation?: number[][]; keypoints?: [number, number, number][] };
    const object = checkObject(
      {
        classId: annotation.class_id,
        className: annotation.class_name,
        bbox: annotation.bbox,
        segmentation: annotation.segmentation,
        keypoints: annotation.keypoints,
        iscrowd: annotation.iscrowd,
      },
      place,
      rules,
    );
    if (object) image.objects.push(object);
    else ok = false;
  }
  return ok;
}
