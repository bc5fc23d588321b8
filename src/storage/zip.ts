/**
 * Zip archives: safe, streamed extraction of untrusted archives (datasets come from users)
 * and creation of archives (export packages, test fixtures).
 *
 * Extraction reads from an ObjectReader (a local file, or an object in storage through ranged
 * reads), so a dataset zip is extracted while it downloads and never lands on disk whole:
 *
 *   1. The central directory (at the end of the archive) is read first, and the archive is
 *      refused before anything is written when an entry would land outside the target folder
 *      (`../`, absolute paths, drive letters, backslash tricks), is a symbolic link or a
 *      device, is encrypted, uses another compression than store/deflate, appears twice, or
 *      when the entry count or the declared uncompressed size exceeds the limits.
 *   2. The entries, in archive order, are cut into runs of roughly equal size; runs are
 *      streamed in parallel (one ranged read each) and each entry is inflated and written as
 *      its bytes arrive. Each local header must agree with the central directory (name,
 *      method) and each entry's data must end before the next entry starts (overlapping
 *      entries are a zip-bomb technique). Inflation stops at the declared size, and the size
 *      and CRC-32 are checked at the end of every entry, so a lying archive cannot write more
 *      than the limits allow.
 *
 * Everything is written below the target folder, and when the archive fails or is refused
 * part-way, what it wrote is removed again (the folder itself when extraction created it).
 */
