/**
 * The images a job processes, delivered batch by batch as local files:
 *
 * - test run: the TEST_SPLIT images of DATASET_ID, split exactly as training split it
 *   (`resolveSplits` with the job's SPLIT_STRATEGY), each with its dataset entry for ground truth;
 * - inference job with IMAGE_PATHS: each object downloaded while earlier batches are predicted,
 *   a bounded number at once and a bounded number ahead, and removed once its batch is done;
 * - inference job with DATASET_ID: every image file under the dataset's images/ folder.
 *
 * An input that does not exist or is not an image is not fatal: it comes through with an
 * `error` and is reported as such in results.json. Storage failures (credentials, network after
 * the SDK's retries) fail the job.
 */
import { mkdir, readFile, readdir, rename, rm } from 'node:fs/promises';
import { extname, join, sep } from 'node:path';
import type { InferConfig } from '../../config/schema.js';
import { loadDataset } from '../../datasets/load.js';
import type { Dataset, DatasetImage } from '../../datasets/model.js';
import { readImageHeader } from '../../datasets/image-files.js';
import { resolveSplits, type SplitResult } from '../../datasets/splits.js';
import { DatasetError, StorageError } from '../../errors.js';
import type { Logger } from '../../log.js';
import type { StagedAnnotations, Storage } from '../../storage/types.js';
import { fetchDataset } from '../stages.js';
import { Limiter } from './limiter.js';

export interface JobImage {
  /** Position in the job's image list. */
  index: number;
  imageId: string;
  fileName: string;
  /** Where it came from: an s3:// URI, or the file name inside the dataset. */
  source: string;
  /** The local file (absent when `error` is set). */
  path?: string;
  /** Test runs: the dataset entry holding the ground truth. */
  datasetImage?: DatasetImage;
  /** Why the image cannot be processed. */
  error?: string;
  /** A downloaded copy, removed once processed. */
  temporary: boolean;
}

export interface ImageSource {
  readonly total: number;
  /** For the log: where the images come from. */
  readonly description: string;
  batches(batchSize: number): AsyncGenerator<JobImage[]>;
}

/** Files a dataset-based inference job picks up: formats every framework here decodes. */
export const IMAGE_EXTENSIONS = new Set(['.jpg', '.jpeg', '.png', '.bmp', '.webp', '.tif', '.tiff']);
/** Downloads in flight at once, and how many images may wait downloaded beyond the batch being formed. */
export const DOWNLOAD_CONCURRENCY = 8;

/** Groups an async stream into arrays of `size` (the last one shorter). */
export async function* inBatches<T>(items: AsyncIterable<T>, size: number): AsyncGenerator<T[]> {
  let batch: T[] = [];
  for await (const item of items) {
    batch.push(item);
    if (batch.length >= size) {
      yield batch;
      batch = [];
    }
  }
  if (batch.length > 0) yield batch;
}

/**
 * `fetch` applied to every item, results yielded in item order. At most `concurrency` fetches run
 * at once and at most `window` items are fetched ahead of the consumer, so memory and disk stay
 * bounded however long the list. A rejected fetch rejects the iteration at its position.
 */
export async function* prefetched<T, R>(
  items: readonly T[],
  fetch: (item: T, index: number) => Promise<R>,
  options: { concurrency: number; window: number },
): AsyncGenerator<R> {
  const pending = new Map<number, Promise<R>>();
  const limiter = new Limiter(options.concurrency);
  let started = 0;
  const start = (index: number): void => {
    const task = limiter.run(() => fetch(items[index] as T, index));
    task.catch(() => {}); // observed when consumed; must not be an unhandled rejection meanwhile
    pending.set(index, task);
  };
  for (let consumed = 0; consumed < items.length; consumed++) {
    while (started < items.length && started - consumed < Math.max(1, options.window)) start(started++);
    const result = await pending.get(consumed)!;
    pending.delete(consumed);
    yield result;
  }
}

async function checkImage(path: string): Promise<{ ok: true; type: string } | { ok: false; reason: string }> {
  const header = await readImageHeader(path);
  return header.ok ? { ok: true, type: header.header.type } : { ok: false, reason: header.reason };
}

