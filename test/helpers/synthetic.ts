/**
 * Small, real datasets on disk for tests and the demo: PNG images (encoded here with
 * node:zlib) showing coloured shapes exactly where the annotations put the objects, so a
 * model has something to learn, in the Platform Format or as COCO.
 *
 * Each class has its own colour and shape (rectangle, ellipse, triangle, ...), drawn on a
 * plain background. Everything is derived from `seed`: the same options give the same bytes.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { deflateSync, crc32 } from 'node:zlib';
import { cocoMaskFile } from '../../src/datasets/read-coco.js';
import { COCO_KEYPOINT_NAMES, type SplitName, type TaskType } from '../../src/datasets/schema.js';
import { mulberry32 } from './random.js';

// ---------------------------------------------------------------------------------------------
// PNG
// ---------------------------------------------------------------------------------------------

/** One PNG chunk: length, type, data, CRC. */
export function pngChunk(type: string, data: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, 'ascii');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])) >>> 0, 0);
  return Buffer.concat([head, data, crc]);
}

/** An 8-bit PNG from raw pixels: 3 channels (RGB) or 1 (greyscale, e.g. an indexed mask). */
export function encodePng(width: number, height: number, pixels: Uint8Array, channels: 1 | 3 = 3): Buffer {
  if (pixels.length !== width * height * channels) throw new Error(`encodePng: expected ${width * height * channels} bytes, got ${pixels.length}`);
  const stride = width * channels;
  const raw = Buffer.alloc((stride + 1) * height);
  for (let y = 0; y < height; y++) {
    raw[y * (stride + 1)] = 0; // filter: none
    raw.set(pixels.subarray(y * stride, (y + 1) * stride), y * (stride + 1) + 1);
  }
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header[8] = 8; // bit depth
  header[9] = channels === 3 ? 2 : 0; // colour type: truecolour or greyscale
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    pngChunk('IHDR', header),
    pngChunk('IDAT', deflateSync(raw)),
    pngChunk('IEND', Buffer.alloc(0)),
  ]);
}

export type Rgb = [number, number, number];

/** A pixel buffer with the few fill operations the generators need. */
export class Canvas {
  readonly pixels: Uint8Array;

  constructor(
    readonly width: number,
    readonly height: number,
    background: Rgb | number,
    readonly channels: 1 | 3 = 3,
  ) {
    this.pixels = new Uint8Array(width * height * channels);
    this.fillRect(0, 0, width, height, background);
  }

  private set(x: number, y: number, colour: Rgb | number): void {
    if (x < 0 || y < 0 || x >= this.width || y >= this.height) return;
    const i = (y * this.width + x) * this.channels;
    if (this.channels === 1) this.pixels[i] = typeof colour === 'number' ? colour : colour[0];
    else {
      const [r, g, b] = typeof colour === 'number' ? [colour, colour, colour] : colour;
      this.pixels[i] = r;
      this.pixels[i + 1] = g;
      this.pixels[i + 2] = b;
    }
  }

  /** Pixels whose centres fall in [x, x + w) × [y, y + h). */
  fillRect(x: number, y: number, w: number, h: number, colour: Rgb | number): void {
    for (let py = Math.max(0, Math.round(y)); py < Math.min(this.height, Math.round(y + h)); py++) {
      for (let px = Math.max(0, Math.round(x)); px < Math.min(this.width, Math.round(x + w)); px++) this.set(px, py, colour);
    }
  }

  /** Even-odd fill of one or more polygons (flat x, y lists), sampled at pixel centres. */
  fillPolygons(polygons: readonly (readonly number[])[], colour: Rgb | number): void {
    for (let py = 0; py < this.height; py++) {
      const cy = py + 0.5;
      const crossings: number[] = [];
      for (const poly of polygons) {
        const n = poly.length / 2;
        for (let i = 0; i < n; i++) {
          const x1 = poly[2 * i] as number;
          const y1 = poly[2 * i + 1] as number;
          const x2 = poly[(2 * (i + 1)) % poly.length] as number;
          const y2 = poly[(2 * (i + 1) + 1) % poly.length] as number;
          if ((y1 <= cy && y2 > cy) || (y2 <= cy && y1 > cy)) crossings.push(x1 + ((cy - y1) / (y2 - y1)) * (x2 - x1));
        }
      }
      crossings.sort((a, b) => a - b);
      for (let k = 0; k + 1 < crossings.length; k += 2) {
        for (let px = Math.ceil((crossings[k] as number) - 0.5); px + 0.5 < (crossings[k + 1] as number); px++) this.set(px, py, colour);
      }
    }
  }

