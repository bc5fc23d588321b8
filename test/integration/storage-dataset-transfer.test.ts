/**
 * Dataset transfers from a real SeaweedFS under failure. Zips are extracted while they
 * download (ranged reads): the hostile archives are refused through that path as they are
 * from a local file, and a connection that breaks mid-way is resumed from the byte where it
 * stopped. Folder datasets (many objects, written in place in the staging folder) retry an
 * object whose connection broke. A download that cannot finish leaves neither the dataset
 * folder nor its staging folder behind.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, sep } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DatasetError, StorageError } from '../../src/errors.js';
import { createStorage, type Storage } from '../../src/storage/index.js';
import { RetryingStorage } from '../../src/storage/retrying.js';
import { useS3Server } from '../helpers/s3.js';
import { startTcpProxy, type TcpProxy } from '../helpers/tcp-proxy.js';
import { pseudoImageBytes, rawZip, type RawEntry } from '../helpers/zips.js';

const s3 = useS3Server();
let work: string;
let storage: Storage;
let proxy: TcpProxy;
/** The same bucket through the proxy, with few SDK retries so failures come quickly. */
let flaky: Storage;

const annotations = JSON.stringify({ format_version: '1.0', images: [{ id: 1, file_name: 'a.png' }] });
const sha = (data: Buffer | string): string => createHash('sha256').update(data).digest('hex');

/** About 14 MB: many small images, and two entries large enough to be inflated as a stream. */
const ENTRIES: RawEntry[] = [
  { name: 'annotations.json', data: annotations, deflate: true },
  ...Array.from({ length: 120 }, (_, i) => ({ name: `images/${i}.jpg`, data: pseudoImageBytes(40_000 + 97 * i, i + 1), deflate: i % 4 !== 0 })),
  { name: 'images/panorama.jpg', data: pseudoImageBytes(5 * 1024 * 1024, 7), deflate: true },
  { name: 'images/raw.bin', data: pseudoImageBytes(4 * 1024 * 1024, 8) },
];
const ZIP = rawZip(ENTRIES);

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'vt-zip-stream-'));
  storage = s3.storage();
  proxy = await startTcpProxy(Number(new URL(s3.server.endpoint).port));
  flaky = createStorage({ ...s3.config, endpoint: proxy.endpoint }, { maxAttempts: 2, downloadConcurrency: 3 });
  await upload('datasets/big.zip', ZIP);
});
afterEach(() => {
  proxy.cutAfter = () => undefined;
});
afterAll(async () => {
  await proxy?.close();
  await rm(work, { recursive: true, force: true });
});

async function upload(key: string, data: Buffer): Promise<void> {
  const path = join(work, 'upload', key);
  await rm(path, { force: true });
  await writeFile(join(work, 'upload.bin'), data);
  await storage.uploadFile(join(work, 'upload.bin'), key);
}

/** The dataset folder and its staging folder are both gone, and nothing else was written beside them. */
async function assertNothingLeft(dest: string): Promise<void> {
  expect(existsSync(dest)).toBe(false);
  expect(existsSync(`${dest}.partial`)).toBe(false);
  expect((await readdir(dirname(dest))).filter((name) => name.startsWith('ds-'))).toEqual([]);
}

/** Downloads through the proxy, which goes away once `afterBytes` have passed; then a fresh proxy for the next test. */
async function downloadWhileServerGoesAway(datasetId: string, dest: string, afterBytes: number): Promise<StorageError> {
  const start = proxy.stats.bytesToClients;
  const watch = setInterval(() => {
    if (proxy.stats.bytesToClients - start > afterBytes) proxy.goAway();
  }, 2);
  const err = await flaky
    .downloadDataset(datasetId, dest)
    .catch((e: unknown) => e)
    .finally(() => clearInterval(watch));
  await proxy.close();
  proxy = await startTcpProxy(Number(new URL(s3.server.endpoint).port));
  flaky = createStorage({ ...s3.config, endpoint: proxy.endpoint }, { maxAttempts: 2, downloadConcurrency: 3 });
  expect(err).toBeInstanceOf(StorageError);
  return err as StorageError;
}

