/**
 * The storage contract every job uses. One interface, two backends: S3-compatible object
 * storage (AWS S3, Cloudflare R2, MinIO, SeaweedFS) and a local folder that holds the same
 * object keys as files (STORAGE_TYPE=local). Jobs never talk to the AWS SDK directly.
 */

export type StorageConfig =
  | {
      type: 's3' | 'r2' | 'minio';
      /** Omitted for AWS S3; required for every other provider. */
      endpoint?: string;
      /** Without keys (AWS S3 only), the SDK's default credential chain: IRSA, Pod Identity, profiles, instance roles. */
      accessKeyId?: string;
      secretAccessKey?: string;
      /** AWS_SESSION_TOKEN: with temporary keys. */
      sessionToken?: string;
      bucket: string;
      /** Default: `auto` for R2, `us-east-1` otherwise. */
      region?: string;
      /** Default: true for any endpoint that is not AWS (MinIO, SeaweedFS and most self-hosted stores need it). */
      forcePathStyle?: boolean;
    }
  | {
      type: 'local';
      /** The folder standing in for the bucket: key `a/b.json` lives at `{root}/a/b.json`. */
      root: string;
      /** When set, `s3://{bucket}/{key}` URIs (as the platform writes them) resolve into root. */
      bucket?: string;
    };

/** Knobs that are not part of the job's configuration: tests and benchmarks turn them. */
export interface StorageOptions {
  /** Keys per ListObjectsV2 page (S3 caps it at 1000). Default 1000. */
  listPageSize?: number;
  /** Multipart part size for uploads, at least 5 MiB (the S3 minimum). Default 8 MiB. */
  multipartPartSize?: number;
  /** Total attempts per S3 request (the SDK's retry with backoff). Default 5. */
  maxAttempts?: number;
  /** Objects downloaded at once when a dataset is a folder prefix (default 16); a dataset zip streams at most 8 ranges at once. */
  downloadConcurrency?: number;
  /** Where `uploadSnapshot` puts its private copies. Default: the OS temp folder. */
  scratchDir?: string;
  /** Bounds applied when a dataset zip is extracted. */
  zipLimits?: { maxTotalBytes?: number; maxEntries?: number };
}

export interface StorageObject {
  key: string;
  size: number;
}

/**
 * Random access to one stored object, as streamed zip extraction reads it: the central
 * directory first (a few small reads near the end), then runs of entries streamed in
 * parallel. Every read is pinned to the version opened (S3: If-Match on its ETag), so an
 * object replaced meanwhile fails the read instead of mixing two versions.
 */
export interface ObjectReader {
  /** The object's URI, for messages. */
  readonly name: string;
  readonly size: number;
  /** Bytes [start, end) in memory; for small reads. */
  read(start: number, end: number): Promise<Buffer>;
  /**
   * Bytes [start, end) as a stream of chunks. A connection that breaks is resumed from the
   * byte where it stopped (a Range request), so the consumer sees one unbroken stream.
   */
  stream(start: number, end: number): AsyncIterable<Buffer>;
}

/** Cancels the operation: the request in flight is aborted and the call rejects. */
export interface SignalOption {
  signal?: AbortSignal | undefined;
}

export interface DownloadFileOptions extends SignalOption {
  /**
   * Write straight to destPath, whose folder exists, without a temporary file and rename: for
   * callers that stage a whole download in a folder of their own and remove it when anything
   * fails (dataset downloads). A failed download may leave a partial file there.
   */
  inPlace?: boolean;
}

export interface UploadOptions extends SignalOption {
  /** MIME type stored with the object; guessed from the file extension when omitted. */
  contentType?: string;
}

export interface DatasetDownloadOptions extends SignalOption {
  /** Names `datasets/{id}/snapshots/{snapshotId}.json`, which then replaces annotations.json. */
  snapshotId?: string;
  /**
   * Called as soon as the annotations the dataset will use are on disk, while the images still
   * download: the caller may prepare what needs only the annotations. For a dataset stored as
   * files under its prefix with annotations.json at the top (the snapshot's, with SNAPSHOT_ID),
   * and for a zip without SNAPSHOT_ID whose annotations.json is at its top or in the one folder
   * that wraps everything (that entry is extracted first). The staging folder is renamed only
   * after the promise it returns settles, so it may read `staged.path` until then. A retried
   * download calls it again. Not called for a zip with SNAPSHOT_ID (the snapshot replaces the
   * annotations after the extraction), nor for files under the prefix wrapped in a folder.
   */
  onAnnotations?: ((staged: StagedAnnotations) => Promise<void> | void) | undefined;
}

export interface StagedAnnotations {
  /** The annotations file as it lies in the staging folder now. */
  path: string;
  /** The dataset's root once the download completes (`DatasetDownload.root`). */
  root: string;
}

export interface DatasetDownload {
  /** The folder holding annotations.json and images/ (a subfolder of destDir when the zip wraps everything in one folder). */
  root: string;
  source: 'zip' | 'prefix';
  /** Dataset files on disk after download/extraction (the snapshot file not counted). */
  files: number;
  /** Their total size in bytes. */
  bytes: number;
  /** The snapshot key applied, when SNAPSHOT_ID was set. */
  snapshotKey?: string;
}

export interface Storage {
  readonly type: StorageConfig['type'];
  /** The bucket that `uri()` names; for local storage without a bucket, undefined. */
  readonly bucket: string | undefined;
  /** A one-line description for logs, e.g. `s3://my-bucket at https://x.r2.cloudflarestorage.com`. Never holds credentials. */
  describe(): string;

  exists(key: string, options?: SignalOption): Promise<boolean>;
  /** Every object whose key starts with prefix (all pages), sorted by key. */
  list(prefix: string, options?: SignalOption): Promise<StorageObject[]>;
  /** Streams the object to destPath (through a temporary file renamed at the end). Returns the bytes written. */
  downloadFile(key: string, destPath: string, options?: DownloadFileOptions): Promise<number>;
  /** Opens the object for ranged reads (see ObjectReader). */
  openObject(key: string, options?: SignalOption): Promise<ObjectReader>;
  /** Uploads a file (multipart when large) and returns its URI. */
  uploadFile(localPath: string, key: string, options?: UploadOptions): Promise<string>;
  /**
   * Uploads a consistent copy of a file that another process may rewrite meanwhile (a trainer's
   * last.pt): the file is first copied to a private snapshot, which is uploaded and deleted.
   */
  uploadSnapshot(localPath: string, key: string, options?: UploadOptions): Promise<string>;
  putJson(key: string, value: unknown, options?: SignalOption): Promise<string>;
  /** Stores bytes held in memory (a log file read whole while it still grows); returns the URI. */
  putBytes(key: string, body: Buffer, options?: UploadOptions): Promise<string>;
  getJson<T = unknown>(key: string, options?: SignalOption): Promise<T>;
  /** `s3://{bucket}/{key}`, or for local storage `file://{absolute path}`. */
  uri(key: string): string;
  /** The key behind a URI of this storage (see `parseStorageUri`); a bare key is returned as is. */
  parseUri(uri: string): string;
  /** Fetches a dataset as laid out in docs/contract.md ("Storage layout") into destDir (which must be absent or empty). */
  downloadDataset(datasetId: string, destDir: string, options?: DatasetDownloadOptions): Promise<DatasetDownload>;
}
