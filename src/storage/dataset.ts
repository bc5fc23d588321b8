/**
 * Fetching a dataset as docs/contract.md ("Storage layout") describes it:
 *   - `datasets/{id}.zip` when it exists, extracted safely while it downloads (zip.ts), else
 *   - every object under `datasets/{id}/` (downloaded in parallel, bounded), and
 *   - with SNAPSHOT_ID, `datasets/{id}/snapshots/{snapshot}.json` replaces annotations.json;
 *     the dataset's own file is kept beside it as annotations.original.json.
 *
 * Everything lands in a staging folder beside destDir that is renamed onto destDir at the end,
 * so destDir either holds a complete dataset or does not exist; a crashed attempt leaves only
 * the staging folder, which the next attempt removes.
 */
import { getMaxListeners, setMaxListeners } from 'node:events';
import { mkdir, readdir, rename, rm, stat } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { ConfigError, DatasetError, StorageError } from '../errors.js';
import { log } from '../log.js';
import { formatBytes, mapWithConcurrency } from './files.js';
import { resolveInside } from './keys.js';
import type { DatasetDownload, DatasetDownloadOptions, Storage, StorageObject } from './types.js';
import { extractZipFrom, type ZipLimits } from './zip.js';

export const ANNOTATIONS_FILE = 'annotations.json';
export const ORIGINAL_ANNOTATIONS_FILE = 'annotations.original.json';

/**
 * Ranges of a dataset zip streamed at once. Inflating is what bounds a zip's extraction (about
 * 130 MB/s per core); more streams than a few per core would only hold more buffers.
 */
export const MAX_ZIP_STREAMS = 8;

const DEFAULT_MAX_LISTENERS = 10;
const LISTENERS_PER_REQUEST = 4;

/** Names that archivers add and that never make a folder "the dataset's own". */
const ARCHIVER_LITTER = new Set(['__MACOSX', '.DS_Store', 'Thumbs.db']);

export interface DatasetKeys {
  zip: string;
  prefix: string;
  snapshot: string | undefined;
}

export function datasetKeys(datasetId: string, snapshotId?: string): DatasetKeys {
  assertKeySegment(datasetId, 'DATASET_ID');
  if (snapshotId !== undefined) assertKeySegment(snapshotId, 'SNAPSHOT_ID');
  const prefix = `datasets/${datasetId}/`;
  return { zip: `datasets/${datasetId}.zip`, prefix, snapshot: snapshotId === undefined ? undefined : `${prefix}snapshots/${snapshotId}.json` };
}

function assertKeySegment(value: string, variable: string): void {
  if (value === '' || value === '.' || value === '..' || /[/\\\0]/.test(value)) {
    throw new ConfigError([{ variable, value, message: 'must be a plain identifier (no "/", "\\", and not "." or "..")' }]);
  }
}

type DatasetSource = Pick<Storage, 'exists' | 'list' | 'downloadFile' | 'openObject' | 'uri' | 'describe'>;

export interface DownloadDatasetSettings {
  snapshotId?: string | undefined;
  /** Stops the download: requests in flight are cancelled, the staging folder removed. */
  signal?: AbortSignal | undefined;
  concurrency: number;
  zipLimits?: ZipLimits | undefined;
  onAnnotations?: DatasetDownloadOptions['onAnnotations'];
}

