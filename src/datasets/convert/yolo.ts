/**
 * Platform model → ultralytics YOLO layout (detect, segment, pose):
 *
 *   outDir/images/{train,val[,test]}/<flat name>    symlinks to the dataset's images
 *   outDir/labels/{train,val[,test]}/<flat stem>.txt
 *   outDir/{train,val[,test]}.txt                   absolute image paths, one per line
 *   outDir/data.yaml                                absolute `path:`, names as id → name
 *
 * ultralytics finds an image's labels by replacing the last `/images/` of its path with
 * `/labels/` and the extension with `.txt`, so labels must mirror the image links; the
 * design's sketch (labels beside lists of the original image paths) would train on no labels.
 *
 * Label rows are normalised to the image size with 6 decimals: `cls cx cy w h` (detect),
 * `cls x1 y1 x2 y2 ...` (segment; several pieces merged as ultralytics does; an object without
 * a polygon uses its box outline, also as ultralytics does), `cls cx cy w h` + K × `x y v`
 * (pose; an object without keypoints gets K unlabelled ones). Crowd regions are left out.
 * Class ids are remapped to 0..nc-1 in id order when the dataset's ids are not already so.
 */
import { join, resolve, sep } from 'node:path';
import { writeFile } from 'node:fs/promises';
import { stringify } from 'yaml';
import { VisionTrainerError } from '../../errors.js';
import type { Dataset, DatasetImage, DatasetObject } from '../model.js';
import { COCO_KEYPOINT_FLIP_INDEX, COCO_KEYPOINT_NAMES, type SplitName, type TaskType } from '../schema.js';
import type { SplitAssignment } from '../splits.js';
import {
  ImageLinker,
  type IndexedImage,
  prepareOutputDir,
  UniqueNames,
  VAL_IMAGES_FILE,
  writeFilesInSlices,
  writeValImages,
  type FileWork,
  type LinkMode,
} from './files.js';
import { mergeMultiSegment } from './polygons.js';

export type YoloTask = 'detect' | 'segment' | 'pose';

const YOLO_TASKS: Partial<Record<TaskType, YoloTask>> = {
  object_detection: 'detect',
  instance_segmentation: 'segment',
  pose_estimation: 'pose',
};

export interface YoloClass {
  /** The class index in label files and data.yaml. */
  index: number;
  /** The class id in the dataset. */
  datasetId: number;
  name: string;
}

export interface YoloSplitCounts {
  images: number;
  /** Label rows written. */
  objects: number;
  /** Images with an empty label file. */
  background: number;
}

export interface YoloConversion {
  task: YoloTask;
  outDir: string;
  dataYaml: string;
  /** The `{split}.txt` image lists written. */
  listFiles: Partial<Record<SplitName, string>>;
  /** In index order. */
  classes: YoloClass[];
  /** Class names in index order (what the model's `names` will be). */
  classNames: string[];
  /** The dataset's class id of each index. */
  classIds: number[];
  /** val_images.jsonl (files.ts writeValImages). */
  valImagesFile: string;
  /** Images per split written. */
  counts: Partial<Record<SplitName, number>>;
  splits: Partial<Record<SplitName, YoloSplitCounts>>;
  /** Images the split assignment does not mention (left out). */
  unassigned: number;
  /** Crowd regions left out. */
  crowdObjects: number;
  /** Segment task: objects written as their box outline because they have no polygon. */
  objectsWithoutPolygon: number;
  /** How images were placed; `none` when `linkImages` was false. */
  linkMode: LinkMode | 'none';
}

export interface YoloOptions {
  /** Override the task (default: from the dataset's task type). */
  task?: YoloTask;
  /**
   * Place images under `images/` (default). False writes labels, lists and data.yaml only,
   * which measures the label conversion alone (bench/convert.ts); the result is not trainable.
   */
  linkImages?: boolean;
}

const OWNED = ['images', 'labels', 'train.txt', 'val.txt', 'test.txt', 'data.yaml', VAL_IMAGES_FILE];

