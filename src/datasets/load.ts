/**
 * Loads a dataset folder (`annotations.json` + `images/`) into the dataset model. The file
 * may be in the Platform Format or COCO (told apart by their top-level keys). Every problem
 * is collected, then reported together in one DatasetError that names the image and field.
 */
import { readFile } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { DatasetError } from '../errors.js';
import { MAX_PROBLEMS_KEPT, ProblemList } from './checks.js';
import { verifyImageFiles } from './image-files.js';
import { jsonSyntaxErrorOffset } from './json-position.js';
import type { Dataset, DatasetSourceFormat } from './model.js';
import type { ReadContext, ReadResult } from './read-common.js';
import { readCoco } from './read-coco.js';
import { readPlatform } from './read-platform.js';
import { labelKindOf, type TaskType } from './schema.js';

export interface LoadOptions {
  /** The job's TASK_TYPE: what the labels must support. */
  taskType: TaskType;
  /** Read each image's header: the file exists, is an image, and has the declared size. */
  verifyImages?: boolean;
  /** The annotations file; defaults to `<root>/annotations.json` (a SNAPSHOT_ID file goes here). */
  annotationsPath?: string;
  /** The annotations file's text, already read (its name for messages still comes from annotationsPath). */
  annotationsText?: string;
  /** Image headers read at once. */
  concurrency?: number;
}

const FIX_HINT = 'Fix these entries in the annotations file (or the image files), upload the dataset again and rerun the job.';

export async function loadDataset(root: string, options: LoadOptions): Promise<Dataset> {
  const datasetRoot = resolve(root);
  const annotationsPath = resolve(options.annotationsPath ?? join(datasetRoot, 'annotations.json'));
  const fileName = basename(annotationsPath);
  const taskType = options.taskType;
  const doc = parseAnnotationsText(options.annotationsText ?? (await readAnnotationsFile(annotationsPath)), fileName);

  const format = detectFormat(doc);
  if (format === undefined) {
    throw new DatasetError(
      `${fileName} is neither a Platform Format file (top-level "classes" and "images") nor a COCO file ("images", "annotations", "categories")`,
      [],
      'Export the dataset in the Platform Format or as COCO JSON.',
    );
  }
  const problems = new ProblemList();
  const imagesDir = join(datasetRoot, 'images');
  const ctx: ReadContext = { root: datasetRoot, imagesDir, taskType, kind: labelKindOf(taskType), problems };
  const read = format === 'coco' ? readCoco(doc, ctx) : readPlatform(doc, ctx);
  if (read) checkDatasetAsAWhole(read, ctx);
  // Files are checked even when entries have problems, so that one report lists them all;
  // only a list already full gains nothing from it.
  if (read && options.verifyImages !== false && problems.items.length < MAX_PROBLEMS_KEPT) {
    await verifyImageFiles(read.images, datasetRoot, problems, options.concurrency);
  }
  if (!read || !problems.isEmpty) {
    const kept = problems.items.length < problems.total ? ` (the first ${problems.items.length} are kept)` : '';
    throw new DatasetError(
      `Dataset ${datasetRoot} has ${problems.total} problem${problems.total === 1 ? '' : 's'} in ${fileName} (${format === 'coco' ? 'COCO' : 'Platform Format'}, TASK_TYPE ${taskType})${kept}:`,
      problems.items,
      FIX_HINT,
    );
  }

  const dataset: Dataset = {
    root: datasetRoot,
    imagesDir,
    taskType,
    sourceFormat: format,
    classes: read.classes,
    images: read.images.map((entry) => entry.image),
  };
  if (read.datasetId !== undefined) dataset.datasetId = read.datasetId;
  if (read.name !== undefined) dataset.name = read.name;
  if (read.splitConfig !== undefined) dataset.splitConfig = read.splitConfig;
  if (read.keypointCount !== undefined) dataset.keypointCount = read.keypointCount;
  if (read.keypointNames !== undefined) dataset.keypointNames = read.keypointNames;
  return dataset;
}

/** What must hold for the dataset as a whole, beyond each entry being valid. */
function checkDatasetAsAWhole(read: ReadResult, ctx: ReadContext): void {
  const { problems } = ctx;
  if (!problems.isEmpty) return; // entries were dropped; whole-dataset counts would mislead
  if (read.images.length === 0) {
    problems.add(undefined, 'images', 'the dataset has no images; add images and their entries');
    return;
  }
  if (ctx.kind === 'classification' && !read.images.some(({ image }) => image.label !== undefined)) {
    problems.add(
      undefined,
      'images',
      `none of the ${read.images.length} images has a class (annotation.class_id); a classification dataset needs labelled images`,
    );
  }
  if (ctx.kind === 'pose' && read.keypointCount === undefined) {
    problems.add(undefined, 'images', 'no object has keypoints; a pose dataset needs keypoints ([x, y, visibility] per point) on its objects');
  }
}

export async function readAnnotationsFile(path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new DatasetError(
      code === 'ENOENT' ? `The dataset has no annotations file at ${path}` : `Cannot read the annotations file ${path} (${code ?? (error as Error).message})`,
      [],
      'A dataset is a folder (or zip) holding annotations.json and images/; check DATASET_ID / SNAPSHOT_ID and the uploaded files.',
    );
  }
}

/** JSON.parse with an error that says where the file breaks (line, column and the text there). */
export function parseAnnotationsText(text: string, fileName = 'annotations.json'): unknown {
  // Some Windows exporters write a byte order mark; it is not JSON but means no harm.
  const json = text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
  try {
    return JSON.parse(json);
  } catch (error) {
    const hint = 'Re-export the annotations file; it must be one complete JSON document.';
    if (json.trim() === '') throw new DatasetError(`${fileName} is not valid JSON: the file is empty`, [], hint);
    const offset = jsonSyntaxErrorOffset(json);
    const what =
      offset === undefined
        ? (error as Error).message
        : offset >= json.length
          ? `the file ends early (truncated upload?), ${describePosition(json, json.length)}`
          : `unexpected ${JSON.stringify(json[offset])} ${describePosition(json, offset)}`;
    throw new DatasetError(`${fileName} is not valid JSON: ${what}`, [], hint);
  }
}

function describePosition(text: string, offset: number): string {
  let line = 1;
  let lineStart = 0;
  for (let i = text.indexOf('\n'); i !== -1 && i < offset; i = text.indexOf('\n', i + 1)) {
    line++;
    lineStart = i + 1;
  }
  const near = text.slice(Math.max(lineStart, offset - 30), offset + 30).replace(/\s+/g, ' ');
  return `at line ${line}, column ${offset - lineStart + 1} (offset ${offset}), near ${JSON.stringify(near)}`;
}

/** COCO has `annotations` and `categories` at the top; the Platform Format has `classes`. */
export function detectFormat(doc: unknown): DatasetSourceFormat | undefined {
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) return undefined;
  if ('categories' in doc && 'annotations' in doc) return 'coco';
  if ('classes' in doc || 'format_version' in doc) return 'platform';
  return undefined;
}