  toPng(): Buffer {
    return encodePng(this.width, this.height, this.pixels, this.channels);
  }
}

// ---------------------------------------------------------------------------------------------
// Shapes
// ---------------------------------------------------------------------------------------------

const PALETTE: Rgb[] = [
  [220, 40, 40],
  [40, 90, 220],
  [30, 170, 60],
  [230, 180, 20],
  [160, 50, 200],
  [20, 190, 200],
  [240, 120, 30],
  [110, 70, 40],
];
const BACKGROUND: Rgb = [235, 235, 228];

type ShapeKind = 'rect' | 'ellipse' | 'triangle' | 'diamond';
const SHAPES: ShapeKind[] = ['rect', 'ellipse', 'triangle', 'diamond'];

/** The outline of a class's shape inside a box, as a polygon (a rectangle is its 4 corners). */
function shapePolygon(kind: ShapeKind, x: number, y: number, w: number, h: number): number[] {
  switch (kind) {
    case 'rect':
      return [x, y, x + w, y, x + w, y + h, x, y + h];
    case 'triangle':
      return [x + w / 2, y, x + w, y + h, x, y + h];
    case 'diamond':
      return [x + w / 2, y, x + w, y + h / 2, x + w / 2, y + h, x, y + h / 2];
    case 'ellipse': {
      const points: number[] = [];
      const n = 16;
      for (let i = 0; i < n; i++) {
        const a = (2 * Math.PI * i) / n;
        points.push(x + w / 2 + (w / 2) * Math.cos(a), y + h / 2 + (h / 2) * Math.sin(a));
      }
      return points;
    }
  }
}

const round2 = (v: number) => Math.round(v * 100) / 100;

function boundsOf(polygons: readonly (readonly number[])[]): [number, number, number, number] {
  let x0 = Infinity;
  let y0 = Infinity;
  let x1 = -Infinity;
  let y1 = -Infinity;
  for (const p of polygons) {
    for (let i = 0; i < p.length; i += 2) {
      x0 = Math.min(x0, p[i] as number);
      x1 = Math.max(x1, p[i] as number);
      y0 = Math.min(y0, p[i + 1] as number);
      y1 = Math.max(y1, p[i + 1] as number);
    }
  }
  return [round2(x0), round2(y0), round2(x1 - x0), round2(y1 - y0)];
}

/** COCO-17 keypoints as fractions of a person's box (nose, eyes, ears, shoulders, ...). */
const PERSON_TEMPLATE: ReadonlyArray<[number, number]> = [
  [0.5, 0.08],
  [0.44, 0.06],
  [0.56, 0.06],
  [0.38, 0.08],
  [0.62, 0.08],
  [0.3, 0.25],
  [0.7, 0.25],
  [0.2, 0.42],
  [0.8, 0.42],
  [0.14, 0.58],
  [0.86, 0.58],
  [0.38, 0.56],
  [0.62, 0.56],
  [0.36, 0.76],
  [0.64, 0.76],
  [0.34, 0.95],
  [0.66, 0.95],
];

// ---------------------------------------------------------------------------------------------
// Datasets
// ---------------------------------------------------------------------------------------------

export type SyntheticTask = Exclude<TaskType, 'zero_shot_classification'>;

