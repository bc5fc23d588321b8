import { existsSync, readdirSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ConfigError, DatasetError, StorageError } from '../../src/errors.js';
import { createStorage, createZip, type Storage } from '../../src/storage/index.js';
import type { StagedAnnotations } from '../../src/storage/types.js';

let work: string;
let root: string;
let storage: Storage;
beforeEach(async () => {
  work = await mkdtemp(join(tmpdir(), 'vt-local-storage-'));
  root = join(work, 'bucket');
  storage = createStorage({ type: 'local', root, bucket: 'jobs' }, { scratchDir: join(work, 'scratch') });
  await mkdir(join(work, 'scratch'));
});
afterEach(async () => {
  await rm(work, { recursive: true, force: true });
});

describe('local storage', () => {
  it('round-trips files and JSON under the same keys S3 would use', async () => {
    const source = join(work, 'weights.pt');
    await writeFile(source, 'weights');
    const uri = await storage.uploadFile(source, 'checkpoints/job-7/epoch-1.pt');
    expect(fileURLToPath(uri)).toBe(join(root, 'checkpoints', 'job-7', 'epoch-1.pt'));
    expect(await storage.exists('checkpoints/job-7/epoch-1.pt')).toBe(true);
    expect(await storage.exists('checkpoints/job-7/epoch-2.pt')).toBe(false);

    const dest = join(work, 'down', 'nested', 'w.pt');
    expect(await storage.downloadFile('checkpoints/job-7/epoch-1.pt', dest)).toBe(7);
    expect(await readFile(dest, 'utf8')).toBe('weights');

    await storage.putJson('test_runs/job-7/results.json', { map: 0.5, loss: Number.NaN });
    expect(await storage.getJson('test_runs/job-7/results.json')).toEqual({ map: 0.5, loss: null });
  });

  it('lists by key prefix, sorted, skipping files still being written', async () => {
    for (const key of ['logs/job-1/training.log', 'checkpoints/job-1/b.pt', 'checkpoints/job-1/a.pt', 'checkpoints/job-10/a.pt']) {
      await mkdir(join(root, ...key.split('/').slice(0, -1)), { recursive: true });
      await writeFile(join(root, ...key.split('/')), key);
    }
    await writeFile(join(root, 'checkpoints', 'job-1', '.c.pt.partial-0123abcd'), 'half');

    expect(await storage.list('checkpoints/job-1/')).toEqual([
      { key: 'checkpoints/job-1/a.pt', size: 22 },
      { key: 'checkpoints/job-1/b.pt', size: 22 },
    ]);
    expect((await storage.list('checkpoints/job-1')).map((o) => o.key)).toEqual([
      'checkpoints/job-1/a.pt',
      'checkpoints/job-1/b.pt',
      'checkpoints/job-10/a.pt',
    ]);
    expect((await storage.list('')).length).toBe(4);
    expect(await storage.list('nothing/here/')).toEqual([]);
  });

  it('says which object is missing', async () => {
    const err = await storage.downloadFile('checkpoints/none.pt', join(work, 'x')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StorageError);
    expect((err as StorageError).message).toContain('checkpoints/none.pt does not exist');
    expect((err as StorageError).key).toBe('checkpoints/none.pt');
    await expect(storage.getJson('none.json')).rejects.toThrow(/none.json does not exist/);
    await expect(storage.uploadFile(join(work, 'no-such-file'), 'a/b')).rejects.toThrow(/the file does not exist/);
  });

  it('uploads a snapshot copy and removes it afterwards', async () => {
    const source = join(work, 'last.pt');
    await writeFile(source, Buffer.alloc(100_000, 7));
    await storage.uploadSnapshot(source, 'checkpoints/job-1/last.pt');
    expect((await readFile(join(root, 'checkpoints', 'job-1', 'last.pt'))).equals(Buffer.alloc(100_000, 7))).toBe(true);
    expect(await readdir(join(work, 'scratch'))).toEqual([]);
    await expect(storage.uploadSnapshot(join(work, 'gone.pt'), 'x/gone.pt')).rejects.toThrow(/the file does not exist/);
  });

  it('refuses keys that would leave its folder', async () => {
    await expect(storage.putJson('../outside.json', {})).rejects.toThrow(StorageError);
    await expect(storage.exists('a/../../b')).rejects.toThrow(/"\.\." segment/);
    expect(existsSync(join(work, 'outside.json'))).toBe(false);
  });
});

