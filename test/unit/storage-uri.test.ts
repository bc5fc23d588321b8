import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { ConfigError, StorageError } from '../../src/errors.js';
import { createStorage, parseStorageUri, resolveInside } from '../../src/storage/index.js';

// Constructing an S3 storage opens no connection, so these run without a server.
const s3 = createStorage({
  type: 'minio',
  endpoint: 'http://127.0.0.1:9',
  accessKeyId: 'AKIDEXAMPLE',
  secretAccessKey: 'not-a-real-secret-1234',
  bucket: 'jobs',
});
const root = resolve('/srv/vt-storage');
const local = createStorage({ type: 'local', root, bucket: 'jobs' });

function errorOf(fn: () => unknown): StorageError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(StorageError);
    return err as StorageError;
  }
  throw new Error('expected a StorageError');
}

describe('S3 URIs', () => {
  it('round-trips keys through uri() and parseUri()', () => {
    expect(s3.uri('checkpoints/job-1/best.pt')).toBe('s3://jobs/checkpoints/job-1/best.pt');
    expect(s3.parseUri('s3://jobs/checkpoints/job-1/best.pt')).toBe('checkpoints/job-1/best.pt');
  });

  it('accepts a bare key as it is', () => {
    expect(s3.parseUri('datasets/d1.zip')).toBe('datasets/d1.zip');
  });

  it('refuses another bucket, naming both buckets', () => {
    const err = errorOf(() => s3.parseUri('s3://other-bucket/checkpoints/x.pt'));
    expect(err.message).toContain('"other-bucket"');
    expect(err.message).toContain('"jobs"');
    expect(err.hint).toContain('BUCKET_NAME');
  });

  it('refuses a bucket without a key, and keys that climb out', () => {
    expect(errorOf(() => s3.parseUri('s3://jobs')).message).toContain('no object key');
    expect(errorOf(() => s3.parseUri('s3://jobs/')).message).toContain('no object key');
    expect(errorOf(() => s3.parseUri('s3://jobs/a/../../b')).message).toContain('".."');
    expect(errorOf(() => s3.parseUri('/absolute/key')).message).toContain('starts with "/"');
  });

  it('refuses other schemes without printing the query string', () => {
    const err = errorOf(() => s3.parseUri('https://host.example/w.pt?X-Amz-Signature=deadbeefcafe'));
    expect(err.message).toContain('https://host.example/w.pt');
    expect(err.message).not.toContain('deadbeefcafe');
    expect(errorOf(() => s3.parseUri(pathToFileURL('/tmp/x').href)).message).toContain('expected s3://');
  });

  it('describes the storage without credentials', () => {
    expect(s3.describe()).toBe('s3://jobs at http://127.0.0.1:9');
    expect(s3.describe()).not.toContain('not-a-real-secret');
  });
});

describe('local URIs', () => {
  it('gives file:// URIs and reads them back', () => {
    const uri = local.uri('checkpoints/job-1/best.pt');
    expect(uri).toBe(pathToFileURL(`${root}/checkpoints/job-1/best.pt`).href);
    expect(local.parseUri(uri)).toBe('checkpoints/job-1/best.pt');
  });

  it('maps s3:// URIs of its bucket into the folder', () => {
    expect(local.parseUri('s3://jobs/datasets/d1.zip')).toBe('datasets/d1.zip');
    expect(errorOf(() => local.parseUri('s3://elsewhere/datasets/d1.zip')).message).toContain('"elsewhere"');
  });

  it('refuses file:// paths outside its folder', () => {
    expect(errorOf(() => local.parseUri(pathToFileURL('/etc/passwd').href)).message).toContain('outside the local storage folder');
    expect(errorOf(() => local.parseUri(pathToFileURL(root).href)).message).toContain('outside');
  });

  it('without a bucket, says why an s3:// URI cannot be resolved', () => {
    const bucketless = createStorage({ type: 'local', root });
    expect(errorOf(() => bucketless.parseUri('s3://jobs/a.json')).message).toContain('no bucket');
    expect(() => parseStorageUri('s3://jobs/a.json', undefined, root)).toThrow(StorageError);
  });
});

describe('resolveInside', () => {
  it.each([
    ['images/a.jpg', `${root}/images/a.jpg`],
    ['./images//a.jpg', `${root}/images/a.jpg`],
  ])('keeps %j inside', (name, expected) => {
    expect(resolveInside(root, name)).toBe(expected);
  });

  it.each(['../evil', 'images/../../evil', '/etc/passwd', 'C:/evil', '..\\evil', 'a\\..\\..\\evil', '', '.', 'a/\0b'])('refuses %j', (name) => {
    expect(resolveInside(root, name)).toBeUndefined();
  });
});

describe('storage configuration', () => {
  it('requires an endpoint for R2 and MinIO, and an http(s) one', () => {
    expect(() => createStorage({ type: 'r2', accessKeyId: 'a', secretAccessKey: 'b', bucket: 'c' })).toThrow(ConfigError);
    expect(() => createStorage({ type: 'minio', endpoint: 'ftp://x', accessKeyId: 'a', secretAccessKey: 'b', bucket: 'c' })).toThrow(/http/);
  });

  it('refuses a multipart part size below the S3 minimum', () => {
    expect(() => createStorage({ type: 's3', accessKeyId: 'a', secretAccessKey: 'b', bucket: 'c' }, { multipartPartSize: 1024 })).toThrow(/5 MiB/);
  });
});
