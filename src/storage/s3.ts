/**
 * S3-compatible object storage (AWS S3, Cloudflare R2, MinIO, SeaweedFS) through the AWS SDK v3.
 * Downloads stream to disk; uploads go through lib-storage's Upload, which switches to
 * multipart for large files and aborts the multipart upload when it fails.
 *
 * Credentials: explicit keys (with AWS_SESSION_TOKEN when they are temporary), or, without
 * keys, the SDK's default chain as production clusters give pods access: web identity (EKS
 * IRSA), container credentials (EKS Pod Identity, ECS), profiles, instance roles.
 *
 * Every operation takes an AbortSignal that cancels the request in flight. Failures become
 * StorageErrors; those a later attempt may get past (no connection, 5xx, throttling) are
 * marked transient, and src/storage/retrying.ts retries them.
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { stat, writeFile } from 'node:fs/promises';
import { extname } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  GetObjectCommand,
  HeadObjectCommand,
  type HeadObjectCommandOutput,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import type { AwsCredentialIdentity, AwsCredentialIdentityProvider } from '@aws-sdk/types';
import { ConfigError, ExitCode, StorageError } from '../errors.js';
import { log } from '../log.js';
import { describeUrl, redact, registerSecret } from '../redact.js';
import { StorageBase } from './base.js';
import { writeAtomically } from './files.js';
import { S3Getter, type GetResponse } from './s3-get.js';
import { assertValidKey, assertValidPrefix, parseStorageUri, s3Uri } from './keys.js';
import type { DownloadFileOptions, ObjectReader, SignalOption, StorageConfig, StorageObject, StorageOptions, UploadOptions } from './types.js';

export type S3StorageConfig = Extract<StorageConfig, { type: 's3' | 'r2' | 'minio' }>;

const MIB = 1024 * 1024;
const DEFAULT_PART_SIZE = 8 * MIB;
/** Objects up to this size are read into memory and written in one call. */
const SMALL_OBJECT = MIB;
/** Whole-object attempts when a download breaks mid-body (the SDK only retries until the headers arrive). */
const BODY_ATTEMPTS = 3;

const CONTENT_TYPES: Record<string, string> = {
  '.json': 'application/json',
  '.zip': 'application/zip',
  '.log': 'text/plain; charset=utf-8',
  '.txt': 'text/plain; charset=utf-8',
  '.yaml': 'application/yaml',
  '.yml': 'application/yaml',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.webp': 'image/webp',
  '.csv': 'text/csv',
};

/** HTTP statuses that a later attempt may not see again. */
const TRANSIENT_STATUS = new Set([408, 429, 500, 502, 503, 504]);
const THROTTLING = new Set(['SlowDown', 'Throttling', 'ThrottlingException', 'RequestTimeout', 'RequestTimeTooSkewed', 'InternalError', 'ServiceUnavailable']);

export class S3Storage extends StorageBase {
  readonly type: S3StorageConfig['type'];
  readonly bucket: string;
  /** Where the credentials come from, for messages: explicit keys or the SDK's default chain. */
  readonly credentialSource: 'keys' | 'default chain';
  private readonly client: S3Client;
  private readonly endpoint: string | undefined;
  private readonly region: string;
  /** Object GETs (downloads, ranged reads) bypass the SDK's per-request cost; see s3-get.ts. */
  private readonly getter: S3Getter;