export interface SyntheticOptions {
  taskType: SyntheticTask;
  /** Images (default 24). */
  count?: number;
  /** Image size in pixels (default 64 × 48). */
  width?: number;
  height?: number;
  /** Class names, or how many classes (default 3; pose: ["person"]; semantic: background + 2). */
  classes?: number | string[];
  /** First class id and the step between ids (default 0 and 1; e.g. 1 and 2 gives 1, 3, 5), or each class's id. */
  classIds?: { first: number; step: number } | number[];
  seed?: number;
  /** Write COCO JSON instead of the Platform Format (classification, detection, segmentation, pose). */
  format?: 'platform' | 'coco';
  /** Objects per image, inclusive range (default [1, 3]). */
  objectsPerImage?: [number, number];
  /** Every n-th image (1-based) has no objects or class: a background/unlabelled image. 0 = none. */
  backgroundEvery?: number;
  /** Put images in subfolders (`part-0/img-00001.png`) to exercise nested file names. */
  subfolders?: boolean;
  /** Segmentation: draw every n-th object in two pieces (a multi-part polygon). 0 = never. */
  multiPartEvery?: number;
  /** Image ids as numbers (default) or strings (`"img-1"`). */
  idStyle?: 'number' | 'string';
  /** Each image's own `split` field. */
  imageSplit?: (index: number) => SplitName | undefined;
  /** Written as `split_config`. */
  splitConfig?: Record<string, unknown>;
  /** Written as `task_type` (default: the task type; null leaves it out). */
  fileTaskType?: string | null;
}

export interface SyntheticDataset {
  root: string;
  annotationsPath: string;
  /** The annotations as written, for tests to inspect or mutate and rewrite. */
  annotations: Record<string, unknown>;
  imageCount: number;
  classNames: string[];
  /** The id of each class in classNames. */
  classIds: number[];
}

interface DrawnObject {
  classId: number;
  bbox: [number, number, number, number];
  polygons: number[][];
  keypoints?: [number, number, 0 | 1 | 2][];
}

interface DrawnImage {
  id: number | string;
  fileName: string;
  width: number;
  height: number;
  split?: SplitName;
  label?: number;
  objects: DrawnObject[];
  maskFile?: string;
}

/**
 * Class ids a backend's dataset may well have: not contiguous, and in another order than the
 * names' (circle 7, square 3, triangle 11; a single class is 5). A framework numbers classes
 * 0..n-1 by name or by id, so a runtime that reported its own index would be caught.
 */
export const CONTRACT_CLASS_IDS = [7, 3, 11, 19, 23, 29, 31, 37];

/** CONTRACT_CLASS_IDS for `count` classes. */
export function contractClassIds(count: number): number[] {
  return count === 1 ? [5] : CONTRACT_CLASS_IDS.slice(0, count);
}

export function defaultClassNames(taskType: SyntheticTask, classes: SyntheticOptions['classes']): string[] {
  if (Array.isArray(classes)) return classes;
  if (taskType === 'pose_estimation' && classes === undefined) return ['person'];
  const n = classes ?? 3;
  const names = ['circle', 'square', 'triangle', 'diamond', 'bar', 'dot', 'ring', 'blob'];
  const list = Array.from({ length: n }, (_, i) => names[i] ?? `class-${i}`);
  return taskType === 'semantic_segmentation' && classes === undefined ? ['background', 'square', 'ellipse'] : list;
}

