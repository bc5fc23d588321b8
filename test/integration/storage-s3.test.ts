import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HeadObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DatasetError, ExitCode, StorageError } from '../../src/errors.js';
import { createStorage, createZip, type Storage } from '../../src/storage/index.js';
import { useS3Server } from '../helpers/s3.js';

const s3 = useS3Server();
let work: string;
let storage: Storage;
beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'vt-s3-storage-'));
  storage = s3.storage();
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

const sha256 = (data: Buffer): string => createHash('sha256').update(data).digest('hex');

async function failure(promise: Promise<unknown>): Promise<StorageError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(StorageError);
  return err as StorageError;
}

describe('S3 storage against SeaweedFS', () => {
  it('uploads, checks, downloads and reads JSON back', async () => {
    const source = join(work, 'epoch-1.pt');
    await writeFile(source, 'checkpoint bytes');
    expect(await storage.uploadFile(source, 'checkpoints/job-1/epoch-1.pt')).toBe(`s3://${s3.server.bucket}/checkpoints/job-1/epoch-1.pt`);
    expect(await storage.exists('checkpoints/job-1/epoch-1.pt')).toBe(true);
    expect(await storage.exists('checkpoints/job-1/epoch-2.pt')).toBe(false);

    const destDir = join(work, 'downloads');
    expect(await storage.downloadFile('checkpoints/job-1/epoch-1.pt', join(destDir, 'w.pt'))).toBe(16);
    expect(await readFile(join(destDir, 'w.pt'), 'utf8')).toBe('checkpoint bytes');
    expect(await readdir(destDir)).toEqual(['w.pt']); // no temporary file left beside it

    await storage.putJson('test_runs/job-1/results.json', { accuracy: 0.9, loss: Number.POSITIVE_INFINITY });
    expect(await storage.getJson('test_runs/job-1/results.json')).toEqual({ accuracy: 0.9, loss: null });
  });

  it('downloads keys with spaces, unicode and reserved characters (signed GETs outside the SDK)', async () => {
    const names = ['images/a b (1).jpg', 'images/élan+ü~.png', "images/it's*!@$=,;&.png", 'images/%41.png', 'images/日本/画像.jpg'];
    for (const [i, name] of names.entries()) {
      await writeFile(join(work, 'special.bin'), `content ${i}`);
      await storage.uploadFile(join(work, 'special.bin'), `special/${name}`);
    }
    for (const [i, name] of names.entries()) {
      const dest = join(work, 'special-out', `${i}.bin`);
      expect(await storage.downloadFile(`special/${name}`, dest)).toBe(`content ${i}`.length);
      expect(await readFile(dest, 'utf8')).toBe(`content ${i}`);
      const reader = await storage.openObject(`special/${name}`);
      expect((await reader.read(0, reader.size)).toString()).toBe(`content ${i}`);
    }
    const missing = await failure(storage.downloadFile('special/images/absent.jpg', join(work, 'special-out', 'x.bin')));
    expect(missing.message).toBe(`s3://${s3.server.bucket}/special/images/absent.jpg does not exist`);
  });

  it('lists every page of a prefix', async () => {
    const paged = s3.storage({ listPageSize: 25 });
    const keys = Array.from({ length: 130 }, (_, i) => `listing/item-${String(i).padStart(3, '0')}.json`);
    for (let i = 0; i < keys.length; i += 20) await Promise.all(keys.slice(i, i + 20).map((key) => paged.putJson(key, { key })));
    await paged.putJson('listing-other/x.json', {});

    const listed = await paged.list('listing/');
    expect(listed.map((o) => o.key)).toEqual(keys);
    expect(listed.every((o) => o.size > 0)).toBe(true);
    expect((await paged.list('listing')).length).toBe(131);
  });

  it('uploads a large file in parts and downloads it identical', async () => {
    const multipart = s3.storage({ multipartPartSize: 5 * 1024 * 1024 });
    const content = randomBytes(12 * 1024 * 1024 + 123);
    const source = join(work, 'big.bin');
    await writeFile(source, content);
    await multipart.uploadFile(source, 'checkpoints/job-2/best.pt');

    // A multipart object's ETag ends in "-{parts}": 5 + 5 + 2 MiB.
    const client = new S3Client({ endpoint: s3.server.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: s3.server });
    const head = await client.send(new HeadObjectCommand({ Bucket: s3.server.bucket, Key: 'checkpoints/job-2/best.pt' }));
    client.destroy();
    expect(head.ETag).toMatch(/-3"?$/);
    expect(head.ContentLength).toBe(content.length);

    const dest = join(work, 'big-copy.bin');
    expect(await multipart.downloadFile('checkpoints/job-2/best.pt', dest)).toBe(content.length);
    expect(sha256(await readFile(dest))).toBe(sha256(content));
  });

  it('uploads a snapshot of a file', async () => {
    const source = join(work, 'last.pt');
    await writeFile(source, 'last epoch');
    expect(await storage.uploadSnapshot(source, 'checkpoints/job-3/last.pt')).toBe(`s3://${s3.server.bucket}/checkpoints/job-3/last.pt`);
    await storage.downloadFile('checkpoints/job-3/last.pt', join(work, 'last-copy.pt'));
    expect(await readFile(join(work, 'last-copy.pt'), 'utf8')).toBe('last epoch');
  });

  it('says which object is missing', async () => {
    const err = await failure(storage.downloadFile('checkpoints/none.pt', join(work, 'none.pt')));
    expect(err.message).toBe(`s3://${s3.server.bucket}/checkpoints/none.pt does not exist`);
    expect(err.key).toBe('checkpoints/none.pt');
    expect((await failure(storage.getJson('none.json'))).message).toContain('none.json does not exist');
  });

  it('reports rejected credentials without the secret', async () => {
    const secret = 'wrong-secret-Zq8Xv2Lm5Np7';
    const badSecret = createStorage({ ...s3.config, secretAccessKey: secret }, { maxAttempts: 1 });
    const listing = await failure(badSecret.list('listing/'));
    expect(listing.message).toMatch(/rejected the credentials \(SignatureDoesNotMatch\)/);
    expect(listing.exitCode).toBe(ExitCode.storageAccessDenied);
    expect(listing.hint).toContain('AWS_SECRET_ACCESS_KEY');
    const source = join(work, 'small.txt');
    await writeFile(source, 'x');
    const upload = await failure(badSecret.uploadFile(source, 'x/small.txt'));
    await storage.uploadFile(source, 'x/small.txt');
    // Object GETs are signed outside the SDK (s3-get.ts): the same message.
    const download = await failure(badSecret.downloadFile('x/small.txt', join(work, 'bad-secret.txt')));
    expect(download.message).toMatch(/rejected the credentials \(SignatureDoesNotMatch\)/);
    for (const err of [listing, upload, download]) {
      expect(err.describe()).not.toContain(secret);
      expect(err.describe()).not.toContain(secret.slice(0, 10));
    }

    const badKey = createStorage({ ...s3.config, accessKeyId: 'AKIDOESNOTEXIST0001' }, { maxAttempts: 1 });
    expect((await failure(badKey.list(''))).message).toMatch(/rejected the credentials \(InvalidAccessKeyId\)/);
    // HEAD answers carry no error code, so a bad key on exists() can only be reported as a 403.
    const denied = await failure(badKey.exists('x.json'));
    expect(denied.message).toMatch(/access denied \(HTTP 403\)/);
    expect(denied.exitCode).toBe(ExitCode.storageAccessDenied);
  });

  it('names a missing bucket and an unreachable endpoint', async () => {
    const noBucket = createStorage({ ...s3.config, bucket: 'no-such-bucket-here' }, { maxAttempts: 1 });
    const err = await failure(noBucket.list(''));
    expect(err.message).toContain('bucket "no-such-bucket-here" does not exist');

    const unreachable = createStorage({ ...s3.config, endpoint: 'http://127.0.0.1:9' }, { maxAttempts: 1 });
    const down = await failure(unreachable.exists('x.json'));
    expect(down.message).toContain('cannot reach s3://');
    expect(down.message).toContain('ECONNREFUSED');
    const downGet = await failure(unreachable.downloadFile('x.json', join(work, 'unreachable.json')));
    expect(downGet.message).toContain('cannot reach s3://');
    expect(downGet.message).toContain('ECONNREFUSED');
    expect((await failure(noBucket.downloadFile('x.json', join(work, 'no-bucket.json')))).message).toContain('bucket "no-such-bucket-here" does not exist');
  });
});

describe('downloadDataset against SeaweedFS', () => {
  const annotations = JSON.stringify({ format_version: '1.0', images: [{ id: 1, file_name: 'a.png' }] });

  async function uploadBytes(key: string, content: string): Promise<void> {
    const path = join(work, 'upload', key);
    await mkdir(join(path, '..'), { recursive: true });
    await writeFile(path, content);
    await storage.uploadFile(path, key);
  }

  it('downloads and extracts datasets/{id}.zip', async () => {
    const zipPath = join(work, 'zipped.zip');
    await createZip(
      [{ name: 'annotations.json', data: annotations }, ...Array.from({ length: 5 }, (_, i) => ({ name: `images/${i}.png`, data: `png ${i}` }))],
      zipPath,
    );
    await storage.uploadFile(zipPath, 'datasets/zipped.zip');
    const dest = join(work, 'ds-zip');
    const result = await storage.downloadDataset('zipped', dest);
    expect(result).toEqual({ root: dest, source: 'zip', files: 6, bytes: annotations.length + 5 * 5 });
    expect(await readFile(join(dest, 'images', '3.png'), 'utf8')).toBe('png 3');
  });

  it('downloads the datasets/{id}/ prefix in parallel, with SNAPSHOT_ID applied', async () => {
    await uploadBytes('datasets/folder/annotations.json', annotations);
    for (let i = 0; i < 20; i++) await uploadBytes(`datasets/folder/images/${i}.png`, `png ${i}`);
    await uploadBytes('datasets/folder/snapshots/job-9.json', '{"snapshot":"job-9"}');
    const dest = join(work, 'ds-prefix');
    const result = await s3.storage({ downloadConcurrency: 4 }).downloadDataset('folder', dest, { snapshotId: 'job-9' });
    expect(result).toMatchObject({ root: dest, source: 'prefix', files: 21, snapshotKey: 'datasets/folder/snapshots/job-9.json' });
    expect((await readdir(join(dest, 'images'))).length).toBe(20);
    expect(await readFile(join(dest, 'annotations.json'), 'utf8')).toBe('{"snapshot":"job-9"}');
    expect(await readFile(join(dest, 'annotations.original.json'), 'utf8')).toBe(annotations);
  });

  it('says where it looked when the dataset is missing', async () => {
    const err = await storage.downloadDataset('absent', join(work, 'ds-absent')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DatasetError);
    const bucket = s3.server.bucket;
    expect((err as DatasetError).message).toBe(
      `Dataset "absent" not found in s3://${bucket} at ${s3.server.endpoint}: neither s3://${bucket}/datasets/absent.zip nor any object under s3://${bucket}/datasets/absent/ exists`,
    );
    expect((err as DatasetError).hint).toContain('Upload the dataset as datasets/absent.zip');
  });

  it('says when the snapshot is missing', async () => {
    await uploadBytes('datasets/nosnap/annotations.json', annotations);
    const err = await storage.downloadDataset('nosnap', join(work, 'ds-nosnap'), { snapshotId: 'gone' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DatasetError);
    expect((err as Error).message).toContain(`s3://${s3.server.bucket}/datasets/nosnap/snapshots/gone.json does not exist`);
  });
});