/** Test runs and dataset-based inference jobs: images already on disk. */
export function localImages(images: ReadonlyArray<Omit<JobImage, 'index' | 'temporary'>>, description: string): ImageSource {
  return {
    total: images.length,
    description,
    async *batches(batchSize: number) {
      const checked = prefetched(
        images,
        async (image, index): Promise<JobImage> => {
          const base: JobImage = { ...image, index, temporary: false };
          if (!image.path) return base;
          const header = await checkImage(image.path);
          return header.ok ? base : { ...base, path: undefined, error: `not a readable image: ${header.reason}` };
        },
        { concurrency: DOWNLOAD_CONCURRENCY, window: batchSize + DOWNLOAD_CONCURRENCY },
      );
      yield* inBatches(checked, batchSize);
    },
  };
}

/** The test split of a loaded dataset, in the dataset's order. */
export function datasetSplitImages(images: readonly DatasetImage[]): Array<Omit<JobImage, 'index' | 'temporary'>> {
  return images.map((image) => ({ imageId: image.id, fileName: image.fileName, source: image.fileName, path: image.path, datasetImage: image }));
}

/** Every image file under `{datasetRoot}/images`, sorted by path: a dataset-based inference job. */
export async function datasetFolderImages(datasetRoot: string): Promise<Array<Omit<JobImage, 'index' | 'temporary'>>> {
  const imagesDir = join(datasetRoot, 'images');
  let entries: string[];
  try {
    entries = await readdir(imagesDir, { recursive: true });
  } catch {
    return [];
  }
  return entries
    .filter((entry) => IMAGE_EXTENSIONS.has(extname(entry).toLowerCase()))
    .map((entry) => entry.split(sep).join('/'))
    .sort()
    .map((fileName) => ({ imageId: fileName, fileName, source: fileName, path: join(imagesDir, ...fileName.split('/')) }));
}

/**
 * IMAGE_PATHS: each URI downloaded into `downloadDir` while earlier batches are predicted. A local
 * copy is named after the image format its header shows, since frameworks pick decoders by
 * extension.
 */
export function downloadedImages(storage: Storage, uris: readonly string[], downloadDir: string): ImageSource {
  return {
    total: uris.length,
    description: `${uris.length} image${uris.length === 1 ? '' : 's'} from IMAGE_PATHS`,
    async *batches(batchSize: number) {
      const fetched = prefetched(
        uris,
        async (uri, index): Promise<JobImage> => {
          const key = storage.parseUri(uri);
          const fileName = key.split('/').at(-1) ?? key;
          const base: JobImage = { index, imageId: uri, fileName, source: uri, temporary: true };
          const staging = join(downloadDir, `${String(index).padStart(6, '0')}.download`);
          try {
            await storage.downloadFile(key, staging);
          } catch (err) {
            if (err instanceof StorageError && !(await storage.exists(key))) return { ...base, error: `${uri} does not exist` };
            throw err;
          }
          const header = await checkImage(staging);
          if (!header.ok) {
            await rm(staging, { force: true });
            return { ...base, error: `not a readable image: ${header.reason}` };
          }
          const path = join(downloadDir, `${String(index).padStart(6, '0')}.${header.type === 'jpg' ? 'jpg' : header.type}`);
          await rename(staging, path);
          return { ...base, path };
        },
        { concurrency: DOWNLOAD_CONCURRENCY, window: batchSize + DOWNLOAD_CONCURRENCY },
      );
      yield* inBatches(fetched, batchSize);
    },
  };
}

export interface JobImages {
  source: ImageSource;
  /** Test runs: the loaded dataset (classes, keypoint count) for ground truth. */
  dataset?: Dataset;
  /** Test runs: how the split was decided, as resolveSplits describes it. */
  splitDescription: string | null;
}

/**
 * What an inference session is opened with: how many images the job predicts (INFERENCE_BACKEND=auto
 * weighs an export against it) and, in a test run, the dataset's classes.
 */
export interface ImagePlan {
  total: number;
  classes?: { ids: number[]; names: string[] };
}

export function imagePlan(images: JobImages): ImagePlan {
  return { total: images.source.total, ...(images.dataset ? { classes: classesOf(images.dataset) } : {}) };
}

