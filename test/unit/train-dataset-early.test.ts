/**
 * The training dataset's layout written from the annotations while the images download
 * (src/jobs/train/dataset.ts), with real files through local storage and the ultralytics
 * adapter's own converter: when it is written early, when it is not, and that the dataset is
 * still verified in full after the download either way.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ultralyticsAdapter } from '../../adapters/ultralytics/index.js';
import { DatasetError } from '../../src/errors.js';
import type { FrameworkAdapter } from '../../src/frameworks/index.js';
import type { BesidePreflight } from '../../src/jobs/beside-preflight.js';
import { prepareTrainingDataset, trainingDatasetBesidePreflight } from '../../src/jobs/train/dataset.js';
import type { PreparedDataset } from '../../src/frameworks/index.js';
import { createStorage, createZip } from '../../src/storage/index.js';
import { jobParts } from '../helpers/job-parts.js';
import { rewriteAnnotations, writeSyntheticDataset } from '../helpers/synthetic.js';

let work: string;
let bucket: string;

beforeEach(() => {
  work = mkdtempSync(join(tmpdir(), 'vt-early-'));
  bucket = join(work, 'bucket');
});
afterEach(() => rmSync(work, { recursive: true, force: true }));

/** A detection dataset stored under datasets/{id}/ in the local bucket. */
function storeDataset(id: string, edit?: (annotations: { images: Array<{ file_name: string }> }, root: string) => void) {
  const dir = join(bucket, 'datasets', id);
  mkdirSync(dir, { recursive: true });
  const ds = writeSyntheticDataset(dir, { taskType: 'object_detection', count: 12, seed: 4 });
  if (edit) {
    edit(ds.annotations as { images: Array<{ file_name: string }> }, ds.root);
    rewriteAnnotations(ds);
  }
  return ds;
}

/** The ultralytics adapter, noting for each layout written whether the downloaded dataset was complete then. */
function watchedAdapter(datasetRoot: string) {
  const calls: Array<{ afterDownload: boolean }> = [];
  const adapter = {
    ...ultralyticsAdapter,
    training: {
      ...ultralyticsAdapter.training,
      prepareDataset: (...args: Parameters<FrameworkAdapter['training']['prepareDataset']>) => {
        // The download renames its staging folder onto the dataset folder only once every file is in.
        calls.push({ afterDownload: existsSync(datasetRoot) });
        return ultralyticsAdapter.training.prepareDataset(...args);
      },
    },
  } as FrameworkAdapter;
  return { adapter, calls };
}

function jobContext(datasetId: string) {
  const { logged, logger, work: workFolder } = jobParts(work);
  const ctx = {
    config: { storage: { type: 'local', root: bucket }, datasetId, taskType: 'object_detection', splitStrategy: undefined, snapshotId: undefined },
    events: { emit: async () => undefined },
    logger,
    storage: createStorage({ type: 'local', root: bucket }, { scratchDir: join(work, 'scratch') }),
    stop: { throwIfRequested: () => undefined },
    work: workFolder,
  };
  return { ctx: ctx as unknown as Parameters<typeof prepareTrainingDataset>[0], logged };
}

const imageLinks = (dataYaml: string) =>
  ['train', 'val'].flatMap((split) =>
    readFileSync(join(dataYaml, '..', `${split}.txt`), 'utf8')
      .trim()
      .split('\n'),
  );