import { createWriteStream } from 'node:fs';
import { mkdir, realpath, rm, stat, statfs, writeFile } from 'node:fs/promises';
import { basename, dirname, join, resolve, sep } from 'node:path';
import { Readable, Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { crc32, createInflateRaw, inflateRaw } from 'node:zlib';
import { fromRandomAccessReaderPromise, getFileNameLowLevel, RandomAccessReader, validateFileName, type Entry, type ZipFile as ReadableZip } from 'yauzl';
import { ZipFile as WritableZip } from 'yazl';
import { DatasetError, StorageError } from '../errors.js';
import { fileObjectReader, formatBytes, listFilesRecursive, mapWithConcurrency, writeAtomically } from './files.js';
import { resolveInside } from './keys.js';
import type { ObjectReader } from './types.js';

export interface ZipLimits {
  /** Refuse archives whose entries declare more uncompressed bytes than this. Default 50 GiB. */
  maxTotalBytes?: number;
  /** Refuse archives with more entries than this. Default 1,000,000. */
  maxEntries?: number;
}

export const DEFAULT_ZIP_LIMITS: Required<ZipLimits> = { maxTotalBytes: 50 * 1024 ** 3, maxEntries: 1_000_000 };

export interface ExtractOptions {
  limits?: ZipLimits | undefined;
  /** Runs of entries streamed at once. Default 4. */
  concurrency?: number | undefined;
  /**
   * One entry extracted before all the others, and told about while they stream: `pick` gets
   * the name of every entry (files and folders) once the archive has been judged safe, and
   * returns a file entry's name or undefined; `written` gets that file's path as soon as it is
   * written and checked. The extraction does not end before the promise it returns settles, and
   * goes on whatever it throws (the caller's preparation is its own business).
   */
  first?: { pick: (names: readonly string[]) => string | undefined; written: (path: string) => Promise<void> | void } | undefined;
}

export interface ExtractZipResult {
  files: number;
  /** Uncompressed bytes written. */
  bytes: number;
}

const S_IFMT = 0o170000;
const S_IFREG = 0o100000;
const S_IFDIR = 0o040000;
const S_IFLNK = 0o120000;
const LOCAL_HEADER_SIGNATURE = 0x04034b50;
const LOCAL_HEADER_SIZE = 30;
const METHOD_DEFLATE = 8;
const MIB = 1024 * 1024;
/** Entries up to this size (compressed and declared) are inflated in one call; larger ones are streamed. */
const WHOLE_ENTRY_LIMIT = 4 * MIB;
/** Bytes fetched per read while yauzl walks the central directory. */
const DIRECTORY_BLOCK = 4 * MIB;

const inflateRawAsync = promisify(inflateRaw);

interface PlannedFile {
  entry: Entry;
  name: string;
  target: string;
  offset: number;
  /** Where the next entry (or the central directory) starts: this entry's data must end before. */
  limit: number;
}

const REFUSAL_HINT =
  'Nothing from the archive was kept. Re-create the archive from inside the dataset folder (e.g. `cd my-dataset && zip -r ../my-dataset.zip .`) ' +
  'so every entry is a plain relative path, with no symbolic links.';
const CORRUPT_HINT = 'Re-create it with a standard zip tool and upload it again.';

/**
 * Extracts the zip at zipPath into destDir (created if needed; give it a fresh folder). Throws
 * DatasetError naming the offending entry when the archive is refused, StorageError when the
 * disk cannot hold it.
 */
export async function extractZip(zipPath: string, destDir: string, limits: ZipLimits = {}): Promise<ExtractZipResult> {
  const size = (await stat(zipPath)).size;
  return extractZipFrom({ ...fileObjectReader(zipPath, size), name: basename(zipPath) }, destDir, { limits });
}

/** Extracts the zip that `source` reads into destDir, streaming (see the module comment). */
export async function extractZipFrom(source: ObjectReader, destDir: string, options: ExtractOptions = {}): Promise<ExtractZipResult> {
  const maxTotalBytes = options.limits?.maxTotalBytes ?? DEFAULT_ZIP_LIMITS.maxTotalBytes;
  const maxEntries = options.limits?.maxEntries ?? DEFAULT_ZIP_LIMITS.maxEntries;
  const archive = source.name;
  const refuse = (reason: string): DatasetError => new DatasetError(`Refusing to extract ${archive}: ${reason}`, [], REFUSAL_HINT);
  const corrupt = (reason: string): DatasetError => new DatasetError(`${archive} is corrupt: ${reason}`, [], CORRUPT_HINT);
  const root = resolve(destDir);

  // 1. The central directory, judged whole before anything is written.
  const reader = new CachedRangeReader(source);
  let zip: ReadableZip;
  try {
    // decodeStrings:false so that we decode and judge every name ourselves, and can name it in the error.
    zip = await fromRandomAccessReaderPromise(reader, source.size, { decodeStrings: false, validateEntrySizes: true, autoClose: false, lazyEntries: true });
  } catch (err) {
    if (err instanceof StorageError) throw err;
    throw new DatasetError(`${archive} is not a readable zip archive: ${(err as Error).message}`, [], CORRUPT_HINT);
  }
  // Where the central directory starts: no entry's data may reach into it.
  const directoryOffset =
    typeof (zip as unknown as { readEntryCursor?: unknown }).readEntryCursor === 'number'
      ? (zip as unknown as { readEntryCursor: number }).readEntryCursor
      : source.size;
  const files: PlannedFile[] = [];
  const folders: string[] = [];
  const names: string[] = [];
  let declaredBytes = 0;
  try {
    if (zip.entryCount > maxEntries) throw refuse(`it has ${zip.entryCount} entries, more than the limit of ${maxEntries}`);
    const seen = new Set<string>();
    for await (const entry of readEntries(zip, corrupt)) {
      const name = getFileNameLowLevel(entry.generalPurposeBitFlag, entry.fileNameRaw, entry.extraFields, false);
      const shown = JSON.stringify(name);
      const isDirectory = name.endsWith('/');
      if (isDirectory && name.split('/').every((part) => part === '' || part === '.')) continue; // "./": the root itself
      const target = validateFileName(name) === null ? resolveInside(root, name) : undefined;
      if (target === undefined) throw refuse(`entry ${shown} would be written outside the extraction folder`);
      const fileType = (entry.externalFileAttributes >>> 16) & S_IFMT;
      if (fileType === S_IFLNK) throw refuse(`entry ${shown} is a symbolic link`);
      if (fileType !== 0 && fileType !== S_IFREG && fileType !== S_IFDIR) throw refuse(`entry ${shown} is not a regular file or folder`);
      if (entry.isEncrypted()) throw refuse(`entry ${shown} is encrypted`);
      if (!entry.canDecodeFileData())
        throw refuse(`entry ${shown} uses compression method ${entry.compressionMethod}, which is not supported (use deflate or store)`);
      // Two entries for one path would extract to whichever run finishes last.
      const key = isDirectory ? target : `${target}\0file`;
      if (seen.has(key)) throw refuse(`entry ${shown} appears twice`);
      seen.add(key);
      declaredBytes += entry.uncompressedSize;
      if (declaredBytes > maxTotalBytes) {
        throw refuse(`its entries declare more than ${formatBytes(maxTotalBytes)} uncompressed (limit reached at entry ${shown})`);
      }
      names.push(name);
      if (isDirectory) folders.push(target);
      else files.push({ entry, name, target, offset: entry.relativeOffsetOfLocalHeader, limit: directoryOffset });
    }
  } finally {
    zip.close();
  }
  files.sort((a, b) => a.offset - b.offset);
  for (let i = 0; i < files.length; i++) {
    const file = files[i] as PlannedFile;
    const next = files[i + 1];
    if (next !== undefined) file.limit = next.offset;
    if (file.offset + LOCAL_HEADER_SIZE + file.entry.compressedSize > file.limit) {
      throw refuse(
        `entry ${JSON.stringify(file.name)} overlaps ${next === undefined ? 'the central directory' : `entry ${JSON.stringify(next.name)}`} (overlapping entries are a zip-bomb technique)`,
      );
    }
  }

  // 2. Stream runs of entries in parallel, writing each entry as it arrives.
  const rootExisted = await stat(root).then(
    () => true,
    () => false,
  );
  await mkdir(root, { recursive: true });
  const writer = new EntryWriter(await realpath(root), refuse);
  const pickedName = options.first?.pick(names);
  const picked = pickedName === undefined ? undefined : files.find((f) => f.name === pickedName);
  const first = picked && options.first ? { file: picked, written: options.first.written } : undefined;
  try {
    return await extractRuns(source, files, folders, writer, { root, declaredBytes, concurrency: options.concurrency ?? 4, refuse, corrupt, first });
  } catch (err) {
    // Whatever a refused or failed archive wrote is not kept (a checked prefix of it could pass for a dataset).
    if (rootExisted) await Promise.all([...writer.written].map((path) => rm(path, { force: true })));
    else await rm(root, { recursive: true, force: true });
    throw err;
  }
}

async function extractRuns(
  source: ObjectReader,
  files: readonly PlannedFile[],
  folders: readonly string[],
  writer: EntryWriter,
  context: {
    root: string;
    declaredBytes: number;
    concurrency: number;
    refuse: (reason: string) => DatasetError;
    corrupt: (reason: string) => DatasetError;
    first: { file: PlannedFile; written: (path: string) => Promise<void> | void } | undefined;
  },
): Promise<ExtractZipResult> {
  const { refuse, corrupt, first } = context;
  const archive = source.name;
  await assertDiskSpace(context.root, context.declaredBytes, archive);
  for (const folder of folders) await writer.folder(folder);
  let firstBytes = 0;
  let told: Promise<void> = Promise.resolve();
  if (first) {
    // Its own ranged read; the runs below skip over its bytes.
    const bytes = new ByteReader(source.stream(first.file.offset, first.file.limit), first.file.offset, archive);
    try {
      firstBytes = await extractEntry(bytes, first.file, writer, refuse, corrupt);
    } catch (err) {
      throw extractionFailure(err, archive, first.file.name);
    } finally {
      await bytes.close().catch(() => undefined);
    }
    told = Promise.resolve()
      .then(() => first.written(first.file.target))
      .catch(() => undefined);
  }
  try {
    const rest = await extractRest(source, first ? files.filter((f) => f !== first.file) : files, writer, context);
    return { files: files.length, bytes: firstBytes + rest };
  } finally {
    await told;
  }
}

async function extractRest(
  source: ObjectReader,
  files: readonly PlannedFile[],
  writer: EntryWriter,
  context: { concurrency: number; refuse: (reason: string) => DatasetError; corrupt: (reason: string) => DatasetError },
): Promise<number> {
  const { refuse, corrupt } = context;
  const archive = source.name;
  const runs = planRuns(files, context.concurrency);
  // Once one run has failed the others stop at their next entry instead of finishing their range.
  let failed = false;
  const written = await mapWithConcurrency(runs, context.concurrency, async (run) => {
    const bytes = new ByteReader(source.stream(run.start, run.end), run.start, archive);
    let total = 0;
    try {
      for (const file of run.files) {
        if (failed) break;
        try {
          total += await extractEntry(bytes, file, writer, refuse, corrupt);
        } catch (err) {
          failed = true;
          throw extractionFailure(err, archive, file.name);
        }
      }
    } finally {
      // Releases the connection of a run that stopped early.
      await bytes.close().catch(() => undefined);
    }
    return total;
  });
  return written.reduce((a, b) => a + b, 0);
}

interface Run {
  start: number;
  end: number;
  files: PlannedFile[];
}

/**
 * Consecutive entries grouped so that the runs outnumber the streams a few times over (a slow
 * run does not leave the other streams idle at the end), but none is tiny (each is a request).
 */
function planRuns(files: readonly PlannedFile[], concurrency: number): Run[] {
  if (files.length === 0) return [];
  const first = files[0] as PlannedFile;
  const last = files[files.length - 1] as PlannedFile;
  const span = last.limit - first.offset;
  const target = Math.min(256 * MIB, Math.max(4 * MIB, Math.ceil(span / (concurrency * 4))));
  const runs: Run[] = [];
  let current: Run | undefined;
  for (const file of files) {
    if (current === undefined || file.offset - current.start >= target) {
      current = { start: file.offset, end: file.limit, files: [] };
      runs.push(current);
    }
    current.files.push(file);
    current.end = file.limit;
  }
  return runs;
}

async function extractEntry(
  bytes: ByteReader,
  file: PlannedFile,
  writer: EntryWriter,
  refuse: (reason: string) => DatasetError,
  corrupt: (reason: string) => DatasetError,
): Promise<number> {
  const { entry, name } = file;
  const shown = JSON.stringify(name);
  // Data descriptors or padding between entries are skipped.
  await bytes.skip(file.offset - bytes.position);
  const header = await bytes.readExactly(LOCAL_HEADER_SIZE);
  if (header.readUInt32LE(0) !== LOCAL_HEADER_SIGNATURE) throw corrupt(`no local header where entry ${shown} should start (offset ${file.offset})`);
  const method = header.readUInt16LE(8);
  const nameLength = header.readUInt16LE(26);
  const extraLength = header.readUInt16LE(28);
  const localName = await bytes.readExactly(nameLength);
  await bytes.skip(extraLength);
  if (!localName.equals(entry.fileNameRaw)) throw refuse(`entry ${shown} has another name in its local header (${JSON.stringify(localName.toString('utf8'))})`);
  if (method !== entry.compressionMethod)
    throw refuse(`entry ${shown} declares compression method ${entry.compressionMethod} in the central directory but ${method} in its local header`);
  const dataStart = file.offset + LOCAL_HEADER_SIZE + nameLength + extraLength;
  if (dataStart + entry.compressedSize > file.limit) throw refuse(`entry ${shown} overlaps the entry after it (overlapping entries are a zip-bomb technique)`);

  const expected = entry.uncompressedSize;
  const target = await writer.prepare(file.target, name);
  if (entry.compressedSize <= WHOLE_ENTRY_LIMIT && expected <= WHOLE_ENTRY_LIMIT) {
    const data = await bytes.readExactly(entry.compressedSize);
    let content: Buffer;
    if (method === METHOD_DEFLATE) {
      try {
        // maxOutputLength stops a bomb at the declared size instead of after inflating it all.
        // One output buffer of the declared size: zlib's default 16 KiB chunks cost a thread-pool
        // round trip each, which was a fifth of the main thread's time on a 2 GB archive.
        content = await inflateRawAsync(data, { maxOutputLength: Math.max(1, expected), chunkSize: Math.max(64 * 1024, expected + 1) });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE')
          throw refuse(`entry ${shown} inflates to more than the ${expected} bytes it declares (zip bomb)`);
        throw corrupt(`entry ${shown} does not inflate: ${(err as Error).message}`);
      }
    } else {
      content = data;
    }
    if (content.length > expected) throw refuse(`entry ${shown} inflates to more than the ${expected} bytes it declares (zip bomb)`);
    if (content.length !== expected) throw corrupt(`entry ${shown} holds ${content.length} bytes but declares ${expected}`);
    if (crc32(content) !== entry.crc32) throw corrupt(`entry ${shown} fails its CRC-32 check`);
    await writeFile(target, content);
    return expected;
  }

  let produced = 0;
  let checksum = 0;
  const check = new Transform({
    transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback) {
      produced += chunk.length;
      if (produced > expected) return done(refuse(`entry ${shown} inflates to more than the ${expected} bytes it declares (zip bomb)`));
      checksum = crc32(chunk, checksum);
      done(null, chunk);
    },
  });
  const compressed = Readable.from(bytes.take(entry.compressedSize), { objectMode: false });
  if (method === METHOD_DEFLATE) await pipeline(compressed, createInflateRaw({ chunkSize: 256 * 1024 }), check, createWriteStream(target));
  else await pipeline(compressed, check, createWriteStream(target));
  if (produced !== expected) throw corrupt(`entry ${shown} holds ${produced} bytes but declares ${expected}`);
  if (checksum !== entry.crc32) throw corrupt(`entry ${shown} fails its CRC-32 check`);
  return expected;
}