export async function convertToYolo(dataset: Dataset, splits: SplitAssignment, outDir: string, options: YoloOptions = {}): Promise<YoloConversion> {
  const task = options.task ?? YOLO_TASKS[dataset.taskType];
  if (task === undefined) {
    throw new VisionTrainerError(
      `convertToYolo cannot write a ${dataset.taskType} dataset; YOLO labels hold boxes, polygons or keypoints (use convertToImageFolder for classification)`,
    );
  }
  const root = resolve(outDir);
  const classes = yoloClasses(dataset);
  const indexOf = new Map(classes.map((c) => [c.datasetId, c.index]));
  const keypointCount = dataset.keypointCount ?? 0;
  if (task === 'pose' && keypointCount === 0) {
    throw new VisionTrainerError('convertToYolo (pose) needs a dataset with keypoints (Dataset.keypointCount)');
  }

  const bySplit = groupBySplit(dataset.images, splits);
  const used = (['train', 'val', 'test'] as const).filter((s) => s === 'train' || s === 'val' || bySplit.test.length > 0);
  await prepareOutputDir(
    root,
    OWNED,
    used.flatMap((s) => [join('images', s), join('labels', s)]),
  );

  const result: YoloConversion = {
    task,
    outDir: root,
    dataYaml: join(root, 'data.yaml'),
    listFiles: {},
    classes,
    classNames: classes.map((c) => c.name),
    classIds: classes.map((c) => c.datasetId),
    valImagesFile: join(root, VAL_IMAGES_FILE),
    counts: {},
    splits: {},
    unassigned: bySplit.unassigned,
    crowdObjects: 0,
    objectsWithoutPolygon: 0,
    linkMode: 'none',
  };
  const rows = new RowWriter(task, indexOf, keypointCount, result);
  const linker = options.linkImages === false ? undefined : new ImageLinker();
  const valImages: IndexedImage[] = [];

  for (const split of used) {
    const names = new UniqueNames();
    const imagesDir = join(root, 'images', split);
    const labelsDir = join(root, 'labels', split);
    const work: FileWork[] = [];
    const list: string[] = [];
    const counts: YoloSplitCounts = { images: 0, objects: 0, background: 0 };
    for (const image of bySplit[split]) {
      const name = names.take(image);
      // Flat names hold no separator: plain concatenation is safe and much cheaper than join().
      const linkPath = `${imagesDir}${sep}${name}`;
      const label = rows.labelFor(image);
      counts.images++;
      counts.objects += label.rows;
      if (label.rows === 0) counts.background++;
      const item: FileWork = { write: { path: `${labelsDir}${sep}${stemOf(name)}.txt`, content: label.text } };
      if (linker) item.link = { target: image.path, path: linkPath };
      work.push(item);
      list.push(linkPath);
      if (split === 'val') valImages.push({ path: linkPath, image });
    }
    await writeFilesInSlices(work, linker);
    const listFile = join(root, `${split}.txt`);
    await writeFile(listFile, list.length ? `${list.join('\n')}\n` : '');
    result.listFiles[split] = listFile;
    result.counts[split] = counts.images;
    result.splits[split] = counts;
  }
  if (linker) result.linkMode = linker.mode;
  await writeValImages(root, valImages);

  await writeFile(result.dataYaml, dataYamlText(root, used, classes, task, dataset));
  return result;
}

/** Dataset classes in id order, indexed 0..nc-1 (the identity when ids already are 0..nc-1). */
export function yoloClasses(dataset: Pick<Dataset, 'classes'>): YoloClass[] {
  return [...dataset.classes].sort((a, b) => a.id - b.id).map((c, index) => ({ index, datasetId: c.id, name: c.name }));
}

