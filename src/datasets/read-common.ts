/**
 * What reading a Platform Format file and reading a COCO file have in common: the context
 * they run in, what they hand back, and the class and image-entry rules both apply.
 */
import { resolve, sep } from 'node:path';
import type { z } from 'zod';
import type { DatasetClass, DatasetImage } from './model.js';
import { addZodProblems, imageLabel, pathEscapeReason, preview, type ProblemList } from './checks.js';
import type { DatasetSplitConfig, LabelKind, TaskType } from './schema.js';

export interface ReadContext {
  root: string;
  imagesDir: string;
  taskType: TaskType;
  kind: LabelKind;
  problems: ProblemList;
}

/** An image as read, with how problems name it and where it sits in the file. */
export interface ReadImage {
  image: DatasetImage;
  /** Id and file name, e.g. `7 (cats/cat001.jpg)`. */
  label: string;
  /** e.g. `images[3]` */
  field: string;
  /** Semantic segmentation: how problems name the mask (default `<field>.annotation.mask_file`). */
  maskField?: string;
}

/** The model's fields a reader fills; `load.ts` adds the rest. */
export interface ReadResult {
  classes: DatasetClass[];
  images: ReadImage[];
  datasetId?: string;
  name?: string;
  splitConfig?: DatasetSplitConfig;
  keypointCount?: number;
  keypointNames?: string[];
}

type ClassEntrySchema = z.ZodType<{ id: number; name: string; color?: string | undefined; supercategory?: string | undefined }>;

/** Parses `classes` / `categories`, reporting bad entries and duplicate ids. */
export function readClasses(raw: readonly unknown[], schema: ClassEntrySchema, field: string, problems: ProblemList): DatasetClass[] {
  const classes: DatasetClass[] = [];
  const seen = new Map<number, number>();
  raw.forEach((entry, index) => {
    const parsed = schema.safeParse(entry);
    if (!parsed.success) {
      addZodProblems(problems, parsed.error, undefined, [field, index]);
      return;
    }
    const { id, name, color, supercategory } = parsed.data;
    const first = seen.get(id);
    if (first !== undefined) {
      problems.add(undefined, `${field}[${index}].id`, `class id ${id} is declared twice (also ${field}[${first}]); give every class its own id`);
      return;
    }
    seen.set(id, index);
    classes.push({ id, name, ...(color === undefined ? {} : { color }), ...(supercategory === undefined ? {} : { supercategory }) });
  });
  return classes;
}

/** Remembers image ids (as strings) to report duplicates, naming the first entry. */
export class ImageIdRegistry {
  private readonly firstIndex = new Map<string, number>();

  constructor(private readonly field: string) {}

  /** True when the id is new. */
  register(id: string, index: number, problems: ProblemList, label: string): boolean {
    const first = this.firstIndex.get(id);
    if (first !== undefined) {
      problems.add(
        label,
        `${this.field}[${index}].id`,
        `image id ${preview(id)} is used twice (also ${this.field}[${first}]); ids are compared as strings, so 7 and "7" are the same id`,
      );
      return false;
    }
    this.firstIndex.set(id, index);
    return true;
  }
}

/** A `.` or empty path segment, or a backslash: names that need path normalisation. */
const NEEDS_NORMALISING = /(?:^|\/)\.?(?:\/|$)|\\/;

/**
 * The absolute path of a file named in the annotations, or undefined after reporting a name
 * that would reach outside `base` (`..`, absolute paths). `base` must be absolute and
 * normalised. Plain names (the usual case, 100,000 times per dataset) are joined without
 * path.resolve, which dominated loading time.
 */
export function resolveInside(base: string, relativePath: string, place: { image: string; field: string }, problems: ProblemList): string | undefined {
  const reason = pathEscapeReason(relativePath);
  if (reason === undefined && !NEEDS_NORMALISING.test(relativePath)) return `${base}${sep}${relativePath}`;
  const path = reason === undefined ? resolve(base, relativePath) : undefined;
  // The textual check covers every case; this guards against a rule it missed.
  if (path === undefined || !(path + sep).startsWith(base + sep)) {
    problems.add(place.image, place.field, reason ?? `${preview(relativePath)} resolves outside the dataset folder`);
    return undefined;
  }
  return path;
}

/** The fields every image entry has, in both formats. */
interface ImageEntry {
  id: string | number;
  file_name: string;
  width: number;
  height: number;
  split?: DatasetImage['split'] | undefined;
}

/**
 * Each entry of an `images` array parsed with `schema`, its id unique and its file inside
 * `imagesDir`; `use` receives the entry and the image it describes. An entry with a problem is
 * reported and skipped.
 */
export function forEachImage<S extends z.ZodType<ImageEntry>>(
  entries: readonly unknown[],
  schema: S,
  imagesDir: string,
  problems: ProblemList,
  use: (entry: z.output<S>, image: ReadImage) => void,
): void {
  const ids = new ImageIdRegistry('images');
  entries.forEach((raw, index) => {
    const label = imageLabel(raw, index);
    const parsed = schema.safeParse(raw);
    if (!parsed.success) {
      addZodProblems(problems, parsed.error, label, ['images', index]);
      return;
    }
    const entry = parsed.data;
    const id = String(entry.id);
    const fresh = ids.register(id, index, problems, label);
    const path = resolveInside(imagesDir, entry.file_name, { image: label, field: `images[${index}].file_name` }, problems);
    if (!fresh || path === undefined) return;
    const image: DatasetImage = { id, fileName: entry.file_name, path, width: entry.width, height: entry.height, objects: [] };
    if (entry.split !== undefined) image.split = entry.split;
    use(entry, { image, label, field: `images[${index}]` });
  });
}
