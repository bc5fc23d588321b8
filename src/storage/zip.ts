/**
 * Zip archives: safe, streamed extraction of untrusted archives (datasets come from users)
 * and creation of archives (export packages, test fixtures).
 *
 * Extraction reads the whole central directory first and refuses the archive before writing
 * anything when an entry would land outside the target folder (`../`, absolute paths, drive
 * letters, backslash tricks), is a symbolic link or a device, is encrypted, or when the entry
 * count or declared size exceeds the limits. yauzl then checks while inflating that no entry
 * yields more bytes than it declared, so the size bound holds against zip bombs.
 */
import { createWriteStream } from 'node:fs';
import { mkdir, realpath, stat, statfs } from 'node:fs/promises';
import { basename, dirname, join, resolve, sep } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { getFileNameLowLevel, openPromise, validateFileName, type Entry, type ZipFile as ReadableZip } from 'yauzl';
import { ZipFile as WritableZip } from 'yazl';
import { DatasetError, StorageError } from '../errors.js';
import { formatBytes, listFilesRecursive, writeAtomically } from './files.js';
import { resolveInside } from './keys.js';

export interface ZipLimits {
  /** Refuse archives whose entries declare more uncompressed bytes than this. Default 50 GiB. */
  maxTotalBytes?: number;
  /** Refuse archives with more entries than this. Default 1,000,000. */
  maxEntries?: number;
}

export const DEFAULT_ZIP_LIMITS: Required<ZipLimits> = { maxTotalBytes: 50 * 1024 ** 3, maxEntries: 1_000_000 };

export interface ExtractZipResult {
  files: number;
  /** Uncompressed bytes written. */
  bytes: number;
}

const S_IFMT = 0o170000;
const S_IFREG = 0o100000;
const S_IFDIR = 0o040000;
const S_IFLNK = 0o120000;

interface PlannedEntry {
  entry: Entry;
  name: string;
  target: string;
  isDirectory: boolean;
}

const REFUSAL_HINT =
  'Nothing was extracted. Re-create the archive from inside the dataset folder (e.g. `cd my-dataset && zip -r ../my-dataset.zip .`) ' +
  'so every entry is a plain relative path, with no symbolic links.';

/**
 * Extracts zipPath into destDir (created if needed; give it a fresh folder). Throws
 * DatasetError naming the offending entry when the archive is refused, StorageError when the
 * disk cannot hold it.
 */
export async function extractZip(zipPath: string, destDir: string, limits: ZipLimits = {}): Promise<ExtractZipResult> {
  const maxTotalBytes = limits.maxTotalBytes ?? DEFAULT_ZIP_LIMITS.maxTotalBytes;
  const maxEntries = limits.maxEntries ?? DEFAULT_ZIP_LIMITS.maxEntries;
  const archive = basename(zipPath);
  const refuse = (reason: string): DatasetError => new DatasetError(`Refusing to extract ${archive}: ${reason}`, [], REFUSAL_HINT);

  let zip: ReadableZip;
  try {
    // decodeStrings:false so that we decode and judge every name ourselves, and can name it in the error.
    zip = await openPromise(zipPath, { decodeStrings: false, validateEntrySizes: true, autoClose: false });
  } catch (err) {
    throw new DatasetError(`${archive} is not a readable zip archive: ${(err as Error).message}`, [], 'Re-create it with a standard zip tool and upload it again.');
  }
  try {
    if (zip.entryCount > maxEntries) throw refuse(`it has ${zip.entryCount} entries, more than the limit of ${maxEntries}`);
    const root = resolve(destDir);
    const planned: PlannedEntry[] = [];
    let declaredBytes = 0;
    for await (const entry of readEntries(zip, archive)) {
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
      if (!entry.canDecodeFileData()) throw refuse(`entry ${shown} uses compression method ${entry.compressionMethod}, which is not supported (use deflate or store)`);
      declaredBytes += entry.uncompressedSize;
      if (declaredBytes > maxTotalBytes) {
        throw refuse(`its entries declare more than ${formatBytes(maxTotalBytes)} uncompressed (limit reached at entry ${shown})`);
      }
      planned.push({ entry, name, target, isDirectory });
    }

    await mkdir(root, { recursive: true });
    await assertDiskSpace(root, declaredBytes, archive);
    const realRoot = await realpath(root);
    let files = 0;
    let bytes = 0;
    for (const item of planned) {
      try {
        if (item.isDirectory) {
          await mkdir(item.target, { recursive: true });
          continue;
        }
        const parent = dirname(item.target);
        await mkdir(parent, { recursive: true });
        // A symlink already present in destDir could redirect a write; resolve the real parent to be sure.
        const realParent = await realpath(parent);
        if (realParent !== realRoot && !realParent.startsWith(realRoot + sep)) {
          throw refuse(`entry ${JSON.stringify(item.name)} resolves outside the extraction folder through an existing link`);
        }
        const source = await zip.openReadStreamPromise(item.entry);
        await pipeline(source, createWriteStream(item.target));
        files += 1;
        bytes += item.entry.uncompressedSize;
      } catch (err) {
        throw extractionFailure(err, archive, item.name);
      }
    }
    return { files, bytes };
  } finally {
    zip.close();
  }
}

async function* readEntries(zip: ReadableZip, archive: string): AsyncGenerator<Entry> {
  try {
    yield* zip.eachEntry();
  } catch (err) {
    if (err instanceof DatasetError) throw err;
    throw new DatasetError(`${archive} is corrupt: ${(err as Error).message}`, [], 'Re-create it with a standard zip tool and upload it again.');
  }
}

function extractionFailure(err: unknown, archive: string, entryName: string): Error {
  if (err instanceof DatasetError || err instanceof StorageError) return err;
  const code = (err as NodeJS.ErrnoException).code;
  const message = (err as Error).message ?? String(err);
  if (code === 'ENOSPC' || code === 'EDQUOT') {
    return new StorageError(`Disk full while extracting ${archive} (entry ${JSON.stringify(entryName)})`, { hint: 'Give the job more disk (ephemeral storage).', cause: err });
  }
  if (code !== undefined && code.startsWith('E')) {
    return new StorageError(`Could not write entry ${JSON.stringify(entryName)} of ${archive}: ${message}`, { cause: err });
  }
  return new DatasetError(`${archive} is corrupt at entry ${JSON.stringify(entryName)}: ${message}`, [], 'Re-create it with a standard zip tool and upload it again.');
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
  if (typeof input === 'string' && members.length === 0 && !(await stat(input).then((s) => s.isDirectory()).catch(() => false))) {
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