describe('downloadDataset (local storage)', () => {
  const annotations = JSON.stringify({ format_version: '1.0', images: [{ id: 1, file_name: 'a.jpg' }] });

  async function putObject(key: string, content: string | Buffer): Promise<void> {
    const path = join(root, ...key.split('/'));
    await mkdir(join(path, '..'), { recursive: true });
    await writeFile(path, content);
  }

  it('extracts datasets/{id}.zip, finding the single top folder', async () => {
    await mkdir(join(root, 'datasets'), { recursive: true });
    await createZip(
      [
        { name: 'my-set/annotations.json', data: annotations },
        { name: 'my-set/images/a.jpg', data: 'jpeg-bytes' },
        { name: '__MACOSX/my-set/._a.jpg', data: 'junk' },
      ],
      join(root, 'datasets', 'd1.zip'),
    );
    const dest = join(work, 'dataset');
    const result = await storage.downloadDataset('d1', dest);
    expect(result).toMatchObject({ root: join(dest, 'my-set'), source: 'zip', files: 3 });
    expect(await readFile(join(result.root, 'images', 'a.jpg'), 'utf8')).toBe('jpeg-bytes');
    // Neither the staging folder nor the downloaded zip stays behind.
    expect((await readdir(work)).sort()).toEqual(['bucket', 'dataset', 'scratch']);
  });

  it('falls back to the datasets/{id}/ prefix, leaving other snapshots out', async () => {
    await putObject('datasets/d2/annotations.json', annotations);
    await putObject('datasets/d2/images/a.jpg', 'jpeg-bytes');
    await putObject('datasets/d2/snapshots/old.json', '{}');
    await putObject('datasets/d20/annotations.json', 'another dataset');
    const dest = join(work, 'dataset');
    const result = await storage.downloadDataset('d2', dest);
    expect(result).toEqual({ root: dest, source: 'prefix', files: 2, bytes: annotations.length + 10 });
    expect(existsSync(join(dest, 'snapshots'))).toBe(false);
  });

  it('puts the snapshot in place of annotations.json and keeps the original beside it', async () => {
    await putObject('datasets/d3/annotations.json', annotations);
    await putObject('datasets/d3/images/a.jpg', 'jpeg-bytes');
    await putObject('datasets/d3/snapshots/job-1.json', '{"frozen":true}');
    const result = await storage.downloadDataset('d3', join(work, 'dataset'), { snapshotId: 'job-1' });
    expect(result.snapshotKey).toBe('datasets/d3/snapshots/job-1.json');
    expect(await readFile(join(result.root, 'annotations.json'), 'utf8')).toBe('{"frozen":true}');
    expect(await readFile(join(result.root, 'annotations.original.json'), 'utf8')).toBe(annotations);
  });

  describe('onAnnotations: the annotations before the images', () => {
    /** Records each call with what the staged file held and whether the images had all arrived by then. */
    function recorder() {
      const calls: Array<{ root: string; text: string; imagesThen: number }> = [];
      const onAnnotations = async (staged: StagedAnnotations) => {
        const images = join(staged.path, '..', 'images');
        const imagesThen = existsSync(images) ? readdirSync(images).length : 0;
        calls.push({ root: staged.root, text: await readFile(staged.path, 'utf8'), imagesThen });
      };
      return { calls, onAnnotations };
    }

    it('hands over annotations.json, readable where it is staged, and the root it will have; the result is unchanged', async () => {
      await putObject('datasets/e1/annotations.json', annotations);
      for (let i = 0; i < 40; i++) await putObject(`datasets/e1/images/${i}.jpg`, `jpeg-${i}`);
      const dest = join(work, 'dataset');
      const { calls, onAnnotations } = recorder();
      const result = await storage.downloadDataset('e1', dest, { onAnnotations });
      expect(calls).toEqual([{ root: dest, text: annotations, imagesThen: 0 }]);
      expect(result).toEqual({ root: dest, source: 'prefix', files: 41, bytes: annotations.length + 40 * 6 + 30 });
      expect(await readFile(join(dest, 'images', '39.jpg'), 'utf8')).toBe('jpeg-39');
    });

    it('with SNAPSHOT_ID hands over the snapshot; the own file lands as annotations.original.json, as without the hook', async () => {
      await putObject('datasets/e2/annotations.json', annotations);
      await putObject('datasets/e2/images/a.jpg', 'jpeg-bytes');
      await putObject('datasets/e2/snapshots/job-1.json', '{"frozen":true}');
      const { calls, onAnnotations } = recorder();
      const result = await storage.downloadDataset('e2', join(work, 'dataset'), { snapshotId: 'job-1', onAnnotations });
      expect(calls.map((c) => c.text)).toEqual(['{"frozen":true}']);
      expect(result).toMatchObject({ files: 2, bytes: annotations.length + 10, snapshotKey: 'datasets/e2/snapshots/job-1.json' });
      expect(await readFile(join(result.root, 'annotations.json'), 'utf8')).toBe('{"frozen":true}');
      expect(await readFile(join(result.root, 'annotations.original.json'), 'utf8')).toBe(annotations);
    });

    it('is not called for files wrapped in a folder, or an own annotations.original.json a snapshot would overwrite', async () => {
      await putObject('datasets/wrapped/set/annotations.json', annotations);
      await putObject('datasets/own/annotations.json', annotations);
      await putObject('datasets/own/annotations.original.json', 'older');
      await putObject('datasets/own/snapshots/s.json', '{"frozen":true}');
      const { calls, onAnnotations } = recorder();
      const wrapped = await storage.downloadDataset('wrapped', join(work, 'w'), { onAnnotations });
      expect(wrapped.root).toBe(join(work, 'w', 'set'));
      await storage.downloadDataset('own', join(work, 'o'), { snapshotId: 's', onAnnotations });
      expect(calls).toEqual([]);
    });

    it('a zip: annotations.json (at the top, or in the one folder that wraps everything) is extracted first and handed over; not with SNAPSHOT_ID', async () => {
      await mkdir(join(root, 'datasets'), { recursive: true });
      const images = Array.from({ length: 30 }, (_, i) => ({ name: `images/${i}.jpg`, data: `jpeg-${i}` }));
      // The annotations last in the archive: extracted first all the same.
      await createZip([...images, { name: 'annotations.json', data: annotations }], join(root, 'datasets', 'z.zip'));
      await createZip(
        [...images.map((e) => ({ ...e, name: `set/${e.name}` })), { name: 'set/annotations.json', data: annotations }, { name: '__MACOSX/._x', data: 'x' }],
        join(root, 'datasets', 'zw.zip'),
      );
      await putObject('datasets/zs/snapshots/s.json', '{"frozen":true}');
      await createZip([...images, { name: 'annotations.json', data: annotations }], join(root, 'datasets', 'zs.zip'));
      const { calls, onAnnotations } = recorder();
      const top = await storage.downloadDataset('z', join(work, 'z'), { onAnnotations });
      const wrapped = await storage.downloadDataset('zw', join(work, 'zw'), { onAnnotations });
      expect(calls).toEqual([
        { root: join(work, 'z'), text: annotations, imagesThen: 0 },
        { root: join(work, 'zw', 'set'), text: annotations, imagesThen: 0 },
      ]);
      // The result as without the hook: every entry extracted once, counted once.
      expect([top.root, top.files, top.bytes]).toEqual([join(work, 'z'), 31, annotations.length + 10 * 6 + 20 * 7]);
      expect(wrapped.root).toBe(join(work, 'zw', 'set'));
      expect(await readFile(join(work, 'z', 'images', '29.jpg'), 'utf8')).toBe('jpeg-29');
      await storage.downloadDataset('zs', join(work, 'zs'), { snapshotId: 's', onAnnotations });
      expect(calls).toHaveLength(2);
    });

    it('a hook that throws or rejects does not touch the download', async () => {
      await putObject('datasets/e3/annotations.json', annotations);
      await putObject('datasets/e3/images/a.jpg', 'jpeg-bytes');
      const thrown = await storage.downloadDataset('e3', join(work, 'd1'), {
        onAnnotations: () => {
          throw new Error('boom');
        },
      });
      const rejected = await storage.downloadDataset('e3', join(work, 'd2'), { onAnnotations: () => Promise.reject(new Error('boom')) });
      expect([thrown.files, rejected.files]).toEqual([2, 2]);
    });
  });

  it('names both places it looked when the dataset is missing', async () => {
    const err = await storage.downloadDataset('nope', join(work, 'dataset')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DatasetError);
    const text = (err as DatasetError).describe();
    expect(text).toContain('Dataset "nope" not found');
    expect(text).toContain('datasets/nope.zip');
    expect(text).toContain('datasets/nope/');
    expect(text).toContain(root);
    expect(existsSync(join(work, 'dataset'))).toBe(false);
  });

  it('says when the snapshot is missing', async () => {
    await putObject('datasets/d4/annotations.json', annotations);
    await expect(storage.downloadDataset('d4', join(work, 'dataset'), { snapshotId: 'missing' })).rejects.toThrow(
      /Snapshot "missing" of dataset "d4" not found/,
    );
  });

  it('leaves nothing behind when the zip is refused', async () => {
    await mkdir(join(root, 'datasets'), { recursive: true });
    await createZip([{ name: 'annotations.json', data: annotations }], join(work, 'tmp.zip'));
    // yazl writes any mode it is given, so a symlink entry is easy to make.
    const { ZipFile } = await import('yazl');
    const zip = new ZipFile();
    zip.addBuffer(Buffer.from('annotations'), 'annotations.json');
    zip.addBuffer(Buffer.from('/etc/passwd'), 'images/link.jpg', { mode: 0o120777 });
    zip.end();
    const chunks: Buffer[] = [];
    for await (const chunk of zip.outputStream) chunks.push(chunk as Buffer);
    await writeFile(join(root, 'datasets', 'evil.zip'), Buffer.concat(chunks));

    await expect(storage.downloadDataset('evil', join(work, 'dataset'))).rejects.toThrow(/"images\/link.jpg" is a symbolic link/);
    expect((await readdir(work)).sort()).toEqual(['bucket', 'scratch', 'tmp.zip']);
  });

  it('refuses a destination that already holds files, and ids that are not plain names', async () => {
    await putObject('datasets/d5/annotations.json', annotations);
    await mkdir(join(work, 'full'));
    await writeFile(join(work, 'full', 'x'), 'x');
    await expect(storage.downloadDataset('d5', join(work, 'full'))).rejects.toThrow(/not empty/);
    await expect(storage.downloadDataset('../d5', join(work, 'dataset'))).rejects.toThrow(ConfigError);
    await expect(storage.downloadDataset('d5', join(work, 'dataset'), { snapshotId: 'a/b' })).rejects.toThrow(/SNAPSHOT_ID/);
    // An empty folder is fine: it is replaced by the downloaded one.
    await mkdir(join(work, 'empty'));
    expect((await storage.downloadDataset('d5', join(work, 'empty'))).files).toBe(1);
  });
});
