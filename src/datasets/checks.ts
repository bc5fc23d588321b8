/**
 * The dataset checks both file formats share: where problems are collected, how a problem
 * names its place, and the per-object rules (class ids, boxes inside the image, polygons,
 * keypoints). Each rule reports what is wrong and what to change, and turns a valid input
 * into the model's form (clipped to the image).
 */
import { isAbsolute } from 'node:path';
import type { z } from 'zod';
import type { DatasetProblem } from '../errors.js';
import type { Box, DatasetClass, DatasetObject, Keypoint } from './model.js';

/** Annotation tools round to whole pixels; a box this far past the edge is clipped, not rejected. */
export const PIXEL_TOLERANCE = 1;
/** Problems kept for the error (the total is still counted); a broken export can have millions. */
export const MAX_PROBLEMS_KEPT = 500;

export class ProblemList {
  readonly items: DatasetProblem[] = [];
  total = 0;

  constructor(private readonly limit = MAX_PROBLEMS_KEPT) {}

  add(image: string | undefined, field: string | undefined, message: string): void {
    this.total++;
    if (this.items.length < this.limit) this.items.push({ image, field, message });
  }

  get isEmpty(): boolean {
    return this.total === 0;
  }
}

/** A short, safe rendering of any JSON value for a message (bounded length, no deep walks). */
export function preview(value: unknown, maxLength = 60): string {
  let text: string;
  if (typeof value === 'string') text = JSON.stringify(value.length > maxLength ? `${value.slice(0, maxLength)}…` : value);
  else if (typeof value === 'number' || typeof value === 'boolean' || value === null) text = String(value);
  else if (value === undefined) text = 'nothing';
  else if (Array.isArray(value)) text = `an array of ${value.length}`;
  else text = 'an object';
  return text.length > maxLength + 2 ? `${text.slice(0, maxLength)}…` : text;
}

/** `['images', 3, 'bbox']` → `images[3].bbox`. */
export function fieldPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const key of path) {
    if (typeof key === 'number') out += `[${key}]`;
    else out += out ? `.${String(key)}` : String(key);
  }
  return out;
}

/**
 * How a problem names an image: its id when the entry has a usable one, else its position,
 * so that even an entry whose id is broken can be found in the file.
 */
export function imageLabel(raw: unknown, index: number): string {
  if (raw !== null && typeof raw === 'object' && !Array.isArray(raw)) {
    const { id, file_name: fileName } = raw as { id?: unknown; file_name?: unknown };
    if ((typeof id === 'number' && Number.isFinite(id)) || (typeof id === 'string' && id !== '')) {
      const idText = typeof id === 'string' && id.length > 80 ? `${id.slice(0, 80)}…` : String(id);
      return typeof fileName === 'string' && fileName.length <= 120 ? `${idText} (${fileName})` : idText;
    }
  }
  return `#${index}`;
}

export function addZodProblems(problems: ProblemList, error: z.ZodError, image: string | undefined, prefix: readonly PropertyKey[]): void {
  for (const issue of error.issues) {
    problems.add(image, fieldPath([...prefix, ...issue.path]), issue.message);
  }
}

/** Why a relative path from the annotations file may not be used, or undefined when it is safe. */
export function pathEscapeReason(relativePath: string): string | undefined {
  if (relativePath.includes('\0')) return 'contains a NUL character';
  if (isAbsolute(relativePath) || /^[A-Za-z]:/.test(relativePath) || relativePath.startsWith('\\')) {
    return `${preview(relativePath)} is an absolute path; give a path relative to the dataset's images/ folder`;
  }
  if (relativePath.split(/[\\/]/).includes('..')) {
    return `${preview(relativePath)} contains ".." and would reach outside the dataset folder; give a path inside images/`;
  }
  return undefined;
}

/**
 * Where in the file an object sits, for its problems. One place serves all objects of an
 * image (the reader moves `index`), and the field text is built only when a problem needs it:
 * a large dataset has hundreds of thousands of objects and, usually, no problems.
 */
export class ObjectPlace {
  index = 0;

  constructor(
    readonly image: string,
    /** The list the objects sit in, e.g. `images[3].annotations`. */
    private readonly list: string,
    readonly width: number,
    readonly height: number,
  ) {}

  /** e.g. `images[3].annotations[0]` */
  get field(): string {
    return `${this.list}[${this.index}]`;
  }
}

/** The dataset's classes, looked up by id. */
export class ClassTable {
  private readonly byId = new Map<number, DatasetClass>();

