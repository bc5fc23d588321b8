import { createWriteStream, existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ZipFile as WritableZip } from 'yazl';
import { DatasetError } from '../../src/errors.js';
import { fileObjectReader } from '../../src/storage/files.js';
import type { ObjectReader } from '../../src/storage/types.js';
import { createZip, extractZip, extractZipFrom } from '../../src/storage/zip.js';
import { pseudoImageBytes, rawZip, type RawEntry } from '../helpers/zips.js';

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
    expect(err.hint).toContain('Nothing from the archive was kept');
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
    await writeFile(
      zipPath,
      rawZip([
        { name: 'small.txt', data: 'x'.repeat(60) },
        { name: 'large.txt', data: 'y'.repeat(60) },
      ]),
    );
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

  it('two entries sharing their data (overlapping entries, a zip-bomb technique)', async () => {
    const err = await refusal([
      { name: 'a.bin', data: 'x'.repeat(100) },
      { name: 'b.bin', data: 'x'.repeat(100), sameDataAs: 0 },
    ]);
    expect(err.message).toMatch(/entry "a.bin" overlaps entry "b.bin"|entry "b.bin" overlaps entry "a.bin"/);
    expect(await filesWritten()).toEqual([]);
  });

  it('the same path twice', async () => {
    const err = await refusal([
      { name: 'images/a.jpg', data: 'one' },
      { name: 'images/./a.jpg', data: 'two' },
    ]);
    expect(err.message).toContain('"images/./a.jpg" appears twice');
    expect(await filesWritten()).toEqual([]);
  });

  it('a local header that names another path than the central directory: nothing lands outside the folder', async () => {
    const err = await refusal([
      { name: 'images/a.jpg', data: 'fine' },
      { name: 'images/b.jpg', data: 'pwned', localName: '../../evil.jpg' },
    ]);
    expect(err.message).toContain('entry "images/b.jpg" has another name in its local header ("../../evil.jpg")');
    // Found while streaming: what was extracted before it is removed again.
    expect(await filesWritten()).toEqual([]);
    expect(existsSync(target)).toBe(false);
  });

  it('a compression method that differs between the two headers', async () => {
    const zip = rawZip([{ name: 'a.txt', data: 'hello', deflate: true }]);
    zip.writeUInt16LE(0, 8); // the local header now says "stored"
    await writeFile(join(work, 'evil.zip'), zip);
    await expect(extractZip(join(work, 'evil.zip'), target)).rejects.toThrow(/compression method 8 in the central directory but 0 in its local header/);
  });

  it('a large entry that inflates past its declared size, caught while streaming', async () => {
    const data = pseudoImageBytes(6 * 1024 * 1024, 3); // compresses to more than the 4 MiB inflated in one call
    const err = await refusal([
      { name: 'first.txt', data: 'fine' },
      { name: 'big.bin', data, deflate: true, declaredSize: 1024 * 1024 },
    ]);
    expect(err.message).toContain('"big.bin" inflates to more than the 1048576 bytes it declares (zip bomb)');
    expect(await filesWritten()).toEqual([]);
  });

  it("an entry whose CRC-32 does not match; into an existing folder, only the archive's own files are removed", async () => {
    await mkdir(target, { recursive: true });
    await writeFile(join(target, 'mine.txt'), 'was here before');
    const err = await refusal([
      { name: 'b.txt', data: 'fine' },
      { name: 'a.txt', data: 'hello', crc: 12345 },
    ]);
    expect(err.message).toContain('"a.txt" fails its CRC-32 check');
    expect(await filesWritten()).toEqual([join(target, 'mine.txt')]);
  });

  it('a file that is not a zip', async () => {
    const zipPath = join(work, 'not.zip');
    await writeFile(zipPath, 'plain text');
    await expect(extractZip(zipPath, target)).rejects.toThrow(/not.zip is not a readable zip archive/);
  });
});

