/**
 * Storage that rides out outages: every operation of the wrapped storage is retried with
 * backoff (the shared retry core, src/net/retry.ts) while its failure is transient (the store
 * cannot be reached, a 5xx, throttling), for a bounded time: STORAGE_RETRY_SECONDS, minutes
 * rather than the SDK's fraction of a second, so an S3 blip does not cost a trained model.
 *
 * Two signals end the retrying early, each for the operations it concerns:
 *  - `downloads` (the job was asked to stop): reads and downloads are abandoned at once,
 *    since nothing fetched now would be used;
 *  - `uploads` (the stop was forced: second signal, grace period over): uploads are abandoned;
 *    until then an upload keeps trying, because it saves work.
 * A `deadline` may bring the end of retrying closer than the budget (a stopping job).
 *
 * The job context wraps its storage in one of these (src/jobs/context.ts), so every stage
 * gets the same behaviour without a loop of its own.
 */
import { StorageError, asVisionTrainerError } from '../errors.js';
import type { Logger } from '../log.js';
import { anySignal, attemptsOf, retry } from '../net/retry.js';
import type {
  DatasetDownload,
  DatasetDownloadOptions,
  DownloadFileOptions,
  ObjectReader,
  SignalOption,
  Storage,
  StorageConfig,
  StorageObject,
  UploadOptions,
} from './types.js';

export interface StorageRetrySettings {
  /** How long one operation may keep retrying, in ms (0: one attempt). */
  budgetMs: number;
  /** First wait; it doubles per retry up to maxDelayMs (default 1 s and 30 s). */
  baseDelayMs?: number;
  maxDelayMs?: number;
  /** Abandons reads and downloads (exists, list, downloads, getJson, openObject). */
  downloads?: AbortSignal | undefined;
  /** Abandons uploads (uploadFile, uploadSnapshot, putJson, putBytes). */
  uploads?: AbortSignal | undefined;
  /** No retry starts after this moment (ms since the epoch), whatever the budget says. */
  deadline?: (() => number) | undefined;
  /** Where each retry is logged (a warning). */
  logger?: Logger | undefined;
}

type Kind = 'read' | 'write';

export class RetryingStorage implements Storage {
  readonly type: StorageConfig['type'];
  readonly bucket: string | undefined;

  constructor(
    readonly inner: Storage,
    readonly settings: StorageRetrySettings,
  ) {
    this.type = inner.type;
    this.bucket = inner.bucket;
  }

  /** The same storage with other retry settings (a shorter budget for the last writes of a failing job). */
  with(overrides: Partial<StorageRetrySettings>): RetryingStorage {
    return new RetryingStorage(this.inner, { ...this.settings, ...overrides });
  }

  describe(): string {
    return this.inner.describe();
  }

  uri(key: string): string {
    return this.inner.uri(key);
  }

  parseUri(uri: string): string {
    return this.inner.parseUri(uri);
  }

  exists(key: string, options: SignalOption = {}): Promise<boolean> {
    return this.run(
      'read',
      () => `check ${this.uri(key)}`,
      options.signal,
      (signal) => this.inner.exists(key, { signal }),
    );
  }

  list(prefix: string, options: SignalOption = {}): Promise<StorageObject[]> {
    return this.run(
      'read',
      () => `list ${this.uri(prefix)}`,
      options.signal,
      (signal) => this.inner.list(prefix, { signal }),
    );
  }

  downloadFile(key: string, destPath: string, options: DownloadFileOptions = {}): Promise<number> {
    return this.run(
      'read',
      () => `download ${this.uri(key)}`,
      options.signal,
      (signal) => this.inner.downloadFile(key, destPath, { ...options, signal }),
    );
  }

  /** Opening is retried; the reader's own reads resume broken streams (s3.ts) but are not retried here. */
  openObject(key: string, options: SignalOption = {}): Promise<ObjectReader> {
    return this.run(
      'read',
      () => `open ${this.uri(key)}`,
      options.signal,
      (signal) => this.inner.openObject(key, { signal }),
    );
  }

  uploadFile(localPath: string, key: string, options: UploadOptions = {}): Promise<string> {
    return this.run(
      'write',
      () => `upload ${localPath} to ${this.uri(key)}`,
      options.signal,
      (signal) => this.inner.uploadFile(localPath, key, { ...options, signal }),
    );
  }

  uploadSnapshot(localPath: string, key: string, options: UploadOptions = {}): Promise<string> {
    return this.run(
      'write',
      () => `upload ${localPath} to ${this.uri(key)}`,
      options.signal,
      (signal) => this.inner.uploadSnapshot(localPath, key, { ...options, signal }),
    );
  }

  putJson(key: string, value: unknown, options: SignalOption = {}): Promise<string> {
    return this.run(
      'write',
      () => `write ${this.uri(key)}`,
      options.signal,
      (signal) => this.inner.putJson(key, value, { signal }),
    );
  }

  putBytes(key: string, body: Buffer, options: UploadOptions = {}): Promise<string> {
    return this.run(
      'write',
      () => `write ${this.uri(key)}`,
      options.signal,
      (signal) => this.inner.putBytes(key, body, { ...options, signal }),
    );
  }

  getJson<T = unknown>(key: string, options: SignalOption = {}): Promise<T> {
    return this.run(
      'read',
      () => `read ${this.uri(key)}`,
      options.signal,
      (signal) => this.inner.getJson<T>(key, { signal }),
    );
  }

  /** A dataset is fetched again whole when an attempt fails: the staging folder of the failed one is removed. */
  downloadDataset(datasetId: string, destDir: string, options: DatasetDownloadOptions = {}): Promise<DatasetDownload> {
    return this.run(
      'read',
      () => `download dataset ${datasetId}`,
      options.signal,
      (signal) => this.inner.downloadDataset(datasetId, destDir, { ...options, signal }),
    );
  }

  private async run<T>(
    kind: Kind,
    what: () => string,
    callerSignal: AbortSignal | undefined,
    operation: (signal: AbortSignal | undefined) => Promise<T>,
  ): Promise<T> {
    const { settings } = this;
    const signal = anySignal(callerSignal, kind === 'read' ? settings.downloads : settings.uploads);
    const started = Date.now();
    const budgetEnd = started + Math.max(0, settings.budgetMs);
    try {
      return await retry((_n, s) => operation(s), {
        baseDelayMs: settings.baseDelayMs ?? 1_000,
        maxDelayMs: settings.maxDelayMs ?? 30_000,
        deadline: () => Math.min(budgetEnd, settings.deadline?.() ?? Number.POSITIVE_INFINITY),
        signal,
        retryable: (err) => err instanceof StorageError && err.transient,
        onRetry: ({ attempt, delayMs, error }) => {
          const left = Math.max(0, Math.round((budgetEnd - Date.now()) / 1000));
          settings.logger?.warn(
            `Could not ${what()} (attempt ${attempt}): ${asVisionTrainerError(error).message}; trying again in ${(delayMs / 1000).toFixed(1)} s (for up to ${left} s more)`,
          );
        },
      });
    } catch (err) {
      const attempts = attemptsOf(err);
      if (!(err instanceof StorageError) || !err.transient || attempts <= 1) throw err;
      const seconds = Math.round((Date.now() - started) / 1000);
      throw new StorageError(`${err.message} (gave up after ${attempts} attempts over ${seconds} s)`, {
        ...(err.key === undefined ? {} : { key: err.key }),
        ...(err.hint === undefined ? {} : { hint: err.hint }),
        exitCode: err.exitCode,
        transient: true,
        cause: err,
      });
    }
  }
}