/** Writes `<dir>/annotations.json` and `<dir>/images/...` (and `masks/` for semantic). */
export function writeSyntheticDataset(dir: string, options: SyntheticOptions): SyntheticDataset {
  const root = resolve(dir);
  const task = options.taskType;
  const count = options.count ?? 24;
  const width = options.width ?? 64;
  const height = options.height ?? 48;
  const random = mulberry32(options.seed ?? 1);
  const between = (lo: number, hi: number) => lo + random() * (hi - lo);
  const intBetween = (lo: number, hi: number) => Math.floor(between(lo, hi + 1));
  const names = defaultClassNames(task, options.classes);
  const ids = options.classIds ?? { first: 0, step: 1 };
  const classIds = Array.isArray(ids) ? names.map((_, i) => ids[i] ?? 100 + i) : names.map((_, i) => ids.first + i * ids.step);
  const [minObjects, maxObjects] = options.objectsPerImage ?? [1, 3];

  const images: DrawnImage[] = [];
  for (let index = 0; index < count; index++) {
    const id = options.idStyle === 'string' ? `img-${index + 1}` : index + 1;
    const base = `img-${String(index + 1).padStart(5, '0')}.png`;
    const fileName = options.subfolders ? `part-${index % 3}/${base}` : base;
    const background = options.backgroundEvery ? (index + 1) % options.backgroundEvery === 0 : false;
    const canvas = new Canvas(width, height, BACKGROUND);
    const image: DrawnImage = { id, fileName, width, height, objects: [] };
    const split = options.imageSplit?.(index);
    if (split) image.split = split;

    if (task === 'image_classification') {
      if (!background) {
        const c = index % names.length;
        const w = between(width * 0.4, width * 0.8);
        const h = between(height * 0.4, height * 0.8);
        const polygon = shapePolygon(SHAPES[c % SHAPES.length] as ShapeKind, between(0, width - w), between(0, height - h), w, h);
        canvas.fillPolygons([polygon], PALETTE[c % PALETTE.length] as Rgb);
        image.label = classIds[c];
      }
    } else {
      const mask = task === 'semantic_segmentation' ? new Canvas(width, height, 0, 1) : undefined;
      const objects = background ? 0 : intBetween(minObjects, maxObjects);
      for (let o = 0; o < objects; o++) {
        // Semantic class 0 is the background; objects use the others.
        const c = task === 'semantic_segmentation' ? 1 + intBetween(0, names.length - 2) : intBetween(0, names.length - 1);
        const w = Math.max(6, Math.round(between(width * 0.2, width * 0.5)));
        const h = Math.max(6, Math.round(between(height * 0.2, height * 0.5)));
        const x = Math.round(between(0, width - w));
        const y = Math.round(between(0, height - h));
        const colour = PALETTE[c % PALETTE.length] as Rgb;
        let polygons: number[][];
        if (options.multiPartEvery && (o + index) % options.multiPartEvery === 0 && w >= 12) {
          const half = Math.floor(w / 2) - 1;
          polygons = [shapePolygon('rect', x, y, half, h), shapePolygon('rect', x + w - half, y, half, h)];
        } else {
          polygons = [shapePolygon(task === 'pose_estimation' ? 'rect' : (SHAPES[c % SHAPES.length] as ShapeKind), x, y, w, h).map(round2)];
        }
        canvas.fillPolygons(polygons, colour);
        mask?.fillPolygons(polygons, classIds[c] as number);
        const object: DrawnObject = { classId: classIds[c] as number, bbox: boundsOf(polygons), polygons };
        if (task === 'pose_estimation') {
          object.keypoints = PERSON_TEMPLATE.map(([fx, fy], k) => {
            const v: 0 | 1 | 2 = (k + o + index) % 11 === 0 ? 0 : (k + index) % 7 === 0 ? 1 : 2;
            if (v === 0) return [0, 0, 0];
            const kx = round2(x + fx * w);
            const ky = round2(y + fy * h);
            canvas.fillRect(kx - 1, ky - 1, 2, 2, k % 2 === 0 ? [255, 255, 255] : [20, 20, 20]);
            return [kx, ky, v];
          });
        }
        image.objects.push(object);
      }
      if (mask) {
        image.maskFile = `masks/${base}`;
        writeFile(join(root, image.maskFile), mask.toPng());
      }
    }
    writeFile(join(root, 'images', fileName), canvas.toPng());
    images.push(image);
  }

  const annotations = options.format === 'coco' ? toCoco(task, names, classIds, images) : toPlatform(task, names, classIds, images, options);
  const annotationsPath = join(root, 'annotations.json');
  writeFile(annotationsPath, `${JSON.stringify(annotations, null, 1)}\n`);
  return { root, annotationsPath, annotations, imageCount: count, classNames: names, classIds };
}

function writeFile(path: string, content: Buffer | string): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, content);
}

