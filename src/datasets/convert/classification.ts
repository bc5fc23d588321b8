/**
 * Classification layouts: an ImageFolder tree (ultralytics-cls, torchvision, timm) and a
 * JSON-lines manifest for HuggingFace `datasets` (which also carries semantic segmentation).
 *
 *   ImageFolder:  outDir/{train,val[,test]}/<class folder>/<flat name>   (symlinks)
 *                 outDir/classes.txt   class folders in index order, one per line
 *   HuggingFace:  outDir/{train,val[,test]}.jsonl   {"image": abs path, "label": i, "label_name": name}
 *                 (semantic segmentation: {"image": abs path, "mask": abs path of the indexed PNG},
 *                 the mask's values are dataset class ids, translated by the trainer)
 *                 outDir/labels.json   id2label ({"0": "cat", ...})
 *
 * ImageFolder readers number classes by their folders: torchvision (and ultralytics) by
 * sorted name, timm by "natural" order of the non-empty ones unless given a class map. Every
 * split gets every class folder, so the numbering is the same in train and val, and
 * classes.txt (timm's `class_map=` format) pins timm to the same numbering. The manifest
 * numbers classes by dataset id order instead, as there is no folder order to follow.
 * Unlabelled images are left out of both.
 */
import { writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { DatasetError, VisionTrainerError } from '../../errors.js';
import type { Dataset, DatasetImage } from '../model.js';
import { labelKindOf, type SplitName } from '../schema.js';
import type { SplitAssignment } from '../splits.js';
import {
  classFolderNames,
  compareCodePoints,
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

export interface ImageFolderClass {
  /** The index the framework gives the class (its folder's position in sorted order). */
  index: number;
  folder: string;
  datasetId: number;
  name: string;
}

export interface ClassificationCounts {
  /** Labelled images written per split. */
  counts: Partial<Record<SplitName, number>>;
  /** Images per split and class name. */
  perClass: Partial<Record<SplitName, Record<string, number>>>;
  /** Images left out for having no class. */
  unlabelled: number;
  /** Images the split assignment does not mention (left out). */
  unassigned: number;
}

export interface ImageFolderConversion extends ClassificationCounts {
  root: string;
  splitDirs: Partial<Record<SplitName, string>>;
  /** classes.txt: folder names in index order (timm `class_map=`). */
  classMapFile: string;
  /** In index order. */
  classes: ImageFolderClass[];
  /** Class names (as the dataset spells them) in index order. */
  classNames: string[];
  /** The dataset's class id of each index (folder order is name order, not id order). */
  classIds: number[];
  /** val_images.jsonl (files.ts writeValImages). */
  valImagesFile: string;
  linkMode: LinkMode;
}

export interface HuggingFaceClass {
  /** The `label` written in the manifest. */
  index: number;
  datasetId: number;
  name: string;
}

export interface HuggingFaceManifest extends ClassificationCounts {
  root: string;
  files: Partial<Record<SplitName, string>>;
  labelsFile: string;
  id2label: Record<string, string>;
  /** In index order. */
  classes: HuggingFaceClass[];
  classNames: string[];
  classIds: number[];
  /** val_images.jsonl (files.ts writeValImages). */
  valImagesFile: string;
}

export async function convertToImageFolder(dataset: Dataset, splits: SplitAssignment, outDir: string): Promise<ImageFolderConversion> {
  assertClassification(dataset, 'convertToImageFolder');
  const root = resolve(outDir);
  const folders = classFolderNames(dataset.classes);
  const classes: ImageFolderClass[] = dataset.classes
    .map((c) => ({ index: 0, folder: folders.get(c.id) as string, datasetId: c.id, name: c.name }))
    .sort((a, b) => compareCodePoints(a.folder, b.folder))
    .map((c, index) => ({ ...c, index }));
  const byId = new Map(classes.map((c) => [c.datasetId, c]));

  const { images, ...counts } = groupLabelled(dataset, splits, (id) => (byId.get(id) as ImageFolderClass).name);
  const used = usedSplits(images);
  await prepareOutputDir(
    root,
    ['train', 'val', 'test', 'classes.txt', VAL_IMAGES_FILE],
    used.flatMap((split) => classes.map((c) => join(split, c.folder))),
  );

  const linker = new ImageLinker();
  const splitDirs: Partial<Record<SplitName, string>> = {};
  const valImages: IndexedImage[] = [];
  for (const split of used) {
    const names = new UniqueNames();
    splitDirs[split] = join(root, split);
    const links: FileWork[] = images[split].map((image) => {
      const path = join(root, split, (byId.get(image.label as number) as ImageFolderClass).folder, names.take(image));
      if (split === 'val') valImages.push({ path, image });
      return { link: { target: image.path, path } };
    });
    await writeFilesInSlices(links, linker);
  }
  const valImagesFile = await writeValImages(root, valImages);
  const classMapFile = join(root, 'classes.txt');
  await writeFile(classMapFile, `${classes.map((c) => c.folder).join('\n')}\n`);
  return {
    root,
    splitDirs,
    classMapFile,
    classes,
    classNames: classes.map((c) => c.name),
    classIds: classes.map((c) => c.datasetId),
    valImagesFile,
    ...counts,
    linkMode: linker.mode,
  };
}

export async function writeHuggingFaceManifest(dataset: Dataset, splits: SplitAssignment, outDir: string): Promise<HuggingFaceManifest> {
  const semantic = labelKindOf(dataset.taskType) === 'semantic';
  if (!semantic) assertClassification(dataset, 'writeHuggingFaceManifest');
  const root = resolve(outDir);
  const classes: HuggingFaceClass[] = [...dataset.classes].sort((a, b) => a.id - b.id).map((c, index) => ({ index, datasetId: c.id, name: c.name }));
  const byId = new Map(classes.map((c) => [c.datasetId, c]));
  const { images, ...counts } = groupLabelled(dataset, splits, semantic ? null : (id) => (byId.get(id) as HuggingFaceClass).name);
  const used = usedSplits(images);
  await prepareOutputDir(root, ['train.jsonl', 'val.jsonl', 'test.jsonl', 'labels.json', VAL_IMAGES_FILE], ['.']);

  const files: Partial<Record<SplitName, string>> = {};
  for (const split of used) {
    const lines = images[split].map((image) => {
      if (semantic) return JSON.stringify({ image: image.path, mask: image.maskPath });
      const cls = byId.get(image.label as number) as HuggingFaceClass;
      return JSON.stringify({ image: image.path, label: cls.index, label_name: cls.name });
    });
    const file = join(root, `${split}.jsonl`);
    await writeFile(file, lines.length ? `${lines.join('\n')}\n` : '');
    files[split] = file;
  }
  const id2label = Object.fromEntries(classes.map((c) => [String(c.index), c.name]));
  const labelsFile = join(root, 'labels.json');
  await writeFile(labelsFile, `${JSON.stringify(id2label, null, 2)}\n`);
  const valImagesFile = await writeValImages(
    root,
    images.val.map((image) => ({ path: image.path, image })),
  );
  return {
    root,
    files,
    labelsFile,
    id2label,
    classes,
    classNames: classes.map((c) => c.name),
    classIds: classes.map((c) => c.datasetId),
    valImagesFile,
    ...counts,
  };
}

function assertClassification(dataset: Dataset, what: string): void {
  if (labelKindOf(dataset.taskType) !== 'classification') {
    throw new VisionTrainerError(
      `${what} writes classification datasets; this one is ${dataset.taskType} (use convertToYolo for boxes, polygons and keypoints)`,
    );
  }
}

function usedSplits(images: Record<SplitName, DatasetImage[]>): SplitName[] {
  return images.test.length > 0 ? ['train', 'val', 'test'] : ['train', 'val'];
}

/**
 * Labelled images per split. Splits are made over all images, so unlabelled ones can leave
 * train or val without a single usable image: that is reported here, before a framework
 * fails on an empty folder. `nameOf` null: semantic segmentation, where an image is labelled by
 * its mask (no per-class tally: a mask holds several classes).
 */
function groupLabelled(
  dataset: Dataset,
  splits: SplitAssignment,
  nameOf: ((classId: number) => string) | null,
): ClassificationCounts & { images: Record<SplitName, DatasetImage[]> } {
  const images: Record<SplitName, DatasetImage[]> = { train: [], val: [], test: [] };
  const perClass: Partial<Record<SplitName, Record<string, number>>> = {};
  let unlabelled = 0;
  let unassigned = 0;
  for (const image of dataset.images) {
    const split = splits.get(image.id);
    if (split === undefined) unassigned++;
    else if (nameOf === null ? image.maskPath === undefined : image.label === undefined) unlabelled++;
    else {
      images[split].push(image);
      if (nameOf === null) continue;
      const tally = perClass[split] ?? {};
      perClass[split] = tally;
      const name = nameOf(image.label as number);
      tally[name] = (tally[name] ?? 0) + 1;
    }
  }
  const counts: Partial<Record<SplitName, number>> = { train: images.train.length, val: images.val.length };
  if (images.test.length) counts.test = images.test.length;
  for (const split of ['train', 'val'] as const) {
    if (images[split].length === 0) {
      throw new DatasetError(
        `The ${split} split has no labelled images (${unlabelled} of the dataset's ${dataset.images.length} images have no ${nameOf === null ? 'mask' : 'class'}); a ${nameOf === null ? 'segmentation model' : 'classifier'} cannot ${split === 'train' ? 'train' : 'be validated'} without them`,
        [],
        nameOf === null
          ? 'Give more images a mask (annotation.mask_file), or change SPLIT_STRATEGY so that labelled images reach both train and val.'
          : 'Label more images (annotation.class_id), or change SPLIT_STRATEGY so that labelled images reach both train and val.',
      );
    }
  }
  return { images, counts, perClass, unlabelled, unassigned };
}