describe('the training layout written while the images download', () => {
  it('a dataset stored as files: written once, before the images were all there, and every link resolves afterwards', async () => {
    storeDataset('files');
    const { ctx, logged } = jobContext('files');
    const { adapter, calls } = watchedAdapter(join(work, 'job', 'dataset'));
    const early: string[] = [];
    const prepared = await prepareTrainingDataset(ctx, adapter, undefined, (layout) => early.push(layout.dataPath));
    expect(calls).toEqual([{ afterDownload: false }]);
    expect(logged.join('\n')).toContain('Dataset layout written from the annotations while the images download');
    // The framework is told of the early layout once, while it can still work beside the download.
    expect(early).toEqual([prepared.dataPath]);
    const links = imageLinks(prepared.dataPath);
    expect(links).toHaveLength(12);
    for (const link of links) expect(existsSync(link), link).toBe(true);
  });

  it('an image named without an extension (its layout name needs the file header): written after the download instead', async () => {
    storeDataset('no-ext', (annotations, root) => {
      const image = annotations.images[0]!;
      const bare = image.file_name.replace(/\.png$/, '');
      renameSync(join(root, 'images', image.file_name), join(root, 'images', bare));
      image.file_name = bare;
    });
    const { ctx } = jobContext('no-ext');
    const { adapter, calls } = watchedAdapter(join(work, 'job', 'dataset'));
    const early: string[] = [];
    const prepared = await prepareTrainingDataset(ctx, adapter, undefined, (layout) => early.push(layout.dataPath));
    expect(calls).toEqual([{ afterDownload: true }]);
    expect(early).toEqual([]); // no early layout: nothing for the framework to begin on
    // The header said PNG: the link carries the extension ultralytics needs.
    expect(imageLinks(prepared.dataPath).filter((l) => l.endsWith('.png'))).toHaveLength(12);
  });

  it('a zip: its annotations entry is extracted first and the layout written from it, once; every link resolves', async () => {
    const ds = storeDataset('zipped');
    await createZip(ds.root, join(bucket, 'datasets', 'zipped.zip'));
    rmSync(ds.root, { recursive: true });
    const { ctx, logged } = jobContext('zipped');
    const { adapter, calls } = watchedAdapter(join(work, 'job', 'dataset'));
    const prepared = await prepareTrainingDataset(ctx, adapter);
    // Begun from the annotations during the extraction, kept: not written again after it.
    expect(logged.join('\n')).toContain('Writing the dataset layout from the annotations while the images download');
    expect(calls).toHaveLength(1);
    const links = imageLinks(prepared.dataPath);
    expect(links).toHaveLength(12);
    for (const link of links) expect(existsSync(link), link).toBe(true);
  });

  it('a zip with SNAPSHOT_ID: written after the download (the snapshot replaces the annotations at the end)', async () => {
    const ds = storeDataset('zipped-snap');
    await createZip(ds.root, join(bucket, 'datasets', 'zipped-snap.zip'));
    const annotations = readFileSync(ds.annotationsPath);
    rmSync(ds.root, { recursive: true });
    mkdirSync(join(bucket, 'datasets', 'zipped-snap', 'snapshots'), { recursive: true });
    writeFileSync(join(bucket, 'datasets', 'zipped-snap', 'snapshots', 's1.json'), annotations);
    const { ctx } = jobContext('zipped-snap');
    (ctx.config as { snapshotId?: string }).snapshotId = 's1';
    const { adapter, calls } = watchedAdapter(join(work, 'job', 'dataset'));
    await prepareTrainingDataset(ctx, adapter);
    expect(calls).toEqual([{ afterDownload: true }]);
  });

  it('the full check still runs after the download: a corrupt image fails the dataset although its layout was written', async () => {
    storeDataset('corrupt', (annotations, root) => {
      rmSync(join(root, 'images', annotations.images[3]!.file_name));
    });
    const { ctx } = jobContext('corrupt');
    const { adapter, calls } = watchedAdapter(join(work, 'job', 'dataset'));
    const err = await prepareTrainingDataset(ctx, adapter).catch((e: unknown) => e);
    expect(calls).toEqual([{ afterDownload: false }]);
    expect(err).toBeInstanceOf(DatasetError);
    expect((err as Error).message).toMatch(/1 problem/);
  });
});

/** Every path under dir, sorted (what is written there, and whether it changes). */
function tree(dir: string): string[] {
  return existsSync(dir) ? (readdirSync(dir, { recursive: true }) as string[]).sort() : [];
}

describe('the download begun beside the preflight (trainingDatasetBesidePreflight)', () => {
  it('cancelled when the preflight fails: the download stops mid-way, nothing writes afterwards, the dataset is never complete', async () => {
    storeDataset('cancelled');
    const { ctx } = jobContext('cancelled');
    // Cancel as soon as the annotations are handed over: the images are still on their way.
    const storage = ctx.storage;
    let cancelled: Promise<void> | undefined;
    const start: BesidePreflight<PreparedDataset> = trainingDatasetBesidePreflight(
      {
        ...ctx,
        storage: Object.assign(Object.create(storage), {
          downloadDataset: (id: string, dest: string, options: Parameters<typeof storage.downloadDataset>[2] = {}) =>
            storage.downloadDataset(id, dest, {
              ...options,
              onAnnotations: (staged) => {
                const read = options.onAnnotations?.(staged);
                cancelled = start.cancel('the preflight failed');
                return read;
              },
            }),
        }),
      },
      ultralyticsAdapter,
    );
    start.start();
    const err = await start.result().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    expect(String((err as Error).message)).toMatch(/abort|the preflight failed/i);
    await cancelled;
    // The staging folder is never renamed onto the dataset folder, and nothing keeps writing.
    expect(existsSync(join(work, 'job', 'dataset'))).toBe(false);
    const after = tree(join(work, 'job'));
    await new Promise((r) => setTimeout(r, 200));
    expect(tree(join(work, 'job'))).toEqual(after);
  });

  it('a dataset that fails while the preflight runs is reported when it is needed, not before', async () => {
    const { ctx } = jobContext('never-uploaded');
    const start = trainingDatasetBesidePreflight(ctx, ultralyticsAdapter);
    start.start();
    // The preflight's seconds: the failed download waits, unobserved but handled, until it is asked for.
    await new Promise((r) => setTimeout(r, 100));
    const err = await start.result().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toMatch(/never-uploaded/);
  });

  it('cancelled before the download started: it never starts', async () => {
    storeDataset('late');
    const { ctx } = jobContext('late');
    const start = trainingDatasetBesidePreflight(ctx, ultralyticsAdapter);
    await start.cancel('the preflight failed');
    const err = await start.result().catch((e: unknown) => e);
    expect((err as Error).message).toMatch(/the preflight failed/);
    expect(tree(join(work, 'job', 'dataset'))).toEqual([]);
  });
});
