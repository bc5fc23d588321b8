/**
 * Stages more than one job runs: fetching a dataset, and fetching a checkpoint named by a
 * storage URI. Each takes what it needs explicitly, so that a job's helpers can call it too.
 */
import { basename, join } from 'node:path';
import type { StorageConfig } from '../config/schema.js';
import type { Mode } from '../config/variables.js';
import { ConfigError, StorageError, asVisionTrainerError } from '../errors.js';
import type { DatasetDownload, DatasetDownloadOptions, Storage } from '../storage/types.js';

/** A downloaded dataset, or DATASET_PATH used where it is. */
export type FetchedDataset = DatasetDownload | { root: string; source: 'local' };

/**
 * DATASET_ID from storage into `dest`, or DATASET_PATH as it is when local storage names one
 * (development and tests: nothing is copied).
 */
export async function fetchDataset(
  config: { storage: StorageConfig; snapshotId?: string | undefined },
  storage: Storage,
  datasetId: string,
  dest: string,
  options: Pick<DatasetDownloadOptions, 'onAnnotations' | 'signal'> = {},
): Promise<FetchedDataset> {
  if (config.storage.type === 'local' && config.storage.datasetPath) return { root: config.storage.datasetPath, source: 'local' };
  return storage.downloadDataset(datasetId, dest, {
    ...(config.snapshotId ? { snapshotId: config.snapshotId } : {}),
    ...(options.onAnnotations ? { onAnnotations: options.onAnnotations } : {}),
    ...(options.signal ? { signal: options.signal } : {}),
  });
}

/** How a checkpoint that cannot be fetched is reported: which variable, and what to do. */
export interface CheckpointSource {
  variable: string;
  uri: string;
  mode: Mode;
  /** The local file name; default: the object's own name. */
  fileName?: string;
  /** A URI that is not this storage's, or an object that does not exist, is the user's mistake (exit 2). */
  missingIsConfigError?: boolean;
}

/** Downloads a checkpoint named by a storage URI into `dir`. */
export async function fetchCheckpoint(storage: Storage, source: CheckpointSource, dir: string, signal?: AbortSignal): Promise<LocalFile> {
  if (source.missingIsConfigError) {
    const problem = (message: string) => new ConfigError([{ variable: source.variable, value: source.uri, message }], source.mode);
    let key: string;
    try {
      key = storage.parseUri(source.uri);
    } catch (err) {
      throw problem(asVisionTrainerError(err).message);
    }
    if (!(await storage.exists(key, { signal }))) {
      throw problem(`does not exist in ${storage.describe()}; point it at a checkpoint this platform uploaded, e.g. checkpoints/job-{JOB_ID}/epoch-5.pt`);
    }
    return download(storage, key, dir, source.fileName, signal);
  }
  try {
    return await download(storage, storage.parseUri(source.uri), dir, source.fileName, signal);
  } catch (err) {
    throw new StorageError(`${source.variable} ${source.uri} could not be downloaded: ${asVisionTrainerError(err).message}`, {
      cause: err,
      hint: `Point ${source.variable} at a checkpoint this platform uploaded, e.g. s3://bucket/checkpoints/job-{JOB_ID}/best.pt.`,
    });
  }
}

export interface LocalFile {
  path: string;
  bytes: number;
}

async function download(storage: Storage, key: string, dir: string, fileName: string | undefined, signal: AbortSignal | undefined): Promise<LocalFile> {
  const path = join(dir, fileName ?? (basename(key) || 'checkpoint.pt'));
  return { path, bytes: await storage.downloadFile(key, path, { signal }) };
}