  constructor(config: S3StorageConfig, options: StorageOptions = {}) {
    super(options);
    if (config.secretAccessKey) registerSecret(config.secretAccessKey);
    if (config.sessionToken) registerSecret(config.sessionToken);
    this.type = config.type;
    this.bucket = config.bucket;
    this.endpoint = config.endpoint;
    if (this.endpoint === undefined && config.type !== 's3') {
      throw new ConfigError([{ variable: config.type === 'r2' ? 'R2_ENDPOINT' : 'S3_ENDPOINT', message: `is required for STORAGE_TYPE=${config.type}` }]);
    }
    if (this.endpoint !== undefined && !/^https?:\/\/[^/]/.test(this.endpoint)) {
      throw new ConfigError([{ variable: 'S3_ENDPOINT', value: describeUrl(this.endpoint), message: 'must be an http:// or https:// URL' }]);
    }
    if (options.multipartPartSize !== undefined && options.multipartPartSize < 5 * MIB) {
      throw new ConfigError([
        { variable: 'multipartPartSize', value: String(options.multipartPartSize), message: 'must be at least 5 MiB (the S3 minimum part size)' },
      ]);
    }
    this.region = config.region ?? (config.type === 'r2' ? 'auto' : 'us-east-1');
    const keys: AwsCredentialIdentity | undefined =
      config.accessKeyId && config.secretAccessKey
        ? { accessKeyId: config.accessKeyId, secretAccessKey: config.secretAccessKey, ...(config.sessionToken ? { sessionToken: config.sessionToken } : {}) }
        : undefined;
    this.credentialSource = keys ? 'keys' : 'default chain';
    this.client = new S3Client({
      region: this.region,
      ...(this.endpoint === undefined ? {} : { endpoint: this.endpoint }),
      forcePathStyle: config.forcePathStyle ?? (this.endpoint !== undefined && !isAwsEndpoint(this.endpoint)),
      // Without keys the SDK resolves its default chain (and refreshes what expires).
      ...(keys ? { credentials: keys } : {}),
      maxAttempts: options.maxAttempts ?? 5,
      // Without timeouts a stalled connection would hang the job forever.
      requestHandler: { connectionTimeout: 10_000, socketTimeout: 120_000 },
      // Recent SDKs add CRC checksums (and aws-chunked trailers) to every upload by default;
      // several S3-compatible stores reject those. Checksums only where an API requires them.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    });
    this.getter = new S3Getter({
      endpoint: this.endpoint,
      region: this.region,
      bucket: this.bucket,
      forcePathStyle: config.forcePathStyle ?? (this.endpoint !== undefined && !isAwsEndpoint(this.endpoint)),
      // The same credentials the SDK signs with: the chain's provider is memoised and refreshed there.
      credentials: keys ?? ((() => this.client.config.credentials()) as AwsCredentialIdentityProvider),
      maxAttempts: options.maxAttempts ?? 5,
    });
  }

  describe(): string {
    return `s3://${this.bucket} at ${this.endpoint === undefined ? `AWS S3 (${this.region})` : describeUrl(this.endpoint).replace(/\/$/, '')}`;
  }

  uri(key: string): string {
    assertValidPrefix(key);
    return s3Uri(this.bucket, key);
  }

  parseUri(uri: string): string {
    return parseStorageUri(uri, this.bucket);
  }

  async exists(key: string, options: SignalOption = {}): Promise<boolean> {
    assertValidKey(key);
    try {
      await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }), { abortSignal: options.signal });
      return true;
    } catch (err) {
      if (httpStatus(err) === 404 && errorName(err) !== 'NoSuchBucket') return false;
      throw this.failure('check', key, err);
    }
  }

  async list(prefix: string, options: SignalOption = {}): Promise<StorageObject[]> {
    assertValidPrefix(prefix);
    const objects: StorageObject[] = [];
    try {
      // The paginator cannot take an AbortSignal: the pages are asked for here.
      let token: string | undefined;
      do {
        const page = await this.client.send(
          new ListObjectsV2Command({
            Bucket: this.bucket,
            MaxKeys: this.options.listPageSize ?? 1000,
            ...(prefix === '' ? {} : { Prefix: prefix }),
            ...(token ? { ContinuationToken: token } : {}),
          }),
          { abortSignal: options.signal },
        );
        for (const object of page.Contents ?? []) {
          if (object.Key !== undefined) objects.push({ key: object.Key, size: object.Size ?? 0 });
        }
        token = page.IsTruncated ? page.NextContinuationToken : undefined;
      } while (token);
    } catch (err) {
      throw this.failure('list', prefix, err);
    }
    return objects;
  }

  async downloadFile(key: string, destPath: string, options: DownloadFileOptions = {}): Promise<number> {
    assertValidKey(key);
    const write = <T>(fn: (path: string) => Promise<T>): Promise<T> => (options.inPlace ? fn(destPath) : writeAtomically(destPath, fn));
    for (let attempt = 1; ; attempt++) {
      let receivingBody = false;
      try {
        return await write(async (path) => {
          const response = await this.getter.get(key, { signal: options.signal });
          receivingBody = true;
          const expected = response.contentLength;
          let size: number;
          if (expected !== undefined && expected <= SMALL_OBJECT) {
            // One buffer and one write: a dataset of many small images is mostly per-file overhead.
            const bytes = Buffer.from(await response.body.arrayBuffer());
            size = bytes.length;
            if (size === expected) await writeFile(path, bytes);
          } else {
            const file = createWriteStream(path);
            await pipeline(response.body, file, { signal: options.signal });
            size = file.bytesWritten;
          }
          if (expected !== undefined && size !== expected) throw new Error(`received ${size} of ${expected} bytes`);
          return size;
        });
      } catch (err) {
        if (!receivingBody || attempt >= BODY_ATTEMPTS || options.signal?.aborted) throw this.failure('download', key, err);
        log().warn(`Download of ${this.uri(key)} broke off (${redact((err as Error).message)}); trying again (${attempt + 1}/${BODY_ATTEMPTS})`);
        await sleep(1_000 * attempt);
      }
    }
  }

  async openObject(key: string, options: SignalOption = {}): Promise<ObjectReader> {
    assertValidKey(key);
    const { signal } = options;
    let head: HeadObjectCommandOutput;
    try {
      head = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }), { abortSignal: signal });
    } catch (err) {
      throw this.failure('download', key, err);
    }
    const size = head.ContentLength ?? 0;
    const etag = head.ETag;
    const name = this.uri(key);
    const get = (start: number, end: number) => this.getter.get(key, { range: { start, end }, ifMatch: etag, signal });
    const failure = (err: unknown): StorageError =>
      httpStatus(err) === 412
        ? new StorageError(`${name} changed while it was being downloaded`, { key, hint: 'Run the job again once the upload has finished.', cause: err })
        : this.failure('download', key, err);
    return {
      name,
      size,
      read: async (start, end) => {
        if (end <= start) return Buffer.alloc(0);
        try {
          const response = await get(start, end);
          const bytes = Buffer.from(await response.body.arrayBuffer());
          if (bytes.length !== end - start) throw new Error(`asked for bytes ${start}-${end - 1}, received ${bytes.length}`);
          return bytes;
        } catch (err) {
          throw failure(err);
        }
      },
      stream: (start, end) => this.streamRange(key, start, end, get, failure, signal),
    };
  }

  /**
   * Bytes [start, end) of an object. When the body breaks off, the rest is asked for again from
   * the first missing byte; BODY_ATTEMPTS breaks in a row without a byte of progress give up.
   */
  private async *streamRange(
    key: string,
    start: number,
    end: number,
    get: (start: number, end: number) => Promise<GetResponse>,
    failure: (err: unknown) => StorageError,
    signal: AbortSignal | undefined,
  ): AsyncGenerator<Buffer> {
    let position = start;
    let fruitless = 0;
    while (position < end) {
      const before = position;
      let receivingBody = false;
      try {
        const response = await get(position, end);
        receivingBody = true;
        for await (const chunk of response.body) {
          const bytes = chunk as Buffer;
          // A server that ignores Range answers with the whole object: never pass on bytes past `end`.
          const usable = Math.min(bytes.length, end - position);
          position += usable;
          yield usable === bytes.length ? bytes : bytes.subarray(0, usable);
          if (position >= end) break;
        }
        if (position < end) throw new Error(`the body ended at byte ${position} of ${start}-${end - 1}`);
      } catch (err) {
        if (err instanceof StorageError || !receivingBody || signal?.aborted) throw err instanceof StorageError ? err : failure(err);
        fruitless = position > before ? 1 : fruitless + 1;
        if (fruitless >= BODY_ATTEMPTS) throw failure(err);
        log().warn(
          `Download of ${this.uri(key)} broke off at byte ${position} (${redact((err as Error).message)}); continuing from there (${fruitless + 1}/${BODY_ATTEMPTS})`,
        );
        await sleep(500 * fruitless);
      }
    }
  }

  async uploadFile(localPath: string, key: string, options: UploadOptions = {}): Promise<string> {
    assertValidKey(key);
    try {
      if (!(await stat(localPath)).isFile()) throw new Error('not a regular file');
    } catch (err) {
      const reason = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'the file does not exist' : (err as Error).message;
      throw new StorageError(`Cannot upload ${localPath} to ${this.uri(key)}: ${reason}`, { key, cause: err });
    }
    const upload = new Upload({
      client: this.client,
      params: { Bucket: this.bucket, Key: key, Body: createReadStream(localPath), ContentType: options.contentType ?? guessContentType(localPath) },
      partSize: this.options.multipartPartSize ?? DEFAULT_PART_SIZE,
      queueSize: 4,
      leavePartsOnError: false,
    });
    const abort = () => void upload.abort().catch(() => {});
    options.signal?.addEventListener('abort', abort, { once: true });
    try {
      options.signal?.throwIfAborted();
      await upload.done();
    } catch (err) {
      throw this.failure('upload', key, err);
    } finally {
      options.signal?.removeEventListener('abort', abort);
    }
    return this.uri(key);
  }

  async putBytes(key: string, body: Buffer, options: UploadOptions = {}): Promise<string> {
    assertValidKey(key);
    try {
      await this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key: key, Body: body, ContentType: options.contentType ?? guessContentType(key) }), {
        abortSignal: options.signal,
      });
    } catch (err) {
      throw this.failure('upload', key, err);
    }
    return this.uri(key);
  }

  protected async getBytes(key: string, options: SignalOption = {}): Promise<Buffer> {
    assertValidKey(key);
    try {
      const response = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }), { abortSignal: options.signal });
      return Buffer.from(await (response.Body as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray());
    } catch (err) {
      throw this.failure('download', key, err);
    }
  }

  /** An SDK or network failure as a StorageError that says what to do. Never includes credentials. */
  private failure(action: 'check' | 'list' | 'download' | 'upload', key: string, err: unknown): StorageError {
    if (err instanceof StorageError) return err;
    const name = errorName(err);
    const status = httpStatus(err);
    const target = this.uri(key);
    const what = `Could not ${action} ${target}`;
    const code = (err as NodeJS.ErrnoException).code;
    const detail = redact(`${code ?? name}${status ? ` (HTTP ${status})` : ''}: ${(err as Error).message ?? String(err)}`);
    const keys =
      this.credentialSource === 'default chain'
        ? "the pod's role (IRSA / EKS Pod Identity / instance profile) or AWS_PROFILE, or set AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY"
        : this.type === 'r2'
          ? 'R2_ACCESS_KEY_ID / R2_SECRET_ACCESS_KEY'
          : 'AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN for temporary keys; or R2_ACCESS_KEY_ID / R2_SECRET_ACCESS_KEY)';
    const options = { key, cause: err };
    if (isAbort(err)) return new StorageError(`${what}: cancelled`, { ...options, hint: 'The job was asked to stop.' });

    if (name === 'NoSuchKey' || (status === 404 && action !== 'list' && name !== 'NoSuchBucket')) return this.notFound(key, err);
    if (name === 'NoSuchBucket') {
      return new StorageError(`${what}: bucket "${this.bucket}" does not exist at ${this.describe()}`, {
        ...options,
        hint: 'Create the bucket, or set BUCKET_NAME to an existing one.',
      });
    }
    // Credentials the storage refuses stay refused: the job fails with a code the platform does
    // not retry (retrying with the same environment cannot help).
    const denied = { ...options, exitCode: ExitCode.storageAccessDenied };
    if (name === 'CredentialsProviderError') {
      return new StorageError(`${what}: no storage credentials: ${detail}`, { ...denied, hint: `Give the job credentials: ${keys}.` });
    }
    if (name === 'InvalidAccessKeyId' || name === 'SignatureDoesNotMatch' || name === 'InvalidToken' || name === 'ExpiredToken') {
      return new StorageError(`${what}: the storage rejected the credentials (${name})`, { ...denied, hint: `Check ${keys} for ${this.describe()}.` });
    }
    if (status === 401 || status === 403 || name === 'AccessDenied' || name === 'Forbidden' || name === 'Unauthorized') {
      const code = name === 'Unknown' || name === 'Forbidden' ? '' : `${name}, `; // HEAD answers carry no error code
      return new StorageError(`${what}: access denied (${code}HTTP ${status ?? 403})`, {
        ...denied,
        hint: `Check ${keys}, and that they may ${action === 'upload' ? 'write to' : 'read and list'} bucket "${this.bucket}". (S3 also answers 403 for a missing object when the key may not list the bucket.)`,
      });
    }
    if (!(err instanceof S3ServiceException)) {
      return new StorageError(`${what}: cannot reach ${this.describe()} (${detail})`, {
        ...options,
        transient: true,
        hint: 'Check S3_ENDPOINT (or R2_ENDPOINT) and the network.',
      });
    }
    const transient = (status !== undefined && TRANSIENT_STATUS.has(status)) || THROTTLING.has(name);
    return new StorageError(`${what}: ${detail}`, {
      ...options,
      transient,
      hint: transient ? 'The storage service failed; retrying later may succeed.' : 'See the storage error above.',
    });
  }
}

function isAbort(err: unknown): boolean {
  const name = (err as { name?: string })?.name;
  return name === 'AbortError' || name === 'RequestAbortedError';
}

function isAwsEndpoint(endpoint: string): boolean {
  try {
    const host = new URL(endpoint).hostname;
    return host.endsWith('.amazonaws.com') || host.endsWith('.amazonaws.com.cn');
  } catch {
    return false;
  }
}

function guessContentType(path: string): string {
  return CONTENT_TYPES[extname(path).toLowerCase()] ?? 'application/octet-stream';
}

function errorName(err: unknown): string {
  return (err as { name?: string; Code?: string }).Code ?? (err as { name?: string }).name ?? 'Error';
}

function httpStatus(err: unknown): number | undefined {
  return (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
}