async function expectIdentical(root: string): Promise<void> {
  for (const entry of ENTRIES) expect(sha(await readFile(join(root, entry.name))), entry.name).toBe(sha(Buffer.from(entry.data)));
}

describe('streamed extraction of datasets/{id}.zip from SeaweedFS', () => {
  it('extracts every entry identical, in several ranged runs at once', async () => {
    const dest = join(work, 'out', 'ds-big');
    const result = await s3.storage({ downloadConcurrency: 3 }).downloadDataset('big', dest);
    expect(result).toMatchObject({ root: dest, source: 'zip', files: ENTRIES.length });
    await expectIdentical(dest);
    expect(existsSync(`${dest}.partial`)).toBe(false);
  });

  it('resumes connections that break mid-body from the byte where they stopped', async () => {
    // The first four connections that carry more than 1 MB are cut there.
    let cuts = 0;
    proxy.cutAfter = () => (cuts++ < 4 ? 1024 * 1024 : undefined);
    const before = { ...proxy.stats };
    const dest = join(work, 'out', 'ds-resumed');
    const result = await flaky.downloadDataset('big', dest);
    expect(result.files).toBe(ENTRIES.length);
    await expectIdentical(dest);
    expect(proxy.stats.cuts - before.cuts).toBeGreaterThanOrEqual(2);
    // Resumed, not restarted: hardly more than the archive went over the wire.
    expect(proxy.stats.bytesToClients - before.bytesToClients).toBeLessThan(ZIP.length * 1.15);
  });

  it('a server that goes away mid-download: StorageError, no dataset folder and no staging folder left', async () => {
    const dest = join(work, 'out2', 'ds-gone');
    // Once a quarter of the archive has arrived, the server disappears.
    const err = await downloadWhileServerGoesAway('big', dest, ZIP.length / 4);
    expect((err as StorageError).message).toMatch(/big\.zip/);
    await assertNothingLeft(dest);
  });

  it('an object replaced during the download fails instead of mixing two versions', async () => {
    await upload('datasets/changing.zip', ZIP);
    const reader = await storage.openObject('datasets/changing.zip');
    await upload('datasets/changing.zip', rawZip(ENTRIES.slice(0, 10)));
    const err = await reader.read(0, 100).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StorageError);
    expect((err as Error).message).toContain('changed while it was being downloaded');
  });
});

describe('datasets/{id}/ prefixes (many objects) over a flaky connection', () => {
  const objects = [
    { key: 'annotations.json', data: Buffer.from(annotations) },
    ...Array.from({ length: 40 }, (_, i) => ({ key: `images/${i % 3}/${i}.jpg`, data: pseudoImageBytes(150_000 + i, 100 + i) })),
    // Above 1 MiB: streamed to disk rather than read whole.
    ...Array.from({ length: 2 }, (_, i) => ({ key: `images/large-${i}.jpg`, data: pseudoImageBytes(3 * 1024 * 1024, 200 + i) })),
  ];

  beforeAll(async () => {
    for (const object of objects) await upload(`datasets/folder/${object.key}`, object.data);
  });

  async function expectFolder(root: string): Promise<void> {
    for (const object of objects) expect(sha(await readFile(join(root, object.key))), object.key).toBe(sha(object.data));
  }

  it('retries objects whose connection broke mid-body, and gets every file identical', async () => {
    let cuts = 0;
    // Connections are reused across objects: cut four of them once they have carried 400 kB.
    proxy.cutAfter = () => (cuts++ < 4 ? 400_000 : undefined);
    const before = proxy.stats.cuts;
    const dest = join(work, 'out', 'ds-folder');
    const result = await flaky.downloadDataset('folder', dest);
    expect(result).toMatchObject({ source: 'prefix', files: objects.length });
    await expectFolder(dest);
    expect(proxy.stats.cuts - before).toBeGreaterThanOrEqual(2);
    expect((await readdir(join(dest, 'images', '0'))).every((name) => name.endsWith('.jpg'))).toBe(true); // no temporary files
  });

  it('many objects at once under one stop signal: no listener-leak warning, and the stop still cancels', async () => {
    // Every request in flight listens on the job's stop signal; 32 at once is legitimate, not a leak.
    const warnings: Error[] = [];
    const onWarning = (warning: Error) => warnings.push(warning);
    process.on('warning', onWarning);
    try {
      const stop = new AbortController();
      const wide = new RetryingStorage(s3.storage({ downloadConcurrency: 32 }), { budgetMs: 0, downloads: stop.signal });
      const result = await wide.downloadDataset('folder', join(work, 'out4', 'ds-folder-wide'));
      expect(result.files).toBe(objects.length);
      await mkdir(join(work, 'out5'), { recursive: true });
      const stopped = wide.downloadDataset('folder', join(work, 'out5', 'ds-folder-stopped')).catch((e: unknown) => e);
      setImmediate(() => stop.abort());
      expect(await stopped).toBeInstanceOf(Error);
      await assertNothingLeft(join(work, 'out5', 'ds-folder-stopped'));
      // Warnings are emitted on the next tick.
      await new Promise((resolve) => setImmediate(resolve));
    } finally {
      process.off('warning', onWarning);
    }
    expect(warnings.map((w) => `${w.name}: ${w.message}`)).toEqual([]);
  });

  it('a server that goes away mid-download: StorageError, nothing left', async () => {
    const dest = join(work, 'out3', 'ds-folder-gone');
    await downloadWhileServerGoesAway('folder', dest, 2_000_000);
    await assertNothingLeft(dest);
  });
});

