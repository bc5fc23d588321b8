import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, realpathSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { afterAll, describe, expect, it } from 'vitest';
import { DatasetError } from '../../src/errors.js';
import { convertToImageFolder, convertToYolo, mergeMultiSegment, writeHuggingFaceManifest } from '../../src/datasets/convert/index.js';
import { classFolderNames, compareCodePoints, UniqueNames } from '../../src/datasets/convert/files.js';
import { loadDataset } from '../../src/datasets/load.js';
import type { Dataset } from '../../src/datasets/model.js';
import { COCO_KEYPOINT_FLIP_INDEX } from '../../src/datasets/schema.js';
import { resolveSplits } from '../../src/datasets/splits.js';
import { rewriteAnnotations, writeSyntheticDataset, type SyntheticOptions } from '../helpers/synthetic.js';

const scratch = mkdtempSync(join(tmpdir(), 'vt-datasets-convert-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));
let counter = 0;
const next = (name: string) => join(scratch, `${name}-${counter++}`);

async function prepared(options: SyntheticOptions, edit?: (annotations: any) => void) {
  const ds = writeSyntheticDataset(next('data'), options);
  if (edit) {
    edit(ds.annotations);
    rewriteAnnotations(ds);
  }
  const dataset = await loadDataset(ds.root, { taskType: options.taskType === 'semantic_segmentation' ? 'semantic_segmentation' : options.taskType });
  return { dataset, splits: resolveSplits(dataset) };
}

/** ultralytics' img2label_paths: last /images/ → /labels/, extension → .txt */
const labelPathOf = (imagePath: string) => {
  const i = imagePath.lastIndexOf('/images/');
  const swapped = `${imagePath.slice(0, i)}/labels/${imagePath.slice(i + '/images/'.length)}`;
  return `${swapped.slice(0, swapped.lastIndexOf('.'))}.txt`;
};
const lines = (path: string) => readFileSync(path, 'utf8').split('\n').filter(Boolean);
const f6 = (v: number) => v.toFixed(6);

describe('convertToYolo: detection', () => {
  it('writes links, labels ultralytics can find, lists and data.yaml, remapping class ids', async () => {
    const { dataset, splits } = await prepared({
      taskType: 'object_detection',
      count: 20,
      subfolders: true,
      backgroundEvery: 4,
      classIds: { first: 1, step: 2 },
    });
    const out = next('yolo');
    const result = await convertToYolo(dataset, splits, out);

    expect(result.task).toBe('detect');
    expect(result.classes).toEqual([
      { index: 0, datasetId: 1, name: 'circle' },
      { index: 1, datasetId: 3, name: 'square' },
      { index: 2, datasetId: 5, name: 'triangle' },
    ]);
    expect(result.classNames).toEqual(['circle', 'square', 'triangle']);
    expect(result.counts).toEqual({ train: 16, val: 4 });
    expect(result.linkMode).toBe('symlink');

    const yaml = parseYaml(readFileSync(result.dataYaml, 'utf8'));
    expect(yaml).toEqual({ path: out, train: 'train.txt', val: 'val.txt', nc: 3, names: { 0: 'circle', 1: 'square', 2: 'triangle' } });
    expect(readFileSync(result.dataYaml, 'utf8')).toMatch(/^names:\n {2}0: circle\n/m);
    expect(readFileSync(result.dataYaml, 'utf8')).not.toMatch(/download/);

    const byPath = new Map(dataset.images.map((i) => [i.path, i]));
    let background = 0;
    for (const split of ['train', 'val'] as const) {
      const listed = lines(join(out, `${split}.txt`));
      expect(listed).toHaveLength(result.counts[split]!);
      for (const linkPath of listed) {
        expect(linkPath.startsWith(`${join(out, 'images', split)}/`)).toBe(true);
        expect(lstatSync(linkPath).isSymbolicLink()).toBe(true);
        const image = byPath.get(realpathSync(linkPath))!;
        expect(image, `${linkPath} resolves to a dataset image`).toBeDefined();
        expect(splits.get(image.id)).toBe(split);
        const rows = lines(labelPathOf(linkPath));
        if (rows.length === 0) background++;
        expect(rows).toEqual(
          image.objects.map((o) => {
            const [x, y, w, h] = o.bbox;
            return `${(o.classId - 1) / 2} ${f6((x + w / 2) / 64)} ${f6((y + h / 2) / 48)} ${f6(w / 64)} ${f6(h / 48)}`;
          }),
        );
      }
    }
    expect(background).toBe(5);
    expect(result.splits.train!.background + result.splits.val!.background).toBe(5);
    // Flattened names keep the folders: part-1/img-00002.png → part-1__img-00002.png
    expect(readdirSync(join(out, 'images', 'train')).concat(readdirSync(join(out, 'images', 'val')))).toContain('part-1__img-00002.png');
  });

  it('writes a test split when there is one, and cleans its own earlier output', async () => {
    const { dataset } = await prepared({ taskType: 'object_detection', count: 10 });
    const splits = resolveSplits(dataset, { method: 'auto', ratio: [0.6, 0.2, 0.2], seed: 1 });
    const out = next('yolo');
    mkdirSync(join(out, 'labels', 'train'), { recursive: true });
    writeFileSync(join(out, 'labels', 'train', 'stale.txt'), '0 0.5 0.5 1 1\n');
    writeFileSync(join(out, 'keep-me.txt'), 'not ours');
    const result = await convertToYolo(dataset, splits, out);
    expect(result.counts).toEqual({ train: 6, val: 2, test: 2 });
    expect(parseYaml(readFileSync(result.dataYaml, 'utf8')).test).toBe('test.txt');
    expect(lines(join(out, 'test.txt'))).toHaveLength(2);
    expect(existsSync(join(out, 'labels', 'train', 'stale.txt'))).toBe(false);
    expect(existsSync(join(out, 'keep-me.txt'))).toBe(true);
  });

  it('gives clashing names distinct stems and files without an extension one from their header', async () => {
    const ds = writeSyntheticDataset(next('data'), { taskType: 'object_detection', count: 4 });
    const renamed = ['a/x.png', 'a__x.png', 'A/X.png', 'noext'];
    renamed.forEach((to, i) => {
      mkdirSync(join(ds.root, 'images', to, '..'), { recursive: true });
      renameSync(join(ds.root, 'images', `img-0000${i + 1}.png`), join(ds.root, 'images', to));
      (ds.annotations.images as Array<Record<string, unknown>>)[i]!.file_name = to;
    });
    rewriteAnnotations(ds);
    const dataset = await loadDataset(ds.root, { taskType: 'object_detection' });
    const out = next('yolo');
    await convertToYolo(dataset, { get: () => 'train' }, out);
    expect(readdirSync(join(out, 'images', 'train')).sort()).toEqual(['A__X__3.png', 'a__x.png', 'a__x__2.png', 'noext.png']);
    expect(readdirSync(join(out, 'labels', 'train')).sort()).toEqual(['A__X__3.txt', 'a__x.txt', 'a__x__2.txt', 'noext.txt']);
  });

  it('leaves out crowd regions and images the assignment does not mention', async () => {
    const { dataset } = await prepared({ taskType: 'object_detection', count: 3, objectsPerImage: [2, 2] }, (a) => {
      a.images[0].annotations[0].iscrowd = 1;
    });
    const out = next('yolo');
    const result = await convertToYolo(
      dataset,
      new Map([
        ['1', 'train'],
        ['2', 'val'],
      ]),
      out,
    );
    expect(result.crowdObjects).toBe(1);
    expect(result.unassigned).toBe(1);
    expect(result.counts).toEqual({ train: 1, val: 1 });
    expect(lines(join(out, 'labels', 'train', 'img-00001.txt'))).toHaveLength(1);
  });

  it('refuses classification datasets', async () => {
    const { dataset, splits } = await prepared({ taskType: 'image_classification', count: 4 });
    await expect(convertToYolo(dataset, splits, next('yolo'))).rejects.toThrow(/cannot write a image_classification dataset/);
  });
});

describe('convertToYolo: segmentation and pose', () => {
  it('writes one polygon per object, merging pieces and falling back to the box outline', async () => {
    const { dataset, splits } = await prepared({ taskType: 'instance_segmentation', count: 6, multiPartEvery: 2, objectsPerImage: [2, 2] }, (a) => {
      delete a.images[0].annotations[1].segmentation;
    });
    const out = next('yolo-seg');
    const result = await convertToYolo(dataset, splits, out);
    expect(result.task).toBe('segment');
    expect(result.objectsWithoutPolygon).toBe(1);
    const first = dataset.images[0]!;
    const rows = lines(labelPathOf(join(out, 'images', splits.get('1')!, 'img-00001.png')));
    const expected = first.objects.map((o) => {
      const [x, y, w, h] = o.bbox;
      const flat = o.segmentation ? mergeMultiSegment(o.segmentation) : [x, y, x + w, y, x + w, y + h, x, y + h];
      return [String(o.classId), ...flat.map((v, i) => f6(v / (i % 2 === 0 ? 64 : 48)))].join(' ');
    });
    expect(rows).toEqual(expected);
    expect(rows[1]!.split(' ')).toHaveLength(9);
    const multi = dataset.images.flatMap((i) => i.objects).filter((o) => (o.segmentation?.length ?? 0) > 1);
    expect(multi.length).toBeGreaterThan(0);
    for (const row of readdirSync(join(out, 'labels', 'train')).flatMap((f) => lines(join(out, 'labels', 'train', f)))) {
      const values = row.split(' ').slice(1).map(Number);
      expect(values.length % 2).toBe(0);
      expect(values.length).toBeGreaterThanOrEqual(6);
      expect(values.every((v) => v >= 0 && v <= 1)).toBe(true);
    }
  });

  it('writes box + 17 keypoints for COCO pose, with kpt_shape and flip_idx', async () => {
    const { dataset, splits } = await prepared({ taskType: 'pose_estimation', count: 5, objectsPerImage: [1, 1] });
    const out = next('yolo-pose');
    const result = await convertToYolo(dataset, splits, out);
    const yaml = parseYaml(readFileSync(result.dataYaml, 'utf8'));
    expect(yaml.kpt_shape).toEqual([17, 3]);
    expect(yaml.flip_idx).toEqual([...COCO_KEYPOINT_FLIP_INDEX]);
    expect(yaml.names).toEqual({ 0: 'person' });
    const image = dataset.images[0]!;
    const object = image.objects[0]!;
    const [row] = lines(labelPathOf(join(out, 'images', splits.get('1')!, 'img-00001.png')));
    const cells = row!.split(' ');
    expect(cells).toHaveLength(5 + 17 * 3);
    for (let k = 0; k < 17; k++) {
      const [x, y, v] = object.keypoints![k]!;
      expect(cells.slice(5 + 3 * k, 8 + 3 * k)).toEqual(v === 0 ? ['0.000000', '0.000000', '0'] : [f6(x / 64), f6(y / 48), String(v)]);
    }
    expect(object.keypoints!.some((k) => k[2] === 0)).toBe(true);
  });

  it('omits flip_idx when the keypoints are not COCO-17, and fills missing keypoints as unlabelled', async () => {
    const { dataset, splits } = await prepared({ taskType: 'pose_estimation', count: 4, objectsPerImage: [1, 1] }, (a) => {
      for (const image of a.images) for (const ann of image.annotations) ann.keypoints = ann.keypoints.slice(5, 10);
      delete a.images[0].annotations[0].keypoints;
    });
    const out = next('yolo-pose');
    const result = await convertToYolo(dataset, splits, out);
    const yaml = parseYaml(readFileSync(result.dataYaml, 'utf8'));
    expect(yaml.kpt_shape).toEqual([5, 3]);
    expect(yaml.flip_idx).toBeUndefined();
    const [row] = lines(labelPathOf(join(out, 'images', splits.get('1')!, 'img-00001.png')));
    expect(row!.split(' ').slice(5)).toEqual(Array.from({ length: 5 }, () => ['0.000000', '0.000000', '0']).flat());
  });
});

describe('mergeMultiSegment', () => {
  // Expected outlines computed with ultralytics.data.converter.merge_multi_segment (8.4).
  it.each([
    [
      [
        [0, 0, 4, 0, 4, 4, 0, 4],
        [10, 0, 14, 0, 14, 4, 10, 4],
      ],
      [4, 0, 4, 4, 0, 4, 0, 0, 4, 0, 10, 0, 14, 0, 14, 4, 10, 4, 10, 0],
    ],
    [
      [
        [0, 0, 4, 0, 4, 4, 0, 4],
        [10, 10, 14, 10, 14, 14, 10, 14],
        [20, 0, 24, 0, 24, 4, 20, 4],
      ],
      [4, 4, 0, 4, 0, 0, 4, 0, 4, 4, 10, 10, 14, 10, 20, 4, 20, 0, 24, 0, 24, 4, 20, 4, 14, 10, 14, 14, 10, 14, 10, 10],
    ],
    [
      [
        [5, 5, 9, 5, 9, 9, 5, 9],
        [0, 0, 3, 0, 3, 3, 0, 3],
        [12, 1, 15, 1, 15, 4, 12, 4],
        [6, 12, 9, 12, 7.5, 15],
      ],
      [5, 5, 9, 5, 9, 9, 5, 9, 5, 5, 3, 3, 3, 0, 12, 1, 15, 1, 15, 4, 12, 4, 9, 12, 7.5, 15, 6, 12, 9, 12, 12, 4, 12, 1, 3, 0, 0, 0, 0, 3, 3, 3],
    ],
  ])('matches ultralytics for %j', (pieces, expected) => {
    expect(mergeMultiSegment(pieces)).toEqual(expected);
  });

  it('passes a single polygon through', () => {
    expect(mergeMultiSegment([[1, 2, 3, 4, 5, 6]])).toEqual([1, 2, 3, 4, 5, 6]);
  });
});

describe('convertToImageFolder', () => {
  it('links each labelled image into <split>/<class folder>/, numbering classes by sorted folder', async () => {
    const { dataset, splits } = await prepared({
      taskType: 'image_classification',
      count: 15,
      classes: ['zebra', 'a/b', 'Ant'],
      backgroundEvery: 5,
      subfolders: true,
    });
    const out = next('folder');
    const result = await convertToImageFolder(dataset, splits, out);
    expect(result.classes).toEqual([
      { index: 0, folder: 'Ant', datasetId: 2, name: 'Ant' },
      { index: 1, folder: 'a_b', datasetId: 1, name: 'a/b' },
      { index: 2, folder: 'zebra', datasetId: 0, name: 'zebra' },
    ]);
    expect(result.classNames).toEqual(['Ant', 'a/b', 'zebra']);
    expect(readFileSync(result.classMapFile, 'utf8')).toBe('Ant\na_b\nzebra\n');
    expect(result.unlabelled).toBe(3);
    const labelled = dataset.images.filter((i) => i.label !== undefined);
    expect((result.counts.train ?? 0) + (result.counts.val ?? 0)).toBe(labelled.length);
    for (const split of ['train', 'val'] as const) {
      // Every class folder exists in every split, so the numbering is the same in both.
      expect(readdirSync(join(out, split)).sort(compareCodePoints)).toEqual(['Ant', 'a_b', 'zebra']);
    }
    for (const image of labelled) {
      const folder = result.classes.find((c) => c.datasetId === image.label)!.folder;
      const path = join(out, splits.get(image.id)!, folder, image.fileName.replace('/', '__'));
      expect(lstatSync(path).isSymbolicLink()).toBe(true);
      expect(realpathSync(path)).toBe(image.path);
    }
    const total = Object.values(result.perClass.train ?? {}).reduce((a, b) => a + b, 0);
    expect(total).toBe(result.counts.train);
  });

  it('says so when unlabelled images leave val without a labelled image', async () => {
    const { dataset } = await prepared({ taskType: 'image_classification', count: 6, backgroundEvery: 2 });
    const splits = new Map(dataset.images.map((i) => [i.id, i.label === undefined ? ('val' as const) : ('train' as const)]));
    await expect(convertToImageFolder(dataset, splits, next('folder'))).rejects.toThrow(DatasetError);
    await expect(convertToImageFolder(dataset, splits, next('folder'))).rejects.toThrow(
      /The val split has no labelled images \(3 of the dataset's 6 images have no class\)/,
    );
  });
});

describe('writeHuggingFaceManifest', () => {
  it('writes one JSON line per labelled image and id2label, numbering classes by dataset id', async () => {
    const { dataset, splits } = await prepared({ taskType: 'image_classification', count: 10, classIds: { first: 10, step: 5 } });
    const out = next('hf');
    const result = await writeHuggingFaceManifest(dataset, splits, out);
    expect(JSON.parse(readFileSync(result.labelsFile, 'utf8'))).toEqual({ 0: 'circle', 1: 'square', 2: 'triangle' });
    expect(result.id2label).toEqual({ 0: 'circle', 1: 'square', 2: 'triangle' });
    expect(existsSync(join(out, 'test.jsonl'))).toBe(false);
    const rows = ['train', 'val'].flatMap((split) => lines(join(out, `${split}.jsonl`)).map((l) => ({ split, ...JSON.parse(l) })));
    expect(rows).toHaveLength(10);
    for (const row of rows) {
      const image = dataset.images.find((i) => i.path === row.image)!;
      expect(splits.get(image.id)).toBe(row.split);
      expect(row.label).toBe((image.label! - 10) / 5);
      expect(row.label_name).toBe(['circle', 'square', 'triangle'][row.label]);
    }
  });

  it('refuses detection datasets', async () => {
    const { dataset, splits } = await prepared({ taskType: 'object_detection', count: 4 });
    await expect(writeHuggingFaceManifest(dataset, splits, next('hf'))).rejects.toThrow(/writes classification datasets/);
  });

  it('semantic segmentation: one {image, mask} line per image with a mask; classes by id; images without a mask left out', async () => {
    const { dataset, splits } = await prepared({ taskType: 'semantic_segmentation', count: 8, classIds: [0, 11, 5] }, (a) => {
      delete a.images[0].annotation;
    });
    const out = next('hf');
    const result = await writeHuggingFaceManifest(dataset, splits, out);
    expect(result.classIds).toEqual([0, 5, 11]);
    expect(result.unlabelled).toBe(1);
    const rows = ['train', 'val'].flatMap((split) => lines(join(out, `${split}.jsonl`)).map((l) => JSON.parse(l)));
    expect(rows).toHaveLength(7);
    for (const row of rows) {
      const image = dataset.images.find((i) => i.path === row.image)!;
      expect(row).toEqual({ image: image.path, mask: image.maskPath });
    }
  });
});

describe('names', () => {
  it('makes stems unique ignoring case, and keeps long names short', () => {
    const names = new UniqueNames();
    const image = (id: string, fileName: string, format?: string): Pick<Dataset['images'][number], 'id' | 'fileName' | 'format'> =>
      format ? { id, fileName, format } : { id, fileName };
    expect(names.take(image('1', 'x.jpg'))).toBe('x.jpg');
    expect(names.take(image('2', 'X.png'))).toBe('X__2.png');
    expect(names.take(image('3', './x.jpeg'))).toBe('x__3.jpeg');
    expect(names.take(image('a b', 'x.JPG'))).toBe('x__a_b.JPG');
    expect(names.take(image('5', 'photo.raw', 'jpg'))).toBe('photo.raw.jpg');
    const long = names.take(image('6', `${'deep/'.repeat(60)}img.png`));
    expect(Buffer.byteLength(long)).toBeLessThan(200);
    expect(long.endsWith('.png')).toBe(true);
  });

  it('turns class names into distinct, safe folder names', () => {
    const folders = classFolderNames([
      { id: 0, name: 'cat' },
      { id: 1, name: 'Cat' },
      { id: 2, name: '..' },
      { id: 3, name: ' a/b\\c\n ' },
      { id: 4, name: 'cat_1' },
    ]);
    expect([...folders.values()]).toEqual(['cat', 'Cat_1', 'class_2', 'a_b_c', 'cat_1_4']);
  });
});
