/**
 * The converters' output, read by the frameworks themselves: ultralytics' YOLODataset must
 * find every label we wrote (detect, segment, pose), torchvision's and timm's ImageFolder
 * readers must number classes as our result says, the HuggingFace manifest must point at
 * readable images, and our port of merge_multi_segment must match ultralytics' own.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  convertToImageFolder,
  convertToYolo,
  mergeMultiSegment,
  writeHuggingFaceManifest,
  type ImageFolderConversion,
  type HuggingFaceManifest,
  type YoloConversion,
} from '../../src/datasets/convert/index.js';
import { loadDataset } from '../../src/datasets/load.js';
import type { Dataset } from '../../src/datasets/model.js';
import { resolveSplits, type SplitResult } from '../../src/datasets/splits.js';
import { mulberry32 } from '../helpers/random.js';
import { defaultPythonBin } from '../../src/paths.js';
import { writeSyntheticDataset, type SyntheticOptions } from '../helpers/synthetic.js';

const python = defaultPythonBin();
const scratch = mkdtempSync(join(tmpdir(), 'vt-datasets-frameworks-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

interface Converted {
  dataset: Dataset;
  splits: SplitResult;
  result: YoloConversion;
}

interface YoloSeen {
  names: Record<string, string>;
  nc: number;
  kpt_shape: number[] | null;
  flip_idx: number[] | null;
  splits: Record<string, Array<{ im_file: string; cls: number[]; bboxes: number[][]; segments: number[]; keypoints: number[] | null }>>;
}

interface Seen {
  yolo: YoloSeen[];
  merge: number[][];
  imagefolder: Record<
    'train' | 'val',
    { torchvision_classes: string[]; torchvision_samples: [string, number][]; timm_class_to_idx: Record<string, number>; timm_samples: [string, number][] }
  >;
  huggingface: { id2label: Record<string, string> } & Record<
    'train' | 'val',
    Array<{ image: string; label: number; label_name: string; size: [number, number] }>
  >;
}

const converted: Converted[] = [];
let folder: { dataset: Dataset; splits: SplitResult; result: ImageFolderConversion };
let manifest: { dataset: Dataset; result: HuggingFaceManifest };
let mergeCases: number[][][];
let seen: Seen;

async function convertYolo(name: string, options: SyntheticOptions, strategy?: Parameters<typeof resolveSplits>[1]): Promise<Converted> {
  const ds = writeSyntheticDataset(join(scratch, name), options);
  const dataset = await loadDataset(ds.root, { taskType: options.taskType as 'object_detection' });
  const splits = resolveSplits(dataset, strategy);
  const result = await convertToYolo(dataset, splits, join(scratch, `${name}-yolo`));
  return { dataset, splits, result };
}

function randomPolygon(random: () => number, cx: number, cy: number): number[] {
  const n = 3 + Math.floor(random() * 6);
  const r = 2 + random() * 8;
  return Array.from({ length: n }, (_, i) => {
    const a = (2 * Math.PI * i) / n;
    return [Math.round((cx + r * Math.cos(a)) * 100) / 100, Math.round((cy + r * Math.sin(a)) * 100) / 100];
  }).flat();
}

beforeAll(async () => {
  expect(existsSync(python), `the Python venv (${python}); run npm run setup`).toBe(true);
  converted.push(
    await convertYolo(
      'detect',
      { taskType: 'object_detection', count: 30, subfolders: true, backgroundEvery: 6, classIds: { first: 1, step: 2 } },
      { method: 'auto', ratio: [0.6, 0.2, 0.2], seed: 3 },
    ),
    await convertYolo('segment', { taskType: 'instance_segmentation', count: 20, multiPartEvery: 3 }),
    await convertYolo('pose', { taskType: 'pose_estimation', format: 'coco', count: 20, objectsPerImage: [1, 2] }),
  );

  const cls = writeSyntheticDataset(join(scratch, 'classes'), {
    taskType: 'image_classification',
    count: 30,
    classes: ['zebra', 'a/b', 'Ant', 'élan'],
    backgroundEvery: 7,
  });
  const clsDataset = await loadDataset(cls.root, { taskType: 'image_classification' });
  const clsSplits = resolveSplits(clsDataset);
  folder = { dataset: clsDataset, splits: clsSplits, result: await convertToImageFolder(clsDataset, clsSplits, join(scratch, 'classes-folder')) };
  manifest = { dataset: clsDataset, result: await writeHuggingFaceManifest(clsDataset, clsSplits, join(scratch, 'classes-hf')) };

  const random = mulberry32(11);
  mergeCases = Array.from({ length: 40 }, () =>
    Array.from({ length: 2 + Math.floor(random() * 3) }, () => randomPolygon(random, random() * 100, random() * 100)),
  );

  const requestPath = join(scratch, 'request.json');
  writeFileSync(
    requestPath,
    JSON.stringify({
      yolo: converted.map((c) => ({ task: c.result.task, data: c.result.dataYaml })),
      imagefolder: { root: folder.result.root, class_map: folder.result.classMapFile },
      huggingface: { root: manifest.result.root },
      merge: mergeCases,
    }),
  );
  const run = spawnSync(python, [join(dirname(fileURLToPath(import.meta.url)), 'datasets-frameworks.py'), requestPath], {
    encoding: 'utf8',
    timeout: 240_000,
    maxBuffer: 64 << 20,
    env: { ...process.env, YOLO_OFFLINE: 'true', YOLO_AUTOINSTALL: 'false', YOLO_CONFIG_DIR: join(scratch, 'ultralytics-config'), HF_HUB_OFFLINE: '1' },
  });
  expect(run.status, `python failed:\n${run.stderr.slice(-4000)}`).toBe(0);
  seen = JSON.parse(run.stdout.trim().split('\n').pop() as string) as Seen;
}, 300_000);

function checkYolo(index: number): void {
  const { dataset, splits, result } = converted[index]!;
  const yolo = seen.yolo[index]!;
  expect(yolo.names).toEqual(Object.fromEntries(result.classNames.map((n, i) => [String(i), n])));
  expect(yolo.nc).toBe(result.classNames.length);
  const byPath = new Map(dataset.images.map((image) => [image.path, image]));
  const indexOf = new Map(result.classes.map((c) => [c.datasetId, c.index]));
  for (const [split, count] of Object.entries(result.counts)) {
    const labels = yolo.splits[split]!;
    expect(labels, `${result.task} ${split}`).toHaveLength(count!);
    for (const label of labels) {
      const image = byPath.get(realpathSync(label.im_file))!;
      expect(image, label.im_file).toBeDefined();
      expect(splits.get(image.id)).toBe(split);
      // Every object reached ultralytics: a label file it could not find would read as empty.
      expect(label.cls).toEqual(image.objects.map((o) => indexOf.get(o.classId)));
      if (result.task === 'detect') {
        label.bboxes.forEach((box, i) => {
          const [x, y, w, h] = image.objects[i]!.bbox;
          const expected = [(x + w / 2) / image.width, (y + h / 2) / image.height, w / image.width, h / image.height];
          box.forEach((v, k) => expect(v).toBeCloseTo(expected[k]!, 5));
        });
      }
      if (result.task === 'segment') {
        expect(label.segments).toHaveLength(image.objects.length);
        expect(label.segments.every((points) => points >= 3)).toBe(true);
      }
      if (result.task === 'pose') expect(label.keypoints).toEqual([image.objects.length, 17, 3]);
    }
  }
}

describe('ultralytics reads our YOLO layout', () => {
  it('detection: every box, remapped class ids, a test split and background images', () => {
    checkYolo(0);
    expect(Object.keys(seen.yolo[0]!.splits).sort()).toEqual(['test', 'train', 'val']);
    expect(converted[0]!.result.classes.map((c) => c.datasetId)).toEqual([1, 3, 5]);
  });

  it('segmentation: one polygon per object, multi-part objects merged', () => {
    checkYolo(1);
    expect(converted[1]!.dataset.images.some((i) => i.objects.some((o) => (o.segmentation?.length ?? 0) > 1))).toBe(true);
  });

  it('pose (from COCO): 17 keypoints per object, kpt_shape and flip_idx', () => {
    checkYolo(2);
    expect(seen.yolo[2]!.kpt_shape).toEqual([17, 3]);
    expect(seen.yolo[2]!.flip_idx).toEqual([0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15]);
  });

  it("merge_multi_segment: our port gives ultralytics' outline for random multi-part polygons", () => {
    expect(seen.merge).toHaveLength(mergeCases.length);
    mergeCases.forEach((pieces, i) => {
      const ours = mergeMultiSegment(pieces);
      expect(ours).toHaveLength(seen.merge[i]!.length);
      ours.forEach((v, k) => expect(v).toBeCloseTo(seen.merge[i]![k]!, 9));
    });
  });
});

describe('ImageFolder readers number classes as the result says', () => {
  it('torchvision and timm (with classes.txt) agree with result.classes', () => {
    const { dataset, splits, result } = folder;
    const folders = result.classes.map((c) => c.folder);
    const byPath = new Map(dataset.images.map((image) => [image.path, image]));
    for (const split of ['train', 'val'] as const) {
      const view = seen.imagefolder[split];
      expect(view.torchvision_classes).toEqual(folders);
      expect(view.timm_class_to_idx).toEqual(Object.fromEntries(folders.map((f, i) => [f, i])));
      expect(view.torchvision_samples).toHaveLength(result.counts[split]!);
      expect(view.timm_samples).toHaveLength(result.counts[split]!);
      for (const [path, target] of [...view.torchvision_samples, ...view.timm_samples]) {
        const image = byPath.get(realpathSync(path))!;
        expect(splits.get(image.id)).toBe(split);
        expect(target).toBe(result.classes.find((c) => c.datasetId === image.label)!.index);
      }
    }
  });

  it('the HuggingFace manifest points at readable images with the right labels', () => {
    const { dataset, result } = manifest;
    expect(seen.huggingface.id2label).toEqual(result.id2label);
    for (const split of ['train', 'val'] as const) {
      const rows = seen.huggingface[split];
      expect(rows).toHaveLength(result.counts[split]!);
      for (const row of rows) {
        const image = dataset.images.find((i) => i.path === row.image)!;
        expect(row.size).toEqual([image.width, image.height]);
        expect(result.classes[row.label]!.datasetId).toBe(image.label);
        expect(row.label_name).toBe(result.classNames[row.label]);
      }
    }
  });
});
