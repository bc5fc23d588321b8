import { mkdtempSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DatasetError, type DatasetProblem } from '../../src/errors.js';
import { loadDataset, parseAnnotationsText } from '../../src/datasets/load.js';
import { readImageHeader } from '../../src/datasets/image-files.js';
import type { TaskType } from '../../src/datasets/schema.js';
import { encodePng, rewriteAnnotations, writeSyntheticDataset, type SyntheticOptions, type SyntheticTask } from '../helpers/synthetic.js';

const scratch = mkdtempSync(join(tmpdir(), 'vt-datasets-load-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));
let counter = 0;
const fresh = (options: SyntheticOptions) => writeSyntheticDataset(join(scratch, `d${counter++}`), options);

/** The DatasetError a load throws, or a failure saying it did not throw one. */
async function loadError(root: string, taskType: TaskType, verifyImages = true): Promise<DatasetError> {
  try {
    await loadDataset(root, { taskType, verifyImages });
  } catch (error) {
    expect(error).toBeInstanceOf(DatasetError);
    return error as DatasetError;
  }
  throw new Error('expected loadDataset to throw a DatasetError');
}

function expectProblem(error: DatasetError, expected: { image?: RegExp | string; field?: string | RegExp; message: RegExp }): DatasetProblem {
  const found = error.problems.find(
    (p) =>
      expected.message.test(p.message) &&
      (expected.field === undefined || (typeof expected.field === 'string' ? p.field === expected.field : expected.field.test(p.field ?? ''))) &&
      (expected.image === undefined || (typeof expected.image === 'string' ? p.image === expected.image : expected.image.test(p.image ?? ''))),
  );
  expect(found, `no problem like ${String(expected.message)} among:\n${error.message}`).toBeDefined();
  return found as DatasetProblem;
}

/** Mutates one image entry of a Platform Format file. */
function images(ds: { annotations: Record<string, unknown> }): Array<Record<string, any>> {
  return ds.annotations.images as Array<Record<string, any>>;
}

describe('loadDataset: every task kind, both formats', () => {
  const kinds: Array<{ task: SyntheticTask; coco: boolean }> = [
    { task: 'image_classification', coco: true },
    { task: 'object_detection', coco: true },
    { task: 'instance_segmentation', coco: true },
    { task: 'pose_estimation', coco: true },
    { task: 'semantic_segmentation', coco: false },
  ];
  for (const { task, coco } of kinds) {
    for (const format of coco ? (['platform', 'coco'] as const) : (['platform'] as const)) {
      it(`reads ${task} from ${format}`, async () => {
        const ds = fresh({ taskType: task, format, count: 12, backgroundEvery: 5, subfolders: true, multiPartEvery: 3, classIds: { first: 1, step: 2 } });
        const dataset = await loadDataset(ds.root, { taskType: task });
        expect(dataset.sourceFormat).toBe(format);
        expect(dataset.taskType).toBe(task);
        expect(dataset.images).toHaveLength(12);
        expect(dataset.classes.map((c) => c.name)).toEqual(ds.classNames);
        expect(dataset.classes.map((c) => c.id)).toEqual(ds.classNames.map((_, i) => 1 + 2 * i));
        const first = dataset.images[0]!;
        expect(first.id).toBe('1');
        expect(first.fileName).toBe('part-0/img-00001.png');
        expect(first.path).toBe(join(ds.root, 'images', 'part-0', 'img-00001.png'));
        expect(first.format).toBe('png');
        // Image 5 and 10 are background (or unlabelled) images, which are not errors.
        const fifth = dataset.images[4]!;
        expect(fifth.objects).toHaveLength(0);
        expect(fifth.label).toBeUndefined();
        if (task === 'image_classification') {
          expect(first.label).toBe(1);
          expect(dataset.images.filter((i) => i.label !== undefined)).toHaveLength(10);
        } else if (task === 'semantic_segmentation') {
          expect(first.maskPath).toBe(join(ds.root, 'masks', 'img-00001.png'));
        } else {
          const objects = dataset.images.flatMap((i) => i.objects);
          expect(objects.length).toBeGreaterThanOrEqual(10);
          for (const object of objects) {
            expect(dataset.classes.some((c) => c.id === object.classId)).toBe(true);
            const [x, y, w, h] = object.bbox;
            expect(x).toBeGreaterThanOrEqual(0);
            expect(y).toBeGreaterThanOrEqual(0);
            expect(x + w).toBeLessThanOrEqual(64);
            expect(y + h).toBeLessThanOrEqual(48);
          }
          if (task === 'instance_segmentation') {
            expect(objects.every((o) => (o.segmentation?.length ?? 0) >= 1)).toBe(true);
            expect(objects.some((o) => o.segmentation!.length === 2)).toBe(true);
          }
          if (task === 'pose_estimation') {
            expect(dataset.keypointCount).toBe(17);
            expect(objects.every((o) => o.keypoints?.length === 17)).toBe(true);
            // Unlabelled keypoints carry no position.
            expect(
              objects
                .flatMap((o) => o.keypoints!)
                .filter((k) => k[2] === 0)
                .every((k) => k[0] === 0 && k[1] === 0),
            ).toBe(true);
            if (format === 'coco') expect(dataset.keypointNames).toHaveLength(17);
          }
        }
      });
    }
  }

  it('keeps image ids as strings and reads string ids', async () => {
    const ds = fresh({ taskType: 'object_detection', idStyle: 'string', count: 4 });
    const dataset = await loadDataset(ds.root, { taskType: 'object_detection' });
    expect(dataset.images.map((i) => i.id)).toEqual(['img-1', 'img-2', 'img-3', 'img-4']);
  });

  it('reads split fields and split_config', async () => {
    const ds = fresh({
      taskType: 'object_detection',
      count: 6,
      imageSplit: (i) => (i < 4 ? 'train' : 'val'),
      splitConfig: { method: 'partial', default_ratio: [0.5, 0.5], seed: 7, splits: { '1': 'val' } },
    });
    const dataset = await loadDataset(ds.root, { taskType: 'object_detection' });
    expect(dataset.images.map((i) => i.split)).toEqual(['train', 'train', 'train', 'train', 'val', 'val']);
    expect(dataset.splitConfig).toMatchObject({ method: 'partial', default_ratio: [0.5, 0.5], seed: 7, splits: { '1': 'val' } });
  });

  it('lets a detector train on a segmentation or pose dataset, not the reverse', async () => {
    const seg = fresh({ taskType: 'instance_segmentation', count: 3 });
    const asDetection = await loadDataset(seg.root, { taskType: 'object_detection' });
    expect(asDetection.images[0]!.objects[0]!.segmentation).toBeUndefined();
    const det = fresh({ taskType: 'object_detection', count: 3 });
    const error = await loadError(det.root, 'instance_segmentation');
    expectProblem(error, { field: 'task_type', message: /labelled for object_detection but the job's TASK_TYPE is instance_segmentation/ });
  });

  it('skips image verification when asked (no files needed)', async () => {
    const ds = fresh({ taskType: 'object_detection', count: 3 });
    rmSync(join(ds.root, 'images'), { recursive: true });
    const dataset = await loadDataset(ds.root, { taskType: 'object_detection', verifyImages: false });
    expect(dataset.images).toHaveLength(3);
    expect(dataset.images[0]!.format).toBeUndefined();
  });

  it('reads a snapshot file instead of annotations.json', async () => {
    const ds = fresh({ taskType: 'object_detection', count: 3 });
    const snapshot = join(ds.root, 'snapshot.json');
    writeFileSync(snapshot, JSON.stringify({ ...ds.annotations, images: images(ds).slice(0, 2) }));
    const dataset = await loadDataset(ds.root, { taskType: 'object_detection', annotationsPath: snapshot });
    expect(dataset.images).toHaveLength(2);
  });

  it('accepts a byte order mark', async () => {
    const ds = fresh({ taskType: 'object_detection', count: 2 });
    rewriteAnnotations(ds, `\uFEFF${JSON.stringify(ds.annotations)}`);
    await expect(loadDataset(ds.root, { taskType: 'object_detection' })).resolves.toMatchObject({ images: { length: 2 } });
  });
});

describe('loadDataset: clipping within the 1 px tolerance', () => {
  it('clips boxes, polygons and keypoints that overshoot by less than a pixel', async () => {
    const ds = fresh({ taskType: 'pose_estimation', count: 1, objectsPerImage: [1, 1] });
    const annotation = images(ds)[0]!.annotations[0];
    annotation.bbox = [-0.6, -0.4, 64.9, 48.8];
    annotation.keypoints[1] = [64.5, 10, 2];
    rewriteAnnotations(ds);
    const dataset = await loadDataset(ds.root, { taskType: 'pose_estimation' });
    const object = dataset.images[0]!.objects[0]!;
    expect(object.bbox).toEqual([0, 0, 64, 48]);
    expect(object.keypoints![1]).toEqual([64, 10, 2]);

    const seg = fresh({ taskType: 'instance_segmentation', count: 1, objectsPerImage: [1, 1] });
    images(seg)[0]!.annotations[0].segmentation = [[-0.5, 0, 64.7, 0, 64.7, 48.3, -0.5, 48.3]];
    rewriteAnnotations(seg);
    const segmented = await loadDataset(seg.root, { taskType: 'instance_segmentation' });
    expect(segmented.images[0]!.objects[0]!.segmentation).toEqual([[0, 0, 64, 0, 64, 48, 0, 48]]);
  });
});

describe('loadDataset: each problem names the image and the field', () => {
  it('a missing image file', async () => {
    const ds = fresh({ taskType: 'object_detection', count: 4 });
    unlinkSync(join(ds.root, 'images', 'img-00003.png'));
    const error = await loadError(ds.root, 'object_detection');
    expectProblem(error, { image: '3 (img-00003.png)', field: 'images[2].file_name', message: /images\/img-00003\.png does not exist/ });
    expect(error.exitCode).toBe(3);
    expect(error.hint).toMatch(/Fix these entries/);
  });

  it('file names that escape the dataset folder', async () => {
    const ds = fresh({ taskType: 'object_detection', count: 4 });
    images(ds)[0]!.file_name = '../annotations.json';
    images(ds)[1]!.file_name = '/etc/passwd';
    images(ds)[2]!.file_name = 'sub/../../x.png';
    images(ds)[3]!.file_name = 'C:\\data\\x.png';
    rewriteAnnotations(ds);
    const error = await loadError(ds.root, 'object_detection');
    expectProblem(error, { image: /^1 /, field: 'images[0].file_name', message: /contains "\.\." and would reach outside/ });
    expectProblem(error, { image: /^2 /, field: 'images[1].file_name', message: /is an absolute path/ });
    expectProblem(error, { image: /^3 /, field: 'images[2].file_name', message: /contains "\.\."/ });
    expectProblem(error, { image: /^4 /, field: 'images[3].file_name', message: /is an absolute path/ });
  });

  it('an undeclared class id and a class name that disagrees with its id', async () => {
    const ds = fresh({ taskType: 'object_detection', count: 3, objectsPerImage: [1, 1] });
    images(ds)[0]!.annotations[0].class_id = 9;
    images(ds)[1]!.annotations[0].class_name = 'not-this-one';
    rewriteAnnotations(ds);
    unlinkSync(join(ds.root, 'images', 'img-00003.png'));
    const error = await loadError(ds.root, 'object_detection');
    // Entry problems and file problems come in one report.
    expect(error.problems).toHaveLength(3);
    expectProblem(error, { image: /^3 /, field: 'images[2].file_name', message: /does not exist/ });
    expectProblem(error, { image: /^1 /, field: 'images[0].annotations[0].class_id', message: /class id 9 is not declared in classes \(declared: 0, 1, 2\)/ });
    expectProblem(error, { image: /^2 /, field: 'images[1].annotations[0].class_name', message: /"not-this-one" disagrees with class id/ });
  });

  it('classification: an undeclared class', async () => {
    const ds = fresh({ taskType: 'image_classification', count: 3 });
    images(ds)[2]!.annotation.class_id = 42;
    rewriteAnnotations(ds);
    const error = await loadError(ds.root, 'image_classification');
    expectProblem(error, { image: /^3 /, field: 'images[2].annotation.class_id', message: /class id 42 is not declared/ });
  });

  it('boxes outside the image and boxes without size', async () => {
    const ds = fresh({ taskType: 'object_detection', count: 3, objectsPerImage: [1, 1] });
    images(ds)[0]!.annotations[0].bbox = [50, 10, 20, 10];
    images(ds)[1]!.annotations[0].bbox = [5, 5, 0, 10];
    images(ds)[2]!.annotations[0].bbox = [5, 5, 10, -3];
    rewriteAnnotations(ds);
    const error = await loadError(ds.root, 'object_detection');
    expectProblem(error, { image: /^1 /, field: 'images[0].annotations[0].bbox', message: /lies outside the 64x48 image \(right edge at x=70\)/ });
    expectProblem(error, { image: /^2 /, field: 'images[1].annotations[0].bbox', message: /non-positive size \(width 0, height 10\)/ });
    expectProblem(error, { image: /^3 /, field: 'images[2].annotations[0].bbox', message: /non-positive size/ });
  });

  it('polygons with too few points or an odd coordinate count', async () => {
    const ds = fresh({ taskType: 'instance_segmentation', count: 2, objectsPerImage: [1, 1] });
    images(ds)[0]!.annotations[0].segmentation = [[1, 1, 5, 5]];
    images(ds)[1]!.annotations[0].segmentation = [[1, 1, 5, 5, 9, 1, 3]];
    rewriteAnnotations(ds);
    const error = await loadError(ds.root, 'instance_segmentation');
    expectProblem(error, { image: /^1 /, field: 'images[0].annotations[0].segmentation[0]', message: /has 2 points; a polygon needs at least 3/ });
    expectProblem(error, { image: /^2 /, field: 'images[1].annotations[0].segmentation[0]', message: /7 coordinates, an odd count/ });
  });

  it('keypoint counts that differ across the dataset', async () => {
    const ds = fresh({ taskType: 'pose_estimation', count: 3, objectsPerImage: [1, 1] });
    images(ds)[2]!.annotations[0].keypoints = images(ds)[2]!.annotations[0].keypoints.slice(0, 15);
    rewriteAnnotations(ds);
    const error = await loadError(ds.root, 'pose_estimation');
    expectProblem(error, { image: /^3 /, field: 'images[2].annotations[0].keypoints', message: /has 15 keypoints but the dataset uses 17 \(as on image 1 / });
  });

  it('COCO: keypoints that disagree with the category and annotations of unknown images', async () => {
    const ds = fresh({ taskType: 'pose_estimation', format: 'coco', count: 2, objectsPerImage: [1, 1] });
    const annotations = ds.annotations.annotations as Array<Record<string, any>>;
    annotations[0]!.keypoints = annotations[0]!.keypoints.slice(0, 30);
    annotations[1]!.image_id = 99;
    rewriteAnnotations(ds);
    const error = await loadError(ds.root, 'pose_estimation');
    expectProblem(error, {
      image: /^1 /,
      field: 'annotations[0].keypoints',
      message: /has 10 keypoints but the dataset uses 17 \(as on categories\[0\]\.keypoints\)/,
    });
    expectProblem(error, { image: '99', field: 'annotations[1].image_id', message: /no image has id 99/ });
  });

  it('duplicate image ids, comparing 7 and "7" as the same id', async () => {
    const ds = fresh({ taskType: 'object_detection', count: 3 });
    images(ds)[2]!.id = '1';
    rewriteAnnotations(ds);
    const error = await loadError(ds.root, 'object_detection');
    expectProblem(error, { image: /^1 \(img-00003/, field: 'images[2].id', message: /image id "1" is used twice \(also images\[0\]\)/ });
  });

  it('duplicate class ids', async () => {
    const ds = fresh({ taskType: 'object_detection', count: 2 });
    (ds.annotations.classes as Array<Record<string, unknown>>)[2]!.id = 0;
    rewriteAnnotations(ds);
    const error = await loadError(ds.root, 'object_detection');
    expectProblem(error, { field: 'classes[2].id', message: /class id 0 is declared twice \(also classes\[0\]\)/ });
  });

  it('a task_type that disagrees with the job, or is unknown', async () => {
    const ds = fresh({ taskType: 'image_classification', count: 2 });
    const error = await loadError(ds.root, 'object_detection');
    expect(error.problems).toHaveLength(1);
    expectProblem(error, { field: 'task_type', message: /labelled for image_classification but the job's TASK_TYPE is object_detection/ });
    rewriteAnnotations(ds, { ...ds.annotations, task_type: 'captioning' });
    expectProblem(await loadError(ds.root, 'image_classification'), { field: 'task_type', message: /"captioning" is not a task type/ });
  });

  it('an image that is not an image, and a size that disagrees with the header', async () => {
    const ds = fresh({ taskType: 'object_detection', count: 3 });
    writeFileSync(join(ds.root, 'images', 'img-00001.png'), 'this is text, not an image\n');
    writeFileSync(join(ds.root, 'images', 'img-00002.png'), Buffer.alloc(0));
    images(ds)[2]!.width = 128;
    rewriteAnnotations(ds);
    const error = await loadError(ds.root, 'object_detection');
    expectProblem(error, { image: /^1 /, field: 'images[0].file_name', message: /is not a readable image \(not a known image format\)/ });
    expectProblem(error, { image: /^2 /, field: 'images[1].file_name', message: /is empty/ });
    expectProblem(error, { image: /^3 /, field: 'images[2].width/height', message: /declared 128x48 but images\/img-00003\.png is 64x48/ });
  });

  it('semantic masks that are missing or of another size', async () => {
    const ds = fresh({ taskType: 'semantic_segmentation', count: 2 });
    unlinkSync(join(ds.root, 'masks', 'img-00001.png'));
    writeFileSync(join(ds.root, 'masks', 'img-00002.png'), encodePng(4, 4, new Uint8Array(16), 1));
    const error = await loadError(ds.root, 'semantic_segmentation');
    expectProblem(error, { image: /^1 /, field: 'images[0].annotation.mask_file', message: /masks\/img-00001\.png does not exist/ });
    expectProblem(error, { image: /^2 /, field: 'images[1].annotation.mask_file', message: /is 4x4 but the image is 64x48/ });
  });

  it('wrong types and missing fields, through the schema, with the path', async () => {
    const ds = fresh({ taskType: 'object_detection', count: 3 });
    images(ds)[0]!.width = '64';
    delete images(ds)[1]!.file_name;
    images(ds)[2]!.annotations[0].bbox = [1, 2, 3];
    rewriteAnnotations(ds);
    const error = await loadError(ds.root, 'object_detection');
    expectProblem(error, { image: /^1 /, field: 'images[0].width', message: /expected number, received string/ });
    expectProblem(error, { image: '2', field: 'images[1].file_name', message: /expected string/ });
    expectProblem(error, { image: /^3 /, field: 'images[2].annotations[0].bbox', message: /./ });
  });

  it('collects every problem at once, and bounds the list it keeps', async () => {
    const ds = fresh({ taskType: 'object_detection', count: 600, width: 8, height: 8, objectsPerImage: [1, 1] });
    for (const image of images(ds)) image.annotations[0].class_id = 77;
    rewriteAnnotations(ds);
    const error = await loadError(ds.root, 'object_detection', false);
    expect(error.message).toMatch(/has 600 problems in annotations\.json \(Platform Format, TASK_TYPE object_detection\) \(the first 500 are kept\)/);
    expect(error.problems).toHaveLength(500);
    expect(error.message).toMatch(/\.\.\. and 480 more/);
  });

  it('invalid JSON, with the line and column where it breaks', async () => {
    const ds = fresh({ taskType: 'object_detection', count: 2 });
    rewriteAnnotations(ds, '{\n  "classes": [],\n  "images": [,]\n}');
    const error = await loadError(ds.root, 'object_detection');
    expect(error.message).toMatch(/^annotations\.json is not valid JSON: unexpected "," at line 3, column 14 \(offset 32\), near " \\"images\\": \[,\] }"/);
    rewriteAnnotations(ds, JSON.stringify(ds.annotations).slice(0, 100));
    expect((await loadError(ds.root, 'object_detection')).message).toMatch(/not valid JSON: the file ends early \(truncated upload\?\), at line 1, column 101/);
    expect(() => parseAnnotationsText('   ')).toThrow(/the file is empty/);
    expect(() => parseAnnotationsText('{"a": 1} x')).toThrow(/unexpected "x" at line 1, column 10/);
    expect(() => parseAnnotationsText('{"a": "tab\there"}')).toThrow(/unexpected "\\t" at line 1, column 11/);
    expect(() => parseAnnotationsText('['.repeat(100_000))).toThrow(/ends early .* column 100001/);
  });

  it('a missing annotations file, an unknown format and an empty dataset', async () => {
    const ds = fresh({ taskType: 'object_detection', count: 2 });
    unlinkSync(ds.annotationsPath);
    expect((await loadError(ds.root, 'object_detection')).message).toMatch(/has no annotations file at .*annotations\.json/);
    rewriteAnnotations(ds, '{"items": []}');
    expect((await loadError(ds.root, 'object_detection')).message).toMatch(/neither a Platform Format file .* nor a COCO file/);
    rewriteAnnotations(ds, { ...ds.annotations, images: [] });
    expectProblem(await loadError(ds.root, 'object_detection'), { field: 'images', message: /the dataset has no images/ });
    rewriteAnnotations(ds, { ...ds.annotations, classes: [] });
    expectProblem(await loadError(ds.root, 'object_detection'), { field: 'classes', message: /declares no classes/ });
  });

  it('a classification dataset without a single label, and a pose dataset without keypoints', async () => {
    const cls = fresh({ taskType: 'image_classification', count: 3, backgroundEvery: 1 });
    expectProblem(await loadError(cls.root, 'image_classification'), { field: 'images', message: /none of the 3 images has a class/ });
    const pose = fresh({ taskType: 'pose_estimation', count: 2 });
    for (const image of images(pose)) for (const a of image.annotations) delete a.keypoints;
    rewriteAnnotations(pose);
    expectProblem(await loadError(pose.root, 'pose_estimation'), { field: 'images', message: /no object has keypoints/ });
  });

  it('COCO: run-length masks only on crowd regions, one class per classification image', async () => {
    const seg = fresh({ taskType: 'instance_segmentation', format: 'coco', count: 2, objectsPerImage: [1, 1] });
    const annotations = seg.annotations.annotations as Array<Record<string, any>>;
    annotations[0]!.segmentation = { counts: [0, 5, 10], size: [48, 64] };
    annotations[1]!.segmentation = { counts: 'abc', size: [48, 64] };
    annotations[1]!.iscrowd = 1;
    rewriteAnnotations(seg);
    const error = await loadError(seg.root, 'instance_segmentation');
    expect(error.problems).toHaveLength(1);
    expectProblem(error, { image: /^1 /, field: 'annotations[0].segmentation', message: /run-length encoded mask; only crowd regions/ });

    const cls = fresh({ taskType: 'image_classification', format: 'coco', count: 2 });
    (cls.annotations.annotations as unknown[]).push({ id: 99, image_id: 1, category_id: 2 });
    rewriteAnnotations(cls);
    expectProblem(await loadError(cls.root, 'image_classification'), {
      image: /^1 /,
      field: 'annotations[2].category_id',
      message: /already has class 0; a classification image has exactly one class/,
    });
  });

  it("COCO semantic segmentation: COCO-Stuff's pixel maps (masks/<stem>.png, pixel = category id) are read; segments in the JSON are refused naming the converters", async () => {
    const ds = fresh({ taskType: 'semantic_segmentation', format: 'coco', count: 3, classes: ['background', 'square', 'ellipse'], classIds: [0, 11, 5] });
    const dataset = await loadDataset(ds.root, { taskType: 'semantic_segmentation' });
    expect(dataset.sourceFormat).toBe('coco');
    expect(dataset.classes.map((c) => c.id)).toEqual([0, 11, 5]);
    expect(dataset.images.map((i) => i.maskPath)).toEqual(dataset.images.map((i) => join(ds.root, 'masks', i.fileName)));

    // A label map that is missing is named with the image entry it belongs to.
    unlinkSync(join(ds.root, 'masks', (images(ds)[1] as { file_name: string }).file_name));
    expectProblem(await loadError(ds.root, 'semantic_segmentation'), {
      image: /^2 /,
      field: `images[1] (its label map masks/${images(ds)[1]!.file_name})`,
      message: /mask file masks\/.* does not exist/,
    });

    // COCO-Stuff's stuff_*.json (RLE per category) and panoptic files: not rasterised, refused with the way to pixel maps.
    const stuff = fresh({ taskType: 'object_detection', format: 'coco', count: 2 });
    (stuff.annotations.annotations as Array<Record<string, unknown>>)[0]!.segmentation = { counts: 'abc', size: [48, 64] };
    rewriteAnnotations(stuff);
    expectProblem(await loadError(stuff.root, 'semantic_segmentation'), {
      field: 'annotations[0].segmentation',
      message: /cocostuffapi's cocoSegmentationToPng/,
    });
    const panoptic = fresh({ taskType: 'object_detection', format: 'coco', count: 2 });
    panoptic.annotations.annotations = [{ image_id: 1, file_name: 'img-00001.png', segments_info: [{ id: 1, category_id: 0 }] }];
    rewriteAnnotations(panoptic);
    expectProblem(await loadError(panoptic.root, 'semantic_segmentation'), {
      field: 'annotations[0].segments_info',
      message: /1 annotation\(s\) carry panoptic segments; .* masks\/<image file stem>\.png .*panoptic2semantic_segmentation/,
    });
  });
});

describe('readImageHeader', () => {
  it('reads PNG sizes and reports unreadable files', async () => {
    const dir = join(scratch, 'headers');
    writeSyntheticDataset(dir, { taskType: 'object_detection', count: 1, width: 33, height: 17 });
    await expect(readImageHeader(join(dir, 'images', 'img-00001.png'))).resolves.toEqual({ ok: true, header: { width: 33, height: 17, type: 'png' } });
    await expect(readImageHeader(join(dir, 'images'))).resolves.toEqual({ ok: false, reason: 'is a folder, not a file' });
    await expect(readImageHeader(join(dir, 'nope.png'))).resolves.toEqual({ ok: false, reason: 'does not exist' });
  });

  it('reads on when a JPEG keeps its size after a large EXIF block', async () => {
    const app1 = Buffer.concat([Buffer.from([0xff, 0xe1, 0xff, 0xff]), Buffer.alloc(0xfffd)]);
    // SOF0: precision 8, height 48, width 64, 3 components.
    const sof0 = Buffer.from([0xff, 0xc0, 0x00, 0x11, 0x08, 0x00, 0x30, 0x00, 0x40, 0x03, 0x01, 0x22, 0x00, 0x02, 0x11, 0x01, 0x03, 0x11, 0x01]);
    const path = join(scratch, 'exif.jpg');
    writeFileSync(path, Buffer.concat([Buffer.from([0xff, 0xd8]), app1, app1, sof0, Buffer.from([0xff, 0xd9])]));
    await expect(readImageHeader(path)).resolves.toEqual({ ok: true, header: { width: 64, height: 48, type: 'jpg' } });
  });
});
