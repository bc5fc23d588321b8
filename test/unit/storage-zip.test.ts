import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32, deflateRawSync } from 'node:zlib';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DatasetError } from '../../src/errors.js';
import { createZip, extractZip } from '../../src/storage/zip.js';

/**
 * Writes a zip by hand, byte for byte, because well-behaved zip libraries (yazl included)
 * refuse to produce the malicious names these tests need.
 */
interface RawEntry {
  name: string;
  data: string | Buffer;
  /** Unix mode stored in the external attributes, e.g. 0o120777 for a symlink. */
  mode?: number;
  /** Deflate the data; `declaredSize` may then lie about the inflated size. */
  deflate?: boolean;
  declaredSize?: number;
}

function rawZip(entries: RawEntry[]): Buffer {
  const locals: Buffer[] = [];
  const centrals: Buffer[] = [];
  let offset = 0;
  for (const entry of entries) {
    const data = Buffer.from(entry.data);
    const stored = entry.deflate ? deflateRawSync(data) : data;
    const name = Buffer.from(entry.name, 'utf8');
    const size = entry.declaredSize ?? data.length;
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4);
    local.writeUInt16LE(0x0800, 6); // UTF-8 names
    local.writeUInt16LE(entry.deflate ? 8 : 0, 8);
    local.writeUInt16LE(0, 10);
    local.writeUInt16LE(0x21, 12); // 1980-01-01
    local.writeUInt32LE(crc32(data), 14);
    local.writeUInt32LE(stored.length, 18);
    local.writeUInt32LE(size, 22);
    local.writeUInt16LE(name.length, 26);
    local.writeUInt16LE(0, 28);
    const central = Buffer.alloc(46);
    central.writeUInt32LE(0x02014b50, 0);
    central.writeUInt16LE((3 << 8) | 20, 4); // made by Unix: external attributes hold a mode
    central.writeUInt16LE(20, 6);
    central.writeUInt16LE(0x0800, 8);
    central.writeUInt16LE(entry.deflate ? 8 : 0, 10);
    central.writeUInt16LE(0, 12);
    central.writeUInt16LE(0x21, 14);
    central.writeUInt32LE(crc32(data), 16);
    central.writeUInt32LE(stored.length, 20);
    central.writeUInt32LE(size, 24);
    central.writeUInt16LE(name.length, 28);
    central.writeUInt32LE(((entry.mode ?? 0o100644) << 16) >>> 0, 38);
    central.writeUInt32LE(offset, 42);
    locals.push(local, name, stored);
    centrals.push(central, name);
    offset += local.length + name.length + stored.length;
  }
  const directory = Buffer.concat(centrals);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(entries.length, 8);
  end.writeUInt16LE(entries.length, 10);
  end.writeUInt32LE(directory.length, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, directory, end]);
}

let work: string;
let target: string;
beforeEach(async () => {
  work = await mkdtemp(join(tmpdir(), 'vt-zip-test-'));
  // The target sits two levels down so that "../" and "../../" escapes would still land inside `work`, where we look.
  target = join(work, 'outer', 'target');
  await mkdir(join(work, 'outer'));
});
afterEach(async () => {
  await rm(work, { recursive: true, force: true });
});

async function refusal(entries: RawEntry[]): Promise<DatasetError> {
  const zipPath = join(work, 'evil.zip');
  await writeFile(zipPath, rawZip(entries));
  const err = await extractZip(zipPath, target).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(DatasetError);
  return err as DatasetError;
}

/** Every file below `work` except the archive itself. */
async function filesWritten(): Promise<string[]> {
  const all = (await readdir(work, { recursive: true, withFileTypes: true })).filter((d) => d.isFile() || d.isSymbolicLink());
  return all.map((d) => join(d.parentPath, d.name)).filter((p) => p !== join(work, 'evil.zip'));
}

