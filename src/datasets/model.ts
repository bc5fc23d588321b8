/**
 * The one in-memory dataset model. Platform Format and COCO files are both read into it
 * (`load.ts`), splits are resolved on it (`splits.ts`) and every converter reads from it
 * (`convert/`), so no code past the loader knows which file format a dataset came in.
 *
 * Coordinates are absolute pixels, top-left origin, already validated and clipped to the
 * image (see `checks.ts`); image ids are strings.
 */
import type { DatasetSplitConfig, SplitName, TaskType } from './schema.js';

export interface DatasetClass {
  id: number;
  name: string;
  color?: string;
  supercategory?: string;
}

export type Box = [x: number, y: number, width: number, height: number];
export type Keypoint = [x: number, y: number, visibility: 0 | 1 | 2];

export interface DatasetObject {
  classId: number;
  bbox: Box;
  /** Polygons as flat `[x1, y1, x2, y2, ...]` lists; several when the object is in pieces. */
  segmentation?: number[][];
  /** The same count on every object of a dataset (`Dataset.keypointCount`). */
  keypoints?: Keypoint[];
  /** COCO crowd regions: kept for completeness, skipped by the converters as ultralytics does. */
  iscrowd?: boolean;
}

export interface DatasetImage {
  /** The file's id as a string: `7` and `"7"` are the same image. */
  id: string;
  /** As written in the file, relative to `images/`. */
  fileName: string;
  /** Absolute path of the image file. */
  path: string;
  width: number;
  height: number;
  /** The image's own split, when the dataset assigns one. */
  split?: SplitName;
  /** Classification: the class id. Absent on an unlabelled image. */
  label?: number;
  /** Detection, segmentation, pose. Empty for background images. */
  objects: DatasetObject[];
  /** Semantic segmentation: absolute path of the indexed PNG mask. */
  maskPath?: string;
  /** Image format from the file header (`jpg`, `png`, ...), known when headers were verified. */
  format?: string;
}

export type DatasetSourceFormat = 'platform' | 'coco';

export interface Dataset {
  /** The folder holding `annotations.json` and `images/`. */
  root: string;
  imagesDir: string;
  /** The job's task type (the file's own `task_type`, when given, was checked against it). */
  taskType: TaskType;
  sourceFormat: DatasetSourceFormat;
  datasetId?: string;
  name?: string;
  /** In file order. Ids are unique but need not be contiguous. */
  classes: DatasetClass[];
  images: DatasetImage[];
  splitConfig?: DatasetSplitConfig;
  /** Pose datasets: keypoints per object. */
  keypointCount?: number;
  /** Pose datasets: keypoint names when the file gives them (COCO `categories[].keypoints`). */
  keypointNames?: string[];
}