function toPlatform(task: SyntheticTask, names: string[], classIds: number[], images: DrawnImage[], options: SyntheticOptions): Record<string, unknown> {
  const nameOf = new Map(classIds.map((id, i) => [id, names[i] as string]));
  const doc: Record<string, unknown> = {
    format_version: '1.0',
    dataset_id: `synthetic-${task}`,
    dataset_name: `Synthetic ${task}`,
  };
  if (options.fileTaskType !== null) doc.task_type = options.fileTaskType ?? task;
  doc.classes = classIds.map((id, i) => ({
    id,
    name: names[i],
    color: `#${(PALETTE[i % PALETTE.length] as Rgb).map((v) => v.toString(16).padStart(2, '0')).join('')}`,
  }));
  if (options.splitConfig) doc.split_config = options.splitConfig;
  let annotationId = 1;
  doc.images = images.map((image) => {
    const entry: Record<string, unknown> = { id: image.id, file_name: image.fileName, width: image.width, height: image.height };
    if (image.split) entry.split = image.split;
    if (task === 'image_classification') {
      if (image.label !== undefined) entry.annotation = { class_id: image.label, class_name: nameOf.get(image.label), confidence: 1.0 };
    } else if (task === 'semantic_segmentation') {
      entry.annotation = { mask_file: image.maskFile, mask_format: 'indexed_png', num_classes: names.length };
    } else {
      entry.annotations = image.objects.map((object) => {
        const a: Record<string, unknown> = {
          id: annotationId++,
          class_id: object.classId,
          class_name: nameOf.get(object.classId),
          bbox: object.bbox,
          bbox_format: 'xywh',
          area: round2(object.bbox[2] * object.bbox[3]),
          iscrowd: 0,
        };
        if (task === 'instance_segmentation') a.segmentation = object.polygons;
        if (task === 'pose_estimation' && object.keypoints) {
          a.keypoints = object.keypoints;
          a.num_keypoints = object.keypoints.filter((k) => k[2] > 0).length;
        }
        return a;
      });
    }
    return entry;
  });
  return doc;
}

function toCoco(task: SyntheticTask, names: string[], classIds: number[], images: DrawnImage[]): Record<string, unknown> {
  // Semantic segmentation: COCO-Stuff's pixel-map layout, masks/<image stem>.png beside the file (read-coco.ts).
  for (const image of images) {
    if (task === 'semantic_segmentation' && image.maskFile !== cocoMaskFile(image.fileName)) {
      throw new Error(`writeSyntheticDataset: ${image.maskFile} is not where COCO semantic datasets keep ${image.fileName}'s label map`);
    }
  }
  const categories = classIds.map((id, i) => {
    const category: Record<string, unknown> = { id, name: names[i], supercategory: 'shape' };
    if (task === 'pose_estimation') category.keypoints = [...COCO_KEYPOINT_NAMES];
    return category;
  });
  const annotations: Record<string, unknown>[] = [];
  for (const image of images) {
    if (task === 'image_classification') {
      if (image.label !== undefined) annotations.push({ id: annotations.length + 1, image_id: image.id, category_id: image.label });
      continue;
    }
    if (task === 'semantic_segmentation') continue;
    for (const object of image.objects) {
      const a: Record<string, unknown> = {
        id: annotations.length + 1,
        image_id: image.id,
        category_id: object.classId,
        bbox: object.bbox,
        area: round2(object.bbox[2] * object.bbox[3]),
        iscrowd: 0,
      };
      if (task === 'instance_segmentation') a.segmentation = object.polygons;
      if (task === 'pose_estimation' && object.keypoints) {
        a.keypoints = object.keypoints.flat();
        a.num_keypoints = object.keypoints.filter((k) => k[2] > 0).length;
      }
      annotations.push(a);
    }
  }
  return {
    info: { description: `Synthetic ${task}` },
    images: images.map((image) => ({
      id: image.id,
      file_name: image.fileName,
      width: image.width,
      height: image.height,
      ...(image.split ? { split: image.split } : {}),
    })),
    annotations,
    categories,
  };
}

/** Rewrites a synthetic dataset's annotations file (after a test changed `annotations`). */
export function rewriteAnnotations(dataset: SyntheticDataset, annotations: unknown = dataset.annotations): void {
  writeFileSync(dataset.annotationsPath, typeof annotations === 'string' ? annotations : JSON.stringify(annotations));
}