/** Creates folders once and checks, once per folder, that no existing link leads outside the root. */
class EntryWriter {
  private readonly checked = new Map<string, Promise<void>>();
  /** Files written (or being written), to remove when the archive fails. */
  readonly written = new Set<string>();

  constructor(
    private readonly realRoot: string,
    private readonly refuse: (reason: string) => DatasetError,
  ) {}

  async folder(path: string): Promise<void> {
    await this.ensure(path, path);
  }

  /** The path to write entry `name` to, its folder created and checked. */
  async prepare(target: string, name: string): Promise<string> {
    await this.ensure(dirname(target), name);
    this.written.add(target);
    return target;
  }

  private ensure(folder: string, name: string): Promise<void> {
    let done = this.checked.get(folder);
    if (done === undefined) {
      done = (async () => {
        await mkdir(folder, { recursive: true });
        // A symlink already present in destDir could redirect a write; resolve the real folder to be sure.
        const real = await realpath(folder);
        if (real !== this.realRoot && !real.startsWith(this.realRoot + sep)) {
          throw this.refuse(`entry ${JSON.stringify(name)} resolves outside the extraction folder through an existing link`);
        }
      })();
      this.checked.set(folder, done);
    }
    return done;
  }
}

/**
 * Sequential reads over a stream of chunks that starts at archive offset `position`. Errors of
 * the source (storage, network) come out as StorageError naming the archive.
 */