describe('hostile zips through the streamed path: refused, nothing written outside the staging folder, nothing left', () => {
  const cases: Array<[string, RawEntry[], RegExp]> = [
    [
      'parent traversal',
      [
        { name: 'annotations.json', data: annotations },
        { name: '../../escaped.txt', data: 'pwned' },
      ],
      /"\.\.\/\.\.\/escaped\.txt" would be written outside the extraction folder/,
    ],
    ['absolute path', [{ name: '/tmp/vt-stream-absolute.txt', data: 'pwned' }], /would be written outside the extraction folder/],
    ['symbolic link', [{ name: 'images/link', data: '/etc/passwd', mode: 0o120777 }], /"images\/link" is a symbolic link/],
    [
      'zip bomb (inflates past its declared size)',
      [{ name: 'bomb.bin', data: Buffer.alloc(5_000_000), deflate: true, declaredSize: 1000 }],
      /"bomb\.bin" inflates to more than the 1000 bytes it declares \(zip bomb\)/,
    ],
    [
      'overlapping entries',
      [
        { name: 'a.bin', data: 'x'.repeat(500) },
        { name: 'b.bin', data: 'x'.repeat(500), sameDataAs: 0 },
      ],
      /overlaps/,
    ],
    [
      'local header naming another path',
      [
        { name: 'annotations.json', data: annotations },
        { name: 'images/a.jpg', data: 'pwned', localName: '../../../escaped.jpg' },
      ],
      /another name in its local header/,
    ],
  ];

  it.each(cases)('%s', async (label, entries, message) => {
    const id = `evil-${label.replace(/\W+/g, '-')}`;
    await upload(`datasets/${id}.zip`, rawZip(entries));
    const parent = join(work, 'hostile', id);
    const dest = join(parent, 'inner', 'ds-evil');
    const err = await storage.downloadDataset(id, dest).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DatasetError);
    expect((err as Error).message).toMatch(message);
    await assertNothingLeft(dest);
    // The escapes would have landed in `parent` or above it.
    const written = existsSync(parent) ? await readdir(parent, { recursive: true }) : [];
    expect(written.filter((name) => !name.startsWith(`inner${sep}`) && name !== 'inner')).toEqual([]);
    expect(existsSync(join(work, 'hostile', 'escaped.txt')) || existsSync(join(work, 'escaped.jpg')) || existsSync('/tmp/vt-stream-absolute.txt')).toBe(false);
  });
});
