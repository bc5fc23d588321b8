/**
 * What both backends share: the operations built from the primitive ones (snapshot uploads,
 * dataset downloads), so S3 and local storage behave the same way by construction.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { StorageError } from '../errors.js';
import { downloadDataset } from './dataset.js';
import { copyStableFile } from './files.js';
import type {
  DatasetDownload,
  DatasetDownloadOptions,
  DownloadFileOptions,
  ObjectReader,
  SignalOption,
  Storage,
  StorageConfig,
  StorageObject,
  StorageOptions,
  UploadOptions,
} from './types.js';

/**
 * Objects fetched at once. 16 keeps a high-latency store (AWS S3: tens of ms per request) busy;
 * on the local SeaweedFS of the benchmark, 8 to 32 made no measurable difference.
 */
export const DEFAULT_DOWNLOAD_CONCURRENCY = 16;

export abstract class StorageBase implements Storage {
  abstract readonly type: StorageConfig['type'];
  abstract readonly bucket: string | undefined;

  protected constructor(protected readonly options: StorageOptions) {}

  abstract describe(): string;
  abstract exists(key: string, options?: SignalOption): Promise<boolean>;
  abstract list(prefix: string, options?: SignalOption): Promise<StorageObject[]>;
  abstract downloadFile(key: string, destPath: string, options?: DownloadFileOptions): Promise<number>;
  abstract openObject(key: string, options?: SignalOption): Promise<ObjectReader>;
  abstract uploadFile(localPath: string, key: string, options?: UploadOptions): Promise<string>;
  abstract uri(key: string): string;
  abstract parseUri(uri: string): string;
  abstract putBytes(key: string, body: Buffer, options?: UploadOptions): Promise<string>;
  /** Reads a small object whole into memory. */
  protected abstract getBytes(key: string, options?: SignalOption): Promise<Buffer>;

  putJson(key: string, value: unknown, options: SignalOption = {}): Promise<string> {
    // JSON.stringify already writes NaN/Infinity as null, which keeps metrics files valid JSON.
    return this.putBytes(key, Buffer.from(`${JSON.stringify(value, null, 2)}\n`), { contentType: 'application/json', signal: options.signal });
  }

  async getJson<T = unknown>(key: string, options: SignalOption = {}): Promise<T> {
    const text = (await this.getBytes(key, options)).toString('utf8');
    try {
      return JSON.parse(text) as T;
    } catch (err) {
      throw new StorageError(`${this.uri(key)} is not valid JSON: ${(err as Error).message}`, {
        key,
        hint: 'The object was written by something else or is truncated; re-upload it.',
      });
    }
  }

  protected notFound(key: string, cause?: unknown): StorageError {
    return new StorageError(`${this.uri(key)} does not exist`, {
      key,
      hint: `Check the key and that the object was uploaded to ${this.describe()}.`,
      ...(cause === undefined ? {} : { cause }),
    });
  }

  async uploadSnapshot(localPath: string, key: string, options?: UploadOptions): Promise<string> {
    const dir = await mkdtemp(join(this.options.scratchDir ?? tmpdir(), 'vision-trainer-snapshot-'));
    // Same base name, so the content type guessed from the extension is the original's.
    const snapshot = join(dir, basename(localPath));
    try {
      try {
        await copyStableFile(localPath, snapshot);
      } catch (err) {
        const missing = (err as NodeJS.ErrnoException).code === 'ENOENT';
        throw new StorageError(`Cannot upload ${localPath} to ${this.uri(key)}: ${missing ? 'the file does not exist' : (err as Error).message}`, {
          key,
          hint: missing ? 'The file was never written or was removed before the upload.' : 'Upload after the writer has finished saving the file.',
          cause: err,
        });
      }
      return await this.uploadFile(snapshot, key, options);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  downloadDataset(datasetId: string, destDir: string, options: DatasetDownloadOptions = {}): Promise<DatasetDownload> {
    return downloadDataset(this, datasetId, destDir, {
      snapshotId: options.snapshotId,
      signal: options.signal,
      onAnnotations: options.onAnnotations,
      concurrency: this.options.downloadConcurrency ?? DEFAULT_DOWNLOAD_CONCURRENCY,
      zipLimits: this.options.zipLimits,
    });
  }
}