describe('extractZip and createZip', () => {
  it('extract data descriptors (streaming zippers), stored and deflated entries, and zip64 archives', async () => {
    const described = join(work, 'described.zip');
    const binary = pseudoImageBytes(50_000, 1);
    await writeFile(
      described,
      rawZip([
        { name: 'annotations.json', data: '{"images":[]}', dataDescriptor: true, deflate: true },
        { name: 'images/a.bin', data: binary, dataDescriptor: true },
        { name: 'images/b.bin', data: binary, deflate: true },
      ]),
    );
    expect(await extractZip(described, join(target, 'one'))).toEqual({ files: 3, bytes: 13 + 2 * binary.length });
    expect(await readFile(join(target, 'one', 'images', 'a.bin'))).toEqual(binary);
    expect(await readFile(join(target, 'one', 'images', 'b.bin'))).toEqual(binary);

    const zip64 = join(work, 'zip64.zip');
    const writer = new WritableZip();
    writer.addBuffer(binary, 'images/c.bin', { forceZip64Format: true });
    writer.addBuffer(Buffer.from('{}'), 'annotations.json', { forceZip64Format: true, compress: false });
    writer.end({ forceZip64Format: true, comment: '' });
    await pipeline(writer.outputStream, createWriteStream(zip64));
    expect(await extractZip(zip64, join(target, 'two'))).toEqual({ files: 2, bytes: binary.length + 2 });
    expect(await readFile(join(target, 'two', 'images', 'c.bin'))).toEqual(binary);
  });

  it('stream many entries in parallel runs, large ones inflated as they arrive, whatever the chunk sizes', async () => {
    const entries: RawEntry[] = Array.from({ length: 60 }, (_, i) => ({
      name: `images/${i}.bin`,
      data: pseudoImageBytes(90_000 + i, i + 1),
      deflate: i % 3 !== 0,
    }));
    entries.push({ name: 'images/large.bin', data: pseudoImageBytes(5 * 1024 * 1024, 99), deflate: true });
    entries.push({ name: 'images/large-stored.bin', data: pseudoImageBytes(4.5 * 1024 * 1024, 98) });
    const zipPath = join(work, 'many.zip');
    await writeFile(zipPath, rawZip(entries));
    const size = (await stat(zipPath)).size;
    // A source that hands out chunks of 1 byte to 64 KiB: headers and entries straddle chunk boundaries.
    const file = fileObjectReader(zipPath, size);
    let streams = 0;
    const choppy: ObjectReader = {
      ...file,
      async *stream(start, end) {
        streams++;
        for await (const chunk of file.stream(start, end)) yield* rechop(chunk as Buffer);
      },
    };
    const result = await extractZipFrom(choppy, target, { concurrency: 3 });
    expect(result.files).toBe(entries.length);
    expect(streams).toBeGreaterThan(2); // the archive was cut into several runs
    for (const entry of entries) expect((await readFile(join(target, entry.name))).equals(Buffer.from(entry.data))).toBe(true);
  });

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
    await writeFile(
      rawPath,
      rawZip([
        { name: './', data: '', mode: 0o040755 },
        { name: 'images/', data: '', mode: 0o040755 },
        { name: './images/b.txt', data: 'b' },
      ]),
    );
    expect(await extractZip(rawPath, join(target, 'two'))).toEqual({ files: 1, bytes: 1 });
    expect(await readFile(join(target, 'two', 'images', 'b.txt'), 'utf8')).toBe('b');
  });
});

const CHUNK_SIZES = [7, 1, 4096, 30, 65536, 13, 999];
let chunkIndex = 0;
function* rechop(chunk: Buffer): Generator<Buffer> {
  for (let i = 0; i < chunk.length; ) {
    const size = CHUNK_SIZES[chunkIndex++ % CHUNK_SIZES.length] as number;
    yield chunk.subarray(i, i + size);
    i += size;
  }
}