  constructor(classes: readonly DatasetClass[]) {
    for (const c of classes) if (!this.byId.has(c.id)) this.byId.set(c.id, c);
  }

  /** True when the id is declared and the name (when given) agrees with it. */
  check(classId: number, className: string | undefined, place: { image: string; field: string }, problems: ProblemList): boolean {
    const declared = this.byId.get(classId);
    if (!declared) {
      problems.add(
        place.image,
        `${place.field}.class_id`,
        `class id ${classId} is not declared in classes (declared: ${this.describeIds()}); add it to classes or fix the id`,
      );
      return false;
    }
    if (className !== undefined && className !== declared.name) {
      problems.add(
        place.image,
        `${place.field}.class_name`,
        `class_name ${preview(className)} disagrees with class id ${classId}, which classes names ${preview(declared.name)}; fix the id or the name`,
      );
      return false;
    }
    return true;
  }

  private describeIds(): string {
    const ids = [...this.byId.keys()].sort((a, b) => a - b);
    return ids.length > 12 ? `${ids.slice(0, 12).join(', ')}, … (${ids.length} in all)` : ids.join(', ');
  }
}

/** The keypoint count is the first one seen; every later object must agree with it. */
export class KeypointCount {
  count: number | undefined;
  private firstSeen = '';

  constructor(expected?: { count: number; source: string }) {
    if (expected) {
      this.count = expected.count;
      this.firstSeen = expected.source;
    }
  }

  check(count: number, place: { image: string; field: string }, problems: ProblemList): boolean {
    if (this.count === undefined) {
      this.count = count;
      this.firstSeen = `image ${place.image}`;
      return true;
    }
    if (count === this.count) return true;
    problems.add(
      place.image,
      `${place.field}.keypoints`,
      `has ${count} keypoints but the dataset uses ${this.count} (as on ${this.firstSeen}); every object needs the same keypoints, in the same order`,
    );
    return false;
  }
}

const round = (v: number) => Math.round(v * 1000) / 1000;

function outside(x0: number, y0: number, x1: number, y1: number, place: ObjectPlace): string | undefined {
  const t = PIXEL_TOLERANCE;
  const edges: string[] = [];
  if (x0 < -t) edges.push(`left edge at x=${round(x0)}`);
  if (y0 < -t) edges.push(`top edge at y=${round(y0)}`);
  if (x1 > place.width + t) edges.push(`right edge at x=${round(x1)}`);
  if (y1 > place.height + t) edges.push(`bottom edge at y=${round(y1)}`);
  return edges.length ? edges.join(', ') : undefined;
}

const clip = (v: number, max: number) => (v < 0 ? 0 : Math.min(v, max));

/** A valid box, clipped to the image, or undefined after reporting why not. */
export function checkBox(bbox: readonly number[], place: ObjectPlace, problems: ProblemList): Box | undefined {
  const [x = 0, y = 0, w = 0, h = 0] = bbox;
  if (!(w > 0 && h > 0)) {
    problems.add(
      place.image,
      `${place.field}.bbox`,
      `box [${bbox.map(round).join(', ')}] has a non-positive size (width ${round(w)}, height ${round(h)}); boxes are [x, y, width, height] with width and height above 0`,
    );
    return undefined;
  }
  const beyond = outside(x, y, x + w, y + h, place);
  if (beyond) {
    problems.add(
      place.image,
      `${place.field}.bbox`,
      `box [${bbox.map(round).join(', ')}] lies outside the ${place.width}x${place.height} image (${beyond}); fix the box or the image's width/height`,
    );
    return undefined;
  }
  const x0 = clip(x, place.width);
  const y0 = clip(y, place.height);
  const x1 = clip(x + w, place.width);
  const y1 = clip(y + h, place.height);
  if (x1 - x0 <= 0 || y1 - y0 <= 0) {
    problems.add(
      place.image,
      `${place.field}.bbox`,
      `box [${bbox.map(round).join(', ')}] has no area inside the ${place.width}x${place.height} image; remove it or fix it`,
    );
    return undefined;
  }
  return [x0, y0, x1 - x0, y1 - y0];
}