function classesOf(dataset: Dataset): NonNullable<ImagePlan['classes']> {
  return { ids: dataset.classes.map((c) => c.id), names: dataset.classes.map((c) => c.name) };
}

export function samePlan(a: ImagePlan, b: ImagePlan): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

export interface ImagesOptions {
  signal?: AbortSignal | undefined;
  /**
   * A test run's plan, told as soon as the dataset's annotations arrive, while its images still
   * download (when the download hands over the annotations early: `onAnnotations`; not told when
   * the annotations alone select no test split). The images are still verified in full once they
   * are all there.
   */
  onPlan?: ((plan: ImagePlan) => void) | undefined;
}

/** TEST_SPLIT's images of a loaded dataset, split exactly as training split it. */
function testSplit(config: InferConfig, dataset: Dataset): { selected: DatasetImage[]; splits: SplitResult } {
  let splits: SplitResult;
  try {
    splits = resolveSplits(dataset, config.splitStrategy);
  } catch (err) {
    if (!(err instanceof DatasetError)) throw err;
    throw new DatasetError(
      `${err.message}\n(Test runs resolve splits exactly as training does, so a test set needs the same train/val split its model was trained with.)`,
      err.problems,
      err.hint,
    );
  }
  const selected = dataset.images.filter((image) => splits.get(image.id) === config.testSplit);
  if (selected.length === 0) {
    throw new DatasetError(
      `TEST_SPLIT=${config.testSplit} selects no images of dataset ${config.datasetId}: ${splits.description} gave train ${splits.counts.train}, val ${splits.counts.val}, test ${splits.counts.test}`,
      [],
      "Choose a TEST_SPLIT that holds images, or assign images to it in the dataset (split_config or the images' split fields) or in SPLIT_STRATEGY.",
    );
  }
  return { selected, splits };
}

/** The plan the annotations alone give (their entries parsed, no image read); rejects where they select no test split. */
async function planFromAnnotations(config: InferConfig, root: string, text: string): Promise<ImagePlan> {
  const dataset = await loadDataset(root, { taskType: config.taskType, annotationsText: text, verifyImages: false });
  return { total: testSplit(config, dataset).selected.length, classes: classesOf(dataset) };
}

/** The images of a job, as its configuration names them. `workDir` receives downloads. */
export async function imagesForJob(
  config: InferConfig,
  storage: Storage,
  workDir: { sub(name: string): string },
  logger: Logger,
  options: ImagesOptions = {},
): Promise<JobImages> {
  const { signal, onPlan } = options;
  if (config.inferenceType === 'test_run') {
    const onAnnotations = onPlan
      ? async (staged: StagedAnnotations) => {
          const text = await readFile(staged.path, 'utf8');
          // Planned after the staged file is read: the download goes on meanwhile.
          planFromAnnotations(config, staged.root, text).then(onPlan, (err: unknown) =>
            logger.debug('the annotations alone select no test split; the model is opened once the images are in', { error: String(err) }),
          );
        }
      : undefined;
    const { root } = await fetchDataset(config, storage, config.datasetId!, workDir.sub('dataset'), { signal, onAnnotations });
    const dataset = await loadDataset(root, { taskType: config.taskType });
    const { selected, splits } = testSplit(config, dataset);
    logger.info(`Test split "${config.testSplit}": ${selected.length} of ${dataset.images.length} images (${splits.description})`);
    return {
      source: localImages(datasetSplitImages(selected), `split ${config.testSplit} of dataset ${config.datasetId}`),
      dataset,
      splitDescription: splits.description,
    };
  }
  if (config.datasetId) {
    const { root } = await fetchDataset(config, storage, config.datasetId, workDir.sub('dataset'), { signal });
    const images = await datasetFolderImages(root);
    if (images.length === 0)
      throw new DatasetError(
        `Dataset ${config.datasetId} has no image files under images/`,
        [],
        "Upload the images under datasets/{DATASET_ID}/images/ (or in the zip's images/ folder).",
      );
    return { source: localImages(images, `every image of dataset ${config.datasetId}`), splitDescription: null };
  }
  const downloads = workDir.sub('inputs');
  await mkdir(downloads, { recursive: true });
  return { source: downloadedImages(storage, config.imagePaths ?? [], downloads), splitDescription: null };
}