class ByteReader {
  private readonly iterator: AsyncIterator<Buffer>;
  private chunk: Buffer = Buffer.alloc(0);

  constructor(
    source: AsyncIterable<Buffer>,
    public position: number,
    private readonly archive: string,
  ) {
    this.iterator = source[Symbol.asyncIterator]();
  }

  private async fill(): Promise<void> {
    let next: IteratorResult<Buffer>;
    try {
      next = await this.iterator.next();
    } catch (err) {
      if (err instanceof StorageError || err instanceof DatasetError) throw err;
      throw new StorageError(`Could not read ${this.archive} at byte ${this.position}: ${(err as Error).message}`, { cause: err });
    }
    if (next.done) throw new DatasetError(`${this.archive} is corrupt: it ends at byte ${this.position}, inside an entry`, [], CORRUPT_HINT);
    this.chunk = next.value;
  }

  async readExactly(length: number): Promise<Buffer> {
    if (length <= this.chunk.length) return this.consume(length);
    const parts: Buffer[] = [];
    let missing = length;
    while (missing > 0) {
      if (this.chunk.length === 0) await this.fill();
      const part = this.consume(Math.min(missing, this.chunk.length));
      parts.push(part);
      missing -= part.length;
    }
    return parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts, length);
  }

  async skip(length: number): Promise<void> {
    let missing = length;
    while (missing > 0) {
      if (this.chunk.length === 0) await this.fill();
      missing -= this.consume(Math.min(missing, this.chunk.length)).length;
    }
  }

  /** The next `length` bytes, chunk by chunk, without copying. */
  async *take(length: number): AsyncGenerator<Buffer> {
    let missing = length;
    while (missing > 0) {
      if (this.chunk.length === 0) await this.fill();
      const part = this.consume(Math.min(missing, this.chunk.length));
      missing -= part.length;
      yield part;
    }
  }

  async close(): Promise<void> {
    await this.iterator.return?.();
  }

  private consume(length: number): Buffer {
    const part = this.chunk.subarray(0, length);
    this.chunk = this.chunk.subarray(length);
    this.position += length;
    return part;
  }
}