function groupBySplit(images: readonly DatasetImage[], splits: SplitAssignment): Record<SplitName, DatasetImage[]> & { unassigned: number } {
  const groups = { train: [] as DatasetImage[], val: [] as DatasetImage[], test: [] as DatasetImage[], unassigned: 0 };
  for (const image of images) {
    const split = splits.get(image.id);
    if (split === undefined) groups.unassigned++;
    else groups[split].push(image);
  }
  return groups;
}

/** ultralytics takes everything before the last dot as the stem (`str.rsplit(".", 1)[0]`). */
function stemOf(name: string): string {
  const dot = name.lastIndexOf('.');
  return dot > 0 ? name.slice(0, dot) : name;
}

const f6 = (v: number) => v.toFixed(6);

/** Turns one image's objects into label rows for the task. */
class RowWriter {
  constructor(
    private readonly task: YoloTask,
    private readonly indexOf: ReadonlyMap<number, number>,
    private readonly keypointCount: number,
    private readonly tally: Pick<YoloConversion, 'crowdObjects' | 'objectsWithoutPolygon'>,
  ) {}

  /** The label file's text (one row per object, each ending in a newline) and its row count. */
  labelFor(image: DatasetImage): { text: string; rows: number } {
    let text = '';
    let rows = 0;
    for (const object of image.objects) {
      if (object.iscrowd) {
        this.tally.crowdObjects++;
        continue;
      }
      const cls = this.indexOf.get(object.classId);
      // The loader rejects undeclared class ids; a hand-built model could still carry one.
      if (cls === undefined) throw new VisionTrainerError(`image ${image.id}: class id ${object.classId} is not among the dataset's classes`);
      text += `${this.row(cls, object, image.width, image.height)}\n`;
      rows++;
    }
    return { text, rows };
  }

  private row(cls: number, object: DatasetObject, width: number, height: number): string {
    const [x, y, w, h] = object.bbox;
    if (this.task === 'segment') {
      let flat: number[];
      if (object.segmentation && object.segmentation.length > 0) flat = mergeMultiSegment(object.segmentation);
      else {
        this.tally.objectsWithoutPolygon++;
        flat = [x, y, x + w, y, x + w, y + h, x, y + h];
      }
      let out = String(cls);
      for (let i = 0; i < flat.length; i += 2) out += ` ${f6((flat[i] as number) / width)} ${f6((flat[i + 1] as number) / height)}`;
      return out;
    }
    let out = `${cls} ${f6((x + w / 2) / width)} ${f6((y + h / 2) / height)} ${f6(w / width)} ${f6(h / height)}`;
    if (this.task === 'pose') {
      const keypoints = object.keypoints;
      for (let k = 0; k < this.keypointCount; k++) {
        const point = keypoints?.[k];
        out += point && point[2] !== 0 ? ` ${f6(point[0] / width)} ${f6(point[1] / height)} ${point[2]}` : ' 0.000000 0.000000 0';
      }
    }
    return out;
  }
}

function dataYamlText(root: string, splits: readonly SplitName[], classes: readonly YoloClass[], task: YoloTask, dataset: Dataset): string {
  // No `download:` key: ultralytics would try to fetch a dataset it cannot find.
  const doc: Record<string, unknown> = { path: root };
  for (const split of splits) doc[split] = `${split}.txt`;
  doc.nc = classes.length;
  // A Map keeps integer keys (`0: cat`), which is how ultralytics writes names itself.
  doc.names = new Map(classes.map((c) => [c.index, c.name]));
  if (task === 'pose') {
    const k = dataset.keypointCount ?? 0;
    doc.kpt_shape = [k, 3];
    const coco17 =
      k === COCO_KEYPOINT_NAMES.length && (dataset.keypointNames === undefined || dataset.keypointNames.every((n, i) => n === COCO_KEYPOINT_NAMES[i]));
    // Without flip_idx ultralytics turns horizontal flips off, which is right for unknown layouts.
    if (coco17) doc.flip_idx = [...COCO_KEYPOINT_FLIP_INDEX];
  }
  return stringify(doc);
}
