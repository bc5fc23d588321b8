/**
 * Reads a parsed COCO file (`images`, `annotations`, `categories`) into the dataset model.
 * Annotations are matched to images through an id index (ids as strings), never by search.
 * For classification, an image's annotations name its class (a `bbox` is not needed).
 */
import { addZodProblems, checkObject, ClassTable, KeypointCount, ObjectPlace, preview, type ObjectRules } from './checks.js';
import type { DatasetImage } from './model.js';
import { forEachImage, readClasses, resolveInside, type ReadContext, type ReadImage, type ReadResult } from './read-common.js';
import { CocoAnnotationSchema, CocoCategorySchema, CocoHeaderSchema, CocoImageSchema, type CocoAnnotation } from './schema.js';

export function readCoco(doc: unknown, ctx: ReadContext): ReadResult | undefined {
  const { problems } = ctx;
  const header = CocoHeaderSchema.safeParse(doc);
  if (!header.success) {
    addZodProblems(problems, header.error, undefined, []);
    return undefined;
  }
  const file = header.data;
  if (ctx.kind === 'semantic') return readCocoPixelMaps(file, ctx);
  const classes = readClasses(file.categories, CocoCategorySchema, 'categories', problems);
  const result: ReadResult = { classes, images: [] };

  let expectedKeypoints: { count: number; source: string } | undefined;
  if (ctx.kind === 'pose') {
    file.categories.forEach((raw, index) => {
      const parsed = CocoCategorySchema.safeParse(raw);
      const names = parsed.success ? parsed.data.keypoints : undefined;
      if (!names || names.length === 0) return;
      if (!expectedKeypoints) {
        expectedKeypoints = { count: names.length, source: `categories[${index}].keypoints` };
        result.keypointNames = names;
      } else if (names.length !== expectedKeypoints.count) {
        problems.add(
          undefined,
          `categories[${index}].keypoints`,
          `names ${names.length} keypoints but ${expectedKeypoints.source} names ${expectedKeypoints.count}; every category needs the same keypoints`,
        );
      }
    });
  }
  const rules: ObjectRules = {
    classes: new ClassTable(classes),
    keypointCount: new KeypointCount(expectedKeypoints),
    problems,
    withPolygons: ctx.kind === 'segmentation',
    withKeypoints: ctx.kind === 'pose',
  };

  const byId = new Map<string, ReadImage>();
  forEachImage(file.images, CocoImageSchema, ctx.imagesDir, problems, (_entry, read) => byId.set(read.image.id, read));

  // An image with a bad annotation is left out of the result (its problems fail the load anyway).
  const broken = new Set<string>();
  file.annotations.forEach((raw, index) => {
    const field = `annotations[${index}]`;
    const parsed = CocoAnnotationSchema.safeParse(raw);
    if (!parsed.success) {
      const imageId = (raw as { image_id?: unknown } | null)?.image_id;
      addZodProblems(problems, parsed.error, typeof imageId === 'number' || typeof imageId === 'string' ? String(imageId) : undefined, ['annotations', index]);
      return;
    }
    const annotation = parsed.data;
    const target = byId.get(String(annotation.image_id));
    if (!target) {
      problems.add(
        String(annotation.image_id),
        `${field}.image_id`,
        `no image has id ${preview(annotation.image_id)}; the annotation must refer to an entry of images`,
      );
      return;
    }
    if (!readAnnotation(annotation, target.image, target.label, index, rules, ctx)) broken.add(target.image.id);
  });

  for (const read of byId.values()) if (!broken.has(read.image.id)) result.images.push(read);
  if (rules.keypointCount.count !== undefined) result.keypointCount = rules.keypointCount.count;
  return result;
}

/** Where a COCO semantic dataset's label map for an image is: `masks/<file_name's stem>.png`. */
export function cocoMaskFile(fileName: string): string {
  return `${COCO_MASKS_DIR}/${fileName.replace(/\.[^./]*$/, '')}.png`;
}
export const COCO_MASKS_DIR = 'masks';

/**
 * Semantic segmentation from COCO: the layout of COCO-Stuff's pixel maps. `images` and
 * `categories` come from the COCO file; each image's labels are a PNG at
 * `masks/<file_name's stem>.png` whose pixel values are the categories' ids (values that are no
 * category id, such as COCO-Stuff's 0 "unlabeled" or 255, are ignored by training and metrics).
 * Segments inside the JSON (polygons or RLE per category, as in `stuff_*.json`, or panoptic
 * `segments_info`) are not rasterised here: the problem names the converters that write these maps.
 */