/**
 * yauzl's view of an ObjectReader while it walks the central directory: reads are served from
 * one cached block, so thousands of small entry reads cost a few ranged requests.
 */
class CachedRangeReader extends RandomAccessReader {
  private block: { start: number; data: Buffer } | undefined;

  constructor(private readonly source: ObjectReader) {
    super();
  }

  override read(buffer: Buffer, offset: number, length: number, position: number, callback: (err: Error | null) => void): void {
    this.readAsync(buffer, offset, length, position).then(
      () => callback(null),
      (err: unknown) => callback(err as Error),
    );
  }

  private async readAsync(buffer: Buffer, offset: number, length: number, position: number): Promise<void> {
    const block = this.block;
    if (block === undefined || position < block.start || position + length > block.start + block.data.length) {
      const end = Math.min(this.source.size, position + Math.max(length, DIRECTORY_BLOCK));
      this.block = { start: position, data: await this.source.read(position, end) };
    }
    const current = this.block as { start: number; data: Buffer };
    const copied = current.data.copy(buffer, offset, position - current.start, position - current.start + length);
    if (copied !== length) throw new Error(`unexpected end of ${this.source.name} at byte ${position + copied}`);
  }

  override _readStreamForRange(start: number, end: number): Readable {
    return Readable.from(this.source.stream(start, end));
  }
}

