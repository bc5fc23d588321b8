/**
 * An inference job's inputs fetched beside the preflight (src/jobs/infer/downloads.ts), with real
 * files through local storage: the session's plan comes from the annotations while the images
 * still download, the images are verified in full afterwards, and a failure stops every download.
 */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DatasetError } from '../../src/errors.js';
import { InferenceDownloads } from '../../src/jobs/infer/downloads.js';
import { imagePlan, samePlan } from '../../src/jobs/infer/inputs.js';
import { createStorage, createZip } from '../../src/storage/index.js';
import type { Storage } from '../../src/storage/types.js';
import { jobParts } from '../helpers/job-parts.js';
import { writeSyntheticDataset } from '../helpers/synthetic.js';

let work: string;
let bucket: string;

beforeEach(() => {
  work = mkdtempSync(join(tmpdir(), 'vt-infer-dl-'));
  bucket = join(work, 'bucket');
  mkdirSync(join(bucket, 'checkpoints'), { recursive: true });
  writeFileSync(join(bucket, 'checkpoints', 'best.pt'), Buffer.alloc(4096, 7));
});
afterEach(() => rmSync(work, { recursive: true, force: true }));

/** 16 images, every fourth in the test split. */
function storeDataset(id: string) {
  const dir = join(bucket, 'datasets', id);
  mkdirSync(dir, { recursive: true });
  return writeSyntheticDataset(dir, {
    taskType: 'image_classification',
    count: 16,
    seed: 5,
    imageSplit: (i) => (i % 4 === 0 ? 'test' : i % 4 === 1 ? 'val' : 'train'),
  });
}

/**
 * A test run's context; `hold` keeps the dataset's download from finishing (its staging folder is
 * renamed only once the annotations hook settles) until the returned release is called.
 */
function jobContext(datasetId: string, options: { checkpoint?: string; hold?: boolean } = {}) {
  const { logged, logger, work: workFolder } = jobParts(work);
  let release: () => void = () => {};
  const held = new Promise<void>((resolve) => {
    release = resolve;
  });
  const storage = createStorage({ type: 'local', root: bucket }, { scratchDir: join(work, 'scratch') });
  const holding: Storage = options.hold
    ? Object.assign(Object.create(storage), {
        downloadDataset: (id: string, dest: string, o: Parameters<Storage['downloadDataset']>[2] = {}) =>
          storage.downloadDataset(id, dest, {
            ...o,
            onAnnotations: async (staged) => {
              await o.onAnnotations?.(staged);
              await held;
            },
          }),
      })
    : storage;
  const ctx = {
    config: {
      storage: { type: 'local', root: bucket },
      inferenceType: 'test_run',
      datasetId,
      taskType: 'image_classification',
      testSplit: 'test',
      splitStrategy: undefined,
      snapshotId: undefined,
      checkpointPath: options.checkpoint ?? 'checkpoints/best.pt',
    },
    storage: holding,
    logger,
    work: workFolder,
  };
  return { ctx: ctx as unknown as ConstructorParameters<typeof InferenceDownloads>[0], logged, release };
}

function tree(dir: string): string[] {
  return existsSync(dir) ? (readdirSync(dir, { recursive: true }) as string[]).sort() : [];
}

describe("an inference job's downloads beside the preflight", () => {
  it('a test run stored as files: the plan comes from the annotations before the images are all there, and matches the verified images', async () => {
    storeDataset('files');
    const { ctx, release } = jobContext('files', { hold: true });
    const downloads = new InferenceDownloads(ctx);
    downloads.start();
    const { model, plan, early } = await downloads.ready();
    expect(early).toBe(true);
    // The download has not finished: its staging folder is not yet the dataset folder.
    expect(existsSync(join(work, 'job', 'dataset'))).toBe(false);
    expect(model.checkpoint.bytes).toBe(4096);
    expect(plan.total).toBe(4);
    expect(plan.classes?.names.length).toBeGreaterThan(0);
    release();
    const images = await downloads.allImages();
    expect(imagePlan(images)).toEqual(plan);
    expect(images.source.total).toBe(4);
  });

  it('a zip: its annotations entry comes first, so the plan comes before the rest is extracted', async () => {
    const ds = storeDataset('zipped');
    await createZip(ds.root, join(bucket, 'datasets', 'zipped.zip'));
    rmSync(ds.root, { recursive: true });
    const { ctx, release } = jobContext('zipped', { hold: true });
    const downloads = new InferenceDownloads(ctx);
    const { plan, early } = await downloads.ready();
    expect(early).toBe(true);
    expect(existsSync(join(work, 'job', 'dataset'))).toBe(false);
    release();
    expect(plan).toEqual(imagePlan(await downloads.allImages()));
  });

  it('a checkpoint that does not exist is reported, and stop leaves nothing downloading', async () => {
    storeDataset('no-model');
    const { ctx, release } = jobContext('no-model', { checkpoint: 'checkpoints/missing.pt', hold: true });
    const downloads = new InferenceDownloads(ctx);
    downloads.start();
    const err = await downloads.ready().catch((e: unknown) => e);
    expect((err as Error).message).toMatch(/CHECKPOINT_PATH checkpoints\/missing\.pt could not be downloaded/);
    const stopped = downloads.stop('the job failed before it predicted');
    release();
    await stopped;
    const after = tree(join(work, 'job'));
    await new Promise((r) => setTimeout(r, 200));
    expect(tree(join(work, 'job'))).toEqual(after);
    expect(existsSync(join(work, 'job', 'dataset'))).toBe(false);
  });

  it('images that fail verification fail the job after the early plan: the full check still runs', async () => {
    const ds = storeDataset('corrupt');
    const first = (ds.annotations as { images: Array<{ file_name: string }> }).images[0]!;
    writeFileSync(join(ds.root, 'images', first.file_name), 'not a png');
    const { ctx } = jobContext('corrupt');
    const downloads = new InferenceDownloads(ctx);
    await downloads.ready().catch(() => undefined);
    const err = await downloads.allImages().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DatasetError);
  });

  it('stopped before it started (the preflight failed at once): nothing is downloaded', async () => {
    storeDataset('late');
    const { ctx } = jobContext('late');
    const downloads = new InferenceDownloads(ctx);
    await downloads.stop('the preflight failed');
    downloads.start();
    expect(tree(join(work, 'job'))).toEqual([]);
  });
});

describe('samePlan: whether the session opened early fits the verified images', () => {
  const plan = { total: 4, classes: { ids: [3, 7], names: ['square', 'circle'] } };
  it('the same count and classes in the same order fit', () => {
    expect(samePlan(plan, { total: 4, classes: { ids: [3, 7], names: ['square', 'circle'] } })).toBe(true);
  });
  it('another image count, other classes, classes in another order, or classes where there were none do not', () => {
    expect(samePlan(plan, { ...plan, total: 5 })).toBe(false);
    expect(samePlan(plan, { total: 4, classes: { ids: [3, 8], names: ['square', 'circle'] } })).toBe(false);
    expect(samePlan(plan, { total: 4, classes: { ids: [7, 3], names: ['circle', 'square'] } })).toBe(false);
    expect(samePlan({ total: 4 }, plan)).toBe(false);
  });
});