/** Valid polygons, clipped to the image, or undefined after reporting every bad one. */
export function checkPolygons(polygons: readonly (readonly number[])[], place: ObjectPlace, problems: ProblemList): number[][] | undefined {
  const out: number[][] = [];
  let ok = true;
  polygons.forEach((polygon, p) => {
    const field = `${place.field}.segmentation[${p}]`;
    if (polygon.length % 2 !== 0) {
      problems.add(place.image, field, `polygon has ${polygon.length} coordinates, an odd count; a polygon is a flat list of x, y pairs`);
      ok = false;
      return;
    }
    if (polygon.length < 6) {
      problems.add(place.image, field, `polygon has ${polygon.length / 2} point${polygon.length === 2 ? '' : 's'}; a polygon needs at least 3`);
      ok = false;
      return;
    }
    let x0 = Infinity;
    let y0 = Infinity;
    let x1 = -Infinity;
    let y1 = -Infinity;
    for (let i = 0; i < polygon.length; i += 2) {
      const px = polygon[i] as number;
      const py = polygon[i + 1] as number;
      if (px < x0) x0 = px;
      if (px > x1) x1 = px;
      if (py < y0) y0 = py;
      if (py > y1) y1 = py;
    }
    const beyond = outside(x0, y0, x1, y1, place);
    if (beyond) {
      problems.add(place.image, field, `polygon lies outside the ${place.width}x${place.height} image (${beyond}); fix the points or the image's width/height`);
      ok = false;
      return;
    }
    out.push(polygon.map((v, i) => clip(v, i % 2 === 0 ? place.width : place.height)));
  });
  return ok ? out : undefined;
}

/**
 * Valid keypoints, clipped to the image, or undefined after reporting why not. Unlabelled
 * keypoints (v = 0) carry no position; they become (0, 0, 0) so that placeholder
 * coordinates such as -1 never reach a label file.
 */
export function checkKeypoints(keypoints: readonly (readonly [number, number, number])[], place: ObjectPlace, problems: ProblemList): Keypoint[] | undefined {
  const out: Keypoint[] = [];
  for (let k = 0; k < keypoints.length; k++) {
    const [x, y, v] = keypoints[k] as readonly [number, number, number];
    if (v !== 0 && v !== 1 && v !== 2) {
      problems.add(place.image, `${place.field}.keypoints[${k}]`, `visibility ${round(v)} is not 0 (not labelled), 1 (occluded) or 2 (visible)`);
      return undefined;
    }
    if (v === 0) {
      out.push([0, 0, 0]);
      continue;
    }
    const beyond = outside(x, y, x, y, place);
    if (beyond) {
      problems.add(
        place.image,
        `${place.field}.keypoints[${k}]`,
        `keypoint (${round(x)}, ${round(y)}) lies outside the ${place.width}x${place.height} image; fix it or mark it not labelled (v = 0)`,
      );
      return undefined;
    }
    out.push([clip(x, place.width), clip(y, place.height), v]);
  }
  return out;
}

/** What an annotation says about one object, in either file format. */
export interface ObjectInput {
  classId: number;
  className?: string | undefined;
  bbox: readonly number[];
  segmentation?: readonly (readonly number[])[] | undefined;
  keypoints?: readonly (readonly [number, number, number])[] | undefined;
  iscrowd?: boolean | 0 | 1 | undefined;
}

export interface ObjectRules {
  classes: ClassTable;
  keypointCount: KeypointCount;
  problems: ProblemList;
  withPolygons: boolean;
  withKeypoints: boolean;
}

/** One object of the model, or undefined after its problems were reported. */
export function checkObject(input: ObjectInput, place: ObjectPlace, rules: ObjectRules): DatasetObject | undefined {
  const { problems } = rules;
  let ok = rules.classes.check(input.classId, input.className, place, problems);
  const bbox = checkBox(input.bbox, place, problems);
  ok &&= bbox !== undefined;
  const object: DatasetObject = { classId: input.classId, bbox: bbox ?? [0, 0, 0, 0] };
  if (input.iscrowd === true || input.iscrowd === 1) object.iscrowd = true;
  if (rules.withPolygons && input.segmentation && input.segmentation.length > 0) {
    const polygons = checkPolygons(input.segmentation, place, problems);
    if (polygons) object.segmentation = polygons;
    else ok = false;
  }
  // An empty list is the same as no keypoints: the object gets all-unlabelled keypoints later.
  if (rules.withKeypoints && input.keypoints && input.keypoints.length > 0) {
    if (rules.keypointCount.check(input.keypoints.length, place, problems)) {
      const keypoints = checkKeypoints(input.keypoints, place, problems);
      if (keypoints) object.keypoints = keypoints;
      else ok = false;
    } else {
      ok = false;
    }
  }
  return ok ? object : undefined;
}