export async function downloadDataset(storage: DatasetSource, datasetId: string, destDir: string, settings: DownloadDatasetSettings): Promise<DatasetDownload> {
  const keys = datasetKeys(datasetId, settings.snapshotId);
  const dest = resolve(destDir);
  await assertEmptyOrAbsent(dest);
  const staging = `${dest}.partial`;
  await rm(staging, { recursive: true, force: true });
  const started = Date.now();
  const { signal } = settings;
  // Every request in flight listens on this one signal (the request, its body's pipeline, a
  // backoff's sleep): a bounded fan-out that Node's leak warning (at 11 listeners) would misread.
  if (signal) setMaxListeners(Math.max(getMaxListeners(signal), DEFAULT_MAX_LISTENERS + LISTENERS_PER_REQUEST * settings.concurrency), signal);

  try {
    const zipExists = await storage.exists(keys.zip, { signal });
    const objects = zipExists ? [] : await prefixObjects(storage, keys, signal);
    if (!zipExists && objects.length === 0) {
      throw new DatasetError(
        `Dataset "${datasetId}" not found in ${storage.describe()}: neither ${storage.uri(keys.zip)} nor any object under ${storage.uri(keys.prefix)} exists`,
        [],
        `Upload the dataset as ${keys.zip} (a zip of annotations.json and images/) or as files under ${keys.prefix} ` +
          `(${keys.prefix}annotations.json and ${keys.prefix}images/...), or check DATASET_ID and the bucket name.`,
      );
    }
    if (keys.snapshot !== undefined && !(await storage.exists(keys.snapshot, { signal }))) {
      throw new DatasetError(
        `Snapshot "${settings.snapshotId}" of dataset "${datasetId}" not found: ${storage.uri(keys.snapshot)} does not exist`,
        [],
        "Check SNAPSHOT_ID, or leave it unset to use the dataset's own annotations.json.",
      );
    }

    await mkdir(staging, { recursive: true });
    let counts: { files: number; bytes: number };
    let snapshotApplied = false;
    if (zipExists) {
      const zip = await storage.openObject(keys.zip, { signal });
      log().info(`Downloading dataset ${datasetId} from ${zip.name} (${formatBytes(zip.size)}), extracting as it arrives`);
      // Without a snapshot (which replaces the annotations after the extraction) the zip's
      // annotations.json is extracted first and handed to onAnnotations while the rest streams.
      const early = keys.snapshot === undefined ? settings.onAnnotations : undefined;
      let root = '';
      counts = await extractZipFrom(zip, staging, {
        limits: settings.zipLimits,
        concurrency: Math.min(settings.concurrency, MAX_ZIP_STREAMS),
        ...(early
          ? {
              first: {
                pick: (names: readonly string[]) => {
                  const found = zipAnnotations(names);
                  if (found !== undefined) root = found.root;
                  return found?.name;
                },
                written: (path: string) => early({ path, root: join(dest, root) }),
              },
            }
          : {}),
      });
    } else {
      log().info(`Downloading dataset ${datasetId} from ${storage.uri(keys.prefix)} (${objects.length} objects)`);
      const first = annotationsFirst(objects, keys, settings.onAnnotations !== undefined);
      if (first) {
        counts = await downloadAnnotationsFirst(storage, objects, keys, { staging, dest, first, settings });
        snapshotApplied = keys.snapshot !== undefined;
      } else {
        counts = await downloadObjects(storage, objects, keys.prefix, staging, settings.concurrency, signal);
      }
    }

    const rootName = await datasetRootName(staging);
    if (keys.snapshot !== undefined && !snapshotApplied) await applySnapshot(storage, keys.snapshot, join(staging, rootName), signal);

    await rename(staging, dest); // dest is absent or an empty folder: rename(2) replaces the latter
    const root = join(dest, rootName);
    log().info(`Dataset ${datasetId} ready: ${counts.files} files, ${formatBytes(counts.bytes)} in ${((Date.now() - started) / 1000).toFixed(1)} s`, { root });
    return {
      root,
      source: zipExists ? 'zip' : 'prefix',
      ...counts,
      ...(keys.snapshot === undefined ? {} : { snapshotKey: keys.snapshot }),
    };
  } catch (err) {
    await rm(staging, { recursive: true, force: true });
    throw err;
  }
}

/** The dataset's files under the prefix: folder markers and other snapshots are not part of it. */
async function prefixObjects(storage: DatasetSource, keys: DatasetKeys, signal: AbortSignal | undefined): Promise<StorageObject[]> {
  const snapshots = `${keys.prefix}snapshots/`;
  return (await storage.list(keys.prefix, { signal })).filter((o) => !o.key.endsWith('/') && !o.key.startsWith(snapshots));
}

/**
 * Where the annotations the dataset will use come from, when they can be fetched before the
 * images: annotations.json at the top of the prefix (else the root is known only at the end),
 * and no object of the dataset's own at the path a snapshot moves that file to.
 */
function annotationsFirst(objects: readonly StorageObject[], keys: DatasetKeys, wanted: boolean): string | undefined {
  if (!wanted) return undefined;
  const own = `${keys.prefix}${ANNOTATIONS_FILE}`;
  if (!objects.some((o) => o.key === own)) return undefined;
  if (keys.snapshot === undefined) return own;
  return objects.some((o) => o.key === `${keys.prefix}${ORIGINAL_ANNOTATIONS_FILE}`) ? undefined : keys.snapshot;
}

/**
 * The annotations (the snapshot's, with SNAPSHOT_ID) first, then the caller's onAnnotations runs
 * while every other object downloads; with a snapshot the dataset's own file lands directly as
 * annotations.original.json, which is what applySnapshot would leave.
 */