function readCocoPixelMaps(file: { categories: unknown[]; images: unknown[]; annotations: unknown[] }, ctx: ReadContext): ReadResult | undefined {
  const { problems } = ctx;
  const classes = readClasses(file.categories, CocoCategorySchema, 'categories', problems);
  const segmented = file.annotations.findIndex((a) => a !== null && typeof a === 'object' && ('segmentation' in a || 'segments_info' in a));
  if (segmented !== -1) {
    const panoptic = 'segments_info' in (file.annotations[segmented] as object);
    const count = file.annotations.filter((a) => a !== null && typeof a === 'object' && ('segmentation' in a || 'segments_info' in a)).length;
    problems.add(
      undefined,
      `annotations[${segmented}].${panoptic ? 'segments_info' : 'segmentation'}`,
      `${count} annotation(s) carry ${panoptic ? 'panoptic segments' : 'polygon or RLE segments'}; semantic segmentation reads COCO labels as pixel maps, one PNG per image at ${COCO_MASKS_DIR}/<image file stem>.png with pixel value = category id (COCO-Stuff's *_pixelmaps layout). Write them with ${panoptic ? "panopticapi's converters/panoptic2semantic_segmentation.py" : "cocostuffapi's cocoSegmentationToPng (pycocotools)"}, or use the Platform Format's annotation.mask_file`,
    );
    return undefined;
  }
  const result: ReadResult = { classes, images: [] };
  forEachImage(file.images, CocoImageSchema, ctx.imagesDir, problems, (entry, read) => {
    const maskPath = resolveInside(ctx.root, cocoMaskFile(entry.file_name), { image: read.label, field: `${read.field}.file_name` }, problems);
    if (maskPath === undefined) return;
    read.image.maskPath = maskPath;
    read.maskField = `${read.field} (its label map ${cocoMaskFile(entry.file_name)})`;
    result.images.push(read);
  });
  return result;
}

function readAnnotation(annotation: CocoAnnotation, image: DatasetImage, label: string, index: number, rules: ObjectRules, ctx: ReadContext): boolean {
  const { problems } = rules;
  const field = `annotations[${index}]`;
  if (ctx.kind === 'classification') {
    if (!rules.classes.check(annotation.category_id, undefined, { image: label, field }, problems)) return false;
    if (image.label !== undefined && image.label !== annotation.category_id) {
      problems.add(label, `${field}.category_id`, `image already has class ${image.label}; a classification image has exactly one class`);
      return false;
    }
    image.label = annotation.category_id;
    return true;
  }
  if (annotation.bbox === undefined) {
    problems.add(label, `${field}.bbox`, 'bbox is missing; detection, segmentation and pose annotations need [x, y, width, height]');
    return false;
  }
  const crowd = annotation.iscrowd === true || annotation.iscrowd === 1;
  let polygons: number[][] | undefined;
  if (ctx.kind === 'segmentation' && annotation.segmentation !== undefined) {
    if (Array.isArray(annotation.segmentation)) polygons = annotation.segmentation;
    else if (!crowd) {
      // Crowd regions are skipped in training anyway; a regular object needs a polygon.
      problems.add(label, `${field}.segmentation`, 'is a run-length encoded mask; only crowd regions (iscrowd 1) may use RLE, give objects polygons');
      return false;
    }
  }
  let keypoints: [number, number, number][] | undefined;
  if (ctx.kind === 'pose' && annotation.keypoints !== undefined) {
    const flat = annotation.keypoints;
    if (flat.length % 3 !== 0) {
      problems.add(label, `${field}.keypoints`, `has ${flat.length} numbers; COCO keypoints are a flat list of x, y, visibility triples`);
      return false;
    }
    keypoints = [];
    for (let i = 0; i < flat.length; i += 3) keypoints.push([flat[i] as number, flat[i + 1] as number, flat[i + 2] as number]);
  }
  const object = checkObject(
    { classId: annotation.category_id, bbox: annotation.bbox, segmentation: polygons, keypoints, iscrowd: annotation.iscrowd },
    Object.assign(new ObjectPlace(label, 'annotations', image.width, image.height), { index }),
    rules,
  );
  if (!object) return false;
  image.objects.push(object);
  return true;
}