async function* readEntries(zip: ReadableZip, corrupt: (reason: string) => DatasetError): AsyncGenerator<Entry> {
  try {
    yield* zip.eachEntry();
  } catch (err) {
    if (err instanceof DatasetError || err instanceof StorageError) throw err;
    throw corrupt((err as Error).message);
  }
}

function extractionFailure(err: unknown, archive: string, entryName: string): Error {
  if (err instanceof DatasetError || err instanceof StorageError) return err;
  const code = (err as NodeJS.ErrnoException).code;
  const message = (err as Error).message ?? String(err);
  if (code === 'ENOSPC' || code === 'EDQUOT') {
    return new StorageError(`Disk full while extracting ${archive} (entry ${JSON.stringify(entryName)})`, {
      hint: 'Give the job more disk (ephemeral storage).',
      cause: err,
    });
  }
  if (code?.startsWith('E')) {
    return new StorageError(`Could not write entry ${JSON.stringify(entryName)} of ${archive}: ${message}`, { cause: err });
  }
  return new DatasetError(`${archive} is corrupt at entry ${JSON.stringify(entryName)}: ${message}`, [], CORRUPT_HINT);
}

async function assertDiskSpace(dir: string, needed: number, archive: string): Promise<void> {
  const fs = await statfs(dir);
  const free = fs.bavail * fs.bsize;
  if (needed > free) {
    throw new StorageError(`${archive} needs ${formatBytes(needed)} once extracted, but only ${formatBytes(free)} is free at ${dir}`, {
      hint: 'Give the job more disk (ephemeral storage) or split the dataset.',
    });
  }
}

/** One archive member: a file on disk, or bytes given directly. */
export type ZipInput = { name: string; path: string } | { name: string; data: Buffer | string };

/**
 * Writes a zip at outPath (atomically) from a folder (every file below it, named relative to
 * it) or from an explicit list of members.
 */
export async function createZip(input: string | readonly ZipInput[], outPath: string): Promise<void> {
  const members: ZipInput[] =
    typeof input === 'string' ? (await listFilesRecursive(input)).map((name) => ({ name, path: join(input, ...name.split('/')) })) : [...input];
  if (
    typeof input === 'string' &&
    members.length === 0 &&
    !(await stat(input)
      .then((s) => s.isDirectory())
      .catch(() => false))
  ) {
    throw new StorageError(`Cannot zip ${input}: it is not a folder`);
  }
  await writeAtomically(outPath, async (temp) => {
    const zip = new WritableZip();
    const written = pipeline(zip.outputStream, createWriteStream(temp));
    for (const member of members) {
      if ('path' in member) zip.addFile(member.path, member.name);
      else zip.addBuffer(typeof member.data === 'string' ? Buffer.from(member.data) : member.data, member.name);
    }
    zip.end();
    await written;
  });
}