async function downloadAnnotationsFirst(
  storage: DatasetSource,
  objects: StorageObject[],
  keys: DatasetKeys,
  run: { staging: string; dest: string; first: string; settings: DownloadDatasetSettings },
): Promise<{ files: number; bytes: number }> {
  const { staging, dest, first, settings } = run;
  const { signal } = settings;
  const path = join(staging, ANNOTATIONS_FILE);
  const firstBytes = await storage.downloadFile(first, path, { signal });
  const snapshot = first === keys.snapshot;
  if (snapshot) log().info(`Using annotations snapshot ${storage.uri(first)}`);
  let hook: Promise<void> = Promise.resolve();
  try {
    hook = Promise.resolve(settings.onAnnotations?.({ path, root: dest })).catch(() => undefined);
  } catch {
    // The caller's preparation is its own business: the download goes on regardless.
  }
  const rest = snapshot ? objects : objects.filter((o) => o.key !== first);
  const moved = snapshot ? new Map([[`${keys.prefix}${ANNOTATIONS_FILE}`, ORIGINAL_ANNOTATIONS_FILE]]) : undefined;
  try {
    const counts = await downloadObjects(storage, rest, keys.prefix, staging, settings.concurrency, signal, moved);
    // The snapshot is not one of the dataset's files (DatasetDownload.files).
    return snapshot ? counts : { files: counts.files + 1, bytes: counts.bytes + firstBytes };
  } finally {
    await hook;
  }
}

async function downloadObjects(
  storage: DatasetSource,
  objects: StorageObject[],
  prefix: string,
  staging: string,
  concurrency: number,
  signal: AbortSignal | undefined,
  renamed?: ReadonlyMap<string, string>,
): Promise<{ files: number; bytes: number }> {
  const planned = objects.map((object) => {
    const target = resolveInside(staging, renamed?.get(object.key) ?? object.key.slice(prefix.length));
    if (target === undefined) {
      throw new DatasetError(
        `Object ${storage.uri(object.key)} cannot be part of the dataset: its name would be written outside the dataset folder`,
        [],
        'Rename or delete that object.',
      );
    }
    return { key: object.key, target };
  });
  // Folders once, files in place: the staging folder is removed whole when anything fails.
  for (const folder of new Set(planned.map(({ target }) => dirname(target)))) await mkdir(folder, { recursive: true });
  const sizes = await mapWithConcurrency(planned, concurrency, ({ key, target }) => storage.downloadFile(key, target, { inPlace: true, signal }));
  return { files: sizes.length, bytes: sizes.reduce((a, b) => a + b, 0) };
}

/**
 * The annotations entry of a zip and the folder its dataset will be found in, from the names of
 * its entries as `datasetRootName` will judge the extracted folder: annotations.json at the top
 * (root ''), or inside the single folder that wraps everything; undefined otherwise.
 */
function zipAnnotations(names: readonly string[]): { name: string; root: string } | undefined {
  if (names.includes(ANNOTATIONS_FILE)) return { name: ANNOTATIONS_FILE, root: '' };
  const tops = new Set(names.map((n) => n.split('/')[0] as string).filter((n) => n !== '' && !ARCHIVER_LITTER.has(n)));
  if (tops.size !== 1) return undefined;
  const only = [...tops][0] as string;
  const name = `${only}/${ANNOTATIONS_FILE}`;
  return names.includes(name) ? { name, root: only } : undefined;
}

/**
 * '' when annotations.json sits at the top, else the name of the single folder that wraps
 * everything (a zip made with `zip -r my-set.zip my-set/`), else '' (the dataset loader will
 * then say what is missing).
 */
async function datasetRootName(dir: string): Promise<string> {
  const names = (await readdir(dir)).filter((n) => !ARCHIVER_LITTER.has(n));
  if (names.includes(ANNOTATIONS_FILE) || names.length !== 1) return '';
  const only = names[0] as string;
  return (await stat(join(dir, only))).isDirectory() ? only : '';
}

async function applySnapshot(storage: DatasetSource, snapshotKey: string, root: string, signal: AbortSignal | undefined): Promise<void> {
  const annotations = join(root, ANNOTATIONS_FILE);
  try {
    await rename(annotations, join(root, ORIGINAL_ANNOTATIONS_FILE));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  await storage.downloadFile(snapshotKey, annotations, { signal });
  log().info(`Using annotations snapshot ${storage.uri(snapshotKey)}`);
}

async function assertEmptyOrAbsent(dir: string): Promise<void> {
  let entries: string[];
  try {
    entries = await readdir(dir);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return;
    if (code === 'ENOTDIR') throw new StorageError(`Cannot download a dataset into ${dir}: it is a file`, { hint: 'Pass a new or empty folder.' });
    throw err;
  }
  if (entries.length > 0) {
    throw new StorageError(`Cannot download a dataset into ${dir}: the folder is not empty`, {
      hint: 'Pass a new or empty folder; the download never mixes its files with existing ones.',
    });
  }
}