describe('extractZip refuses unsafe archives before writing anything', () => {
  it.each([
    ['parent traversal', '../evil.txt'],
    ['deep traversal', 'images/../../../evil.txt'],
    ['absolute path', '/tmp/vt-zip-absolute-evil.txt'],
    ['drive letter', 'C:/evil.txt'],
    ['backslash traversal', '..\\evil.txt'],
    ['mixed separators', 'images\\..\\..\\evil.txt'],
  ])('%s (%j)', async (_label, name) => {
    const err = await refusal([
      { name: 'annotations.json', data: '{}' },
      { name, data: 'pwned' },
    ]);
    expect(err.message).toContain(JSON.stringify(name.replace(/\\/g, '/')));
    expect(err.message).toContain('outside the extraction folder');
    expect(err.hint).toContain('Nothing was extracted');
    // Not even the harmless entry before it was written: the archive is judged as a whole first.
    expect(await filesWritten()).toEqual([]);
    expect(existsSync('/tmp/vt-zip-absolute-evil.txt')).toBe(false);
  });

  it('a symbolic link entry', async () => {
    const err = await refusal([
      { name: 'images/a.jpg', data: 'jpeg' },
      { name: 'images/link', data: '/etc/passwd', mode: 0o120777 },
    ]);
    expect(err.message).toContain('"images/link" is a symbolic link');
    expect(await filesWritten()).toEqual([]);
  });

  it('a device or fifo entry', async () => {
    const err = await refusal([{ name: 'fifo', data: '', mode: 0o010644 }]);
    expect(err.message).toContain('"fifo" is not a regular file');
  });

  it('more entries than the limit', async () => {
    const zipPath = join(work, 'many.zip');
    await writeFile(zipPath, rawZip([1, 2, 3].map((i) => ({ name: `f${i}.txt`, data: 'x' }))));
    await expect(extractZip(zipPath, target, { maxEntries: 2 })).rejects.toThrow(/3 entries, more than the limit of 2/);
    expect(existsSync(target)).toBe(false);
  });

  it('more declared bytes than the limit, naming the entry that crossed it', async () => {
    const zipPath = join(work, 'big.zip');
    await writeFile(zipPath, rawZip([{ name: 'small.txt', data: 'x'.repeat(60) }, { name: 'large.txt', data: 'y'.repeat(60) }]));
    await expect(extractZip(zipPath, target, { maxTotalBytes: 100 })).rejects.toThrow(/more than 100 B uncompressed \(limit reached at entry "large.txt"\)/);
    expect(existsSync(target)).toBe(false);
  });

  it('an entry that inflates to more than it declared (zip bomb)', async () => {
    const zipPath = join(work, 'bomb.zip');
    await writeFile(zipPath, rawZip([{ name: 'bomb.bin', data: Buffer.alloc(1_000_000), deflate: true, declaredSize: 1000 }]));
    const err = await extractZip(zipPath, target, { maxTotalBytes: 10_000 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DatasetError);
    expect((err as Error).message).toContain('"bomb.bin"');
  });

  it('a file that is not a zip', async () => {
    const zipPath = join(work, 'not.zip');
    await writeFile(zipPath, 'plain text');
    await expect(extractZip(zipPath, target)).rejects.toThrow(/not.zip is not a readable zip archive/);
  });
});

describe('extractZip and createZip', () => {
  it('round-trip a folder, nested files and binary content included', async () => {
    const source = join(work, 'src');
    await mkdir(join(source, 'images', 'train'), { recursive: true });
    const binary = Buffer.from(Array.from({ length: 4096 }, (_, i) => i % 251));
    await writeFile(join(source, 'annotations.json'), '{"images":[]}');
    await writeFile(join(source, 'images', 'train', 'a.bin'), binary);
    const zipPath = join(work, 'set.zip');
    await createZip(source, zipPath);

    const result = await extractZip(zipPath, target);
    expect(result).toEqual({ files: 2, bytes: 13 + 4096 });
    expect(await readFile(join(target, 'annotations.json'), 'utf8')).toBe('{"images":[]}');
    expect(await readFile(join(target, 'images', 'train', 'a.bin'))).toEqual(binary);
  });

  it('accepts explicit members and hand-made archives with folder entries and "./" prefixes', async () => {
    const zipPath = join(work, 'members.zip');
    await createZip([{ name: 'meta/info.json', data: '{"a":1}' }], zipPath);
    await extractZip(zipPath, join(target, 'one'));
    expect(await readFile(join(target, 'one', 'meta', 'info.json'), 'utf8')).toBe('{"a":1}');

    const rawPath = join(work, 'raw.zip');
    await writeFile(rawPath, rawZip([{ name: './', data: '', mode: 0o040755 }, { name: 'images/', data: '', mode: 0o040755 }, { name: './images/b.txt', data: 'b' }]));
    expect(await extractZip(rawPath, join(target, 'two'))).toEqual({ files: 1, bytes: 1 });
    expect(await readFile(join(target, 'two', 'images', 'b.txt'), 'utf8')).toBe('b');
  });
});
