/**
 * STORAGE_TYPE=local: a folder stands in for the bucket, holding the same object keys as files
 * (`datasets/x.zip` is `{root}/datasets/x.zip`). Used by the design's own integration test
 * (DATASET_PATH) and for running jobs on one machine without an object store.
 */
import { copyFile, readFile, stat, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { StorageError } from '../errors.js';
import { StorageBase } from './base.js';
import { fileObjectReader, isTempName, listFilesRecursive, writeAtomically } from './files.js';
import { assertValidKey, assertValidPrefix, parseStorageUri, resolveInside } from './keys.js';
import type { DownloadFileOptions, ObjectReader, SignalOption, StorageObject, StorageOptions, UploadOptions } from './types.js';

export class LocalStorage extends StorageBase {
  readonly type = 'local' as const;
  readonly root: string;
  readonly bucket: string | undefined;

  constructor(config: { root: string; bucket?: string | undefined }, options: StorageOptions = {}) {
    super(options);
    this.root = resolve(config.root);
    this.bucket = config.bucket;
  }

  describe(): string {
    return `local folder ${this.root}`;
  }

  async exists(key: string, options: SignalOption = {}): Promise<boolean> {
    options.signal?.throwIfAborted();
    try {
      return (await stat(this.pathOf(key))).isFile();
    } catch (err) {
      if (isMissing(err)) return false;
      throw this.failure('check', key, err);
    }
  }

  async list(prefix: string, options: SignalOption = {}): Promise<StorageObject[]> {
    assertValidPrefix(prefix);
    options.signal?.throwIfAborted();
    // Walk only the folder the prefix points into; the rest of the prefix filters names.
    const folder = prefix.slice(0, prefix.lastIndexOf('/') + 1);
    const base = folder === '' ? this.root : join(this.root, ...folder.split('/'));
    const names = (await listFilesRecursive(base)).filter((name) => !name.split('/').some(isTempName));
    const objects: StorageObject[] = [];
    for (const name of names) {
      const key = folder + name;
      if (!key.startsWith(prefix)) continue;
      objects.push({ key, size: (await stat(join(base, ...name.split('/')))).size });
    }
    return objects;
  }

  async downloadFile(key: string, destPath: string, options: DownloadFileOptions = {}): Promise<number> {
    const source = this.pathOf(key);
    options.signal?.throwIfAborted();
    try {
      if (options.inPlace) await copyFile(source, destPath);
      else await writeAtomically(destPath, (temp) => copyFile(source, temp));
      return (await stat(destPath)).size;
    } catch (err) {
      if (isMissing(err) && !(await this.exists(key))) throw this.notFound(key, err);
      throw this.failure('copy', key, err);
    }
  }

  async openObject(key: string, options: SignalOption = {}): Promise<ObjectReader> {
    const path = this.pathOf(key);
    options.signal?.throwIfAborted();
    let size: number;
    try {
      const info = await stat(path);
      if (!info.isFile()) throw Object.assign(new Error('not a file'), { code: 'ENOENT' });
      size = info.size;
    } catch (err) {
      if (isMissing(err)) throw this.notFound(key, err);
      throw this.failure('read', key, err);
    }
    return fileObjectReader(path, size, this.uri(key));
  }

  async uploadFile(localPath: string, key: string, options: UploadOptions = {}): Promise<string> {
    const target = this.pathOf(key);
    options.signal?.throwIfAborted();
    try {
      await writeAtomically(target, (temp) => copyFile(localPath, temp));
    } catch (err) {
      if (isMissing(err)) throw new StorageError(`Cannot store ${localPath} as ${this.uri(key)}: the file does not exist`, { key, cause: err });
      throw this.failure('write', key, err);
    }
    return this.uri(key);
  }

  uri(key: string): string {
    assertValidPrefix(key);
    const href = pathToFileURL(join(this.root, ...key.split('/').filter(Boolean))).href;
    return key.endsWith('/') ? `${href}/` : href;
  }

  parseUri(uri: string): string {
    return parseStorageUri(uri, this.bucket, this.root);
  }

  async putBytes(key: string, body: Buffer, options: UploadOptions = {}): Promise<string> {
    options.signal?.throwIfAborted();
    try {
      await writeAtomically(this.pathOf(key), (temp) => writeFile(temp, body));
    } catch (err) {
      throw this.failure('write', key, err);
    }
    return this.uri(key);
  }

  protected async getBytes(key: string, options: SignalOption = {}): Promise<Buffer> {
    options.signal?.throwIfAborted();
    try {
      return await readFile(this.pathOf(key));
    } catch (err) {
      if (isMissing(err)) throw this.notFound(key, err);
      throw this.failure('read', key, err);
    }
  }

  private pathOf(key: string): string {
    assertValidKey(key);
    const path = resolveInside(this.root, key);
    if (path === undefined) throw new StorageError(`Invalid object key ${JSON.stringify(key)}`, { key });
    return path;
  }

  private failure(action: string, key: string, err: unknown): StorageError {
    if (err instanceof StorageError) return err;
    return new StorageError(`Could not ${action} ${this.uri(key)}: ${(err as Error).message}`, {
      key,
      hint: `Check that ${this.root} exists and this process may read and write it.`,
      cause: err,
    });
  }
}

function isMissing(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}
