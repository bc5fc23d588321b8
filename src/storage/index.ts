/**
 * Object storage for every job: `createStorage(config)` gives the one `Storage` interface over
 * S3-compatible stores or a local folder. Also the safe zip tools and presigned-URL downloads.
 */
import { LocalStorage } from './local.js';
import { S3Storage } from './s3.js';
import type { Storage, StorageConfig, StorageOptions } from './types.js';

export function createStorage(config: StorageConfig, options: StorageOptions = {}): Storage {
  return config.type === 'local' ? new LocalStorage(config, options) : new S3Storage(config, options);
}

export type {
  DatasetDownload,
  DatasetDownloadOptions,
  DownloadFileOptions,
  ObjectReader,
  Storage,
  StorageConfig,
  StorageObject,
  StorageOptions,
  UploadOptions,
} from './types.js';
export { ANNOTATIONS_FILE, ORIGINAL_ANNOTATIONS_FILE, datasetKeys } from './dataset.js';
export { downloadUrl, type DownloadUrlOptions, type DownloadUrlResult } from './download.js';
export { parseStorageUri, resolveInside } from './keys.js';
export { DEFAULT_ZIP_LIMITS, createZip, extractZip, extractZipFrom, type ExtractOptions, type ExtractZipResult, type ZipInput, type ZipLimits } from './zip.js';
export { LocalStorage, S3Storage };
