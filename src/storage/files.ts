/**
 * Helpers shared by the storage modules. The rule they carry: every file we produce appears at
 * its final path complete or not at all (written under a temporary name, then renamed).
 */
import { randomBytes } from 'node:crypto';
import { createReadStream, type Dirent } from 'node:fs';
import { copyFile, mkdir, open, readdir, rename, rm, stat } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { basename, dirname, join } from 'node:path';
import { Readable } from 'node:stream';
import { StorageError } from '../errors.js';
import type { ObjectReader } from './types.js';

const TEMP_MARK = '.partial-';

/** A hidden temporary path beside `dest`, so the final rename never crosses filesystems. */
export function tempPathBeside(dest: string): string {
  return join(dirname(dest), `.${basename(dest)}${TEMP_MARK}${randomBytes(4).toString('hex')}`);
}

/** True for names made by tempPathBeside (local listings skip them). */
export function isTempName(name: string): boolean {
  return name.startsWith('.') && /\.partial-[0-9a-f]{8}$/.test(name);
}

/**
 * Runs `write` against a temporary path beside dest and renames it onto dest when write
 * succeeds; on failure the temporary file is removed and dest is left as it was.
 */
export async function writeAtomically<T>(dest: string, write: (tempPath: string) => Promise<T>): Promise<T> {
  await mkdir(dirname(dest), { recursive: true });
  const temp = tempPathBeside(dest);
  try {
    const result = await write(temp);
    await rename(temp, dest);
    return result;
  } catch (err) {
    await rm(temp, { force: true });
    throw err;
  }
}

/** Runs `fn` with at most `limit` calls in flight; rejects with the first failure (after in-flight calls settle). */
export async function mapWithConcurrency<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  let failed = false;
  const worker = async (): Promise<void> => {
    while (!failed && next < items.length) {
      const index = next++;
      try {
        results[index] = await fn(items[index] as T, index);
      } catch (err) {
        failed = true;
        throw err;
      }
    }
  };
  const workers = Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, () => worker());
  const settled = await Promise.allSettled(workers);
  const rejection = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
  if (rejection) throw rejection.reason;
  return results;
}

/** Every regular file under dir as a slash-separated relative path, sorted; symlinks are not followed. Missing dir: []. */
export async function listFilesRecursive(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (abs: string, rel: string): Promise<void> => {
    let entries: Dirent[];
    try {
      entries = await readdir(abs, { withFileTypes: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'ENOTDIR') return;
      throw err;
    }
    for (const entry of entries) {
      const childRel = rel === '' ? entry.name : `${rel}/${entry.name}`;
      if (entry.isDirectory()) await walk(join(abs, entry.name), childRel);
      else if (entry.isFile()) out.push(childRel);
    }
  };
  await walk(dir, '');
  return out.sort();
}

/**
 * Copies src to dest and checks that src did not change while it was copied (same inode, size
 * and mtime before and after), trying again a few times if it did. A trainer rewriting its
 * checkpoint meanwhile therefore never yields a half-written copy.
 */
export async function copyStableFile(src: string, dest: string, attempts = 5): Promise<void> {
  for (let i = 0; i < attempts; i++) {
    const before = await stat(src, { bigint: true });
    await copyFile(src, dest);
    const [after, copied] = await Promise.all([stat(src, { bigint: true }), stat(dest, { bigint: true })]);
    if (before.ino === after.ino && before.size === after.size && before.mtimeNs === after.mtimeNs && copied.size === after.size) return;
    await sleep(200 * (i + 1));
  }
  throw new Error(`${src} kept changing while it was being copied (${attempts} tries)`);
}

/** A byte count for messages: `512 B`, `3.2 MiB`, `50 GiB`. */
export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let value = n / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

/** A local file as an ObjectReader (`name` names it in messages). */
export function fileObjectReader(path: string, size: number, name: string = path): ObjectReader {
  return {
    name,
    size,
    read: async (start, end) => {
      try {
        const handle = await open(path, 'r');
        try {
          const buffer = Buffer.alloc(Math.max(0, end - start));
          const { bytesRead } = await handle.read(buffer, 0, buffer.length, start);
          if (bytesRead !== buffer.length) throw new Error(`asked for bytes ${start}-${end - 1}, read ${bytesRead}`);
          return buffer;
        } finally {
          await handle.close();
        }
      } catch (err) {
        throw new StorageError(`Could not read ${name}: ${(err as Error).message}`, { cause: err });
      }
    },
    stream: (start, end) => (end > start ? createReadStream(path, { start, end: end - 1, highWaterMark: 256 * 1024 }) : Readable.from([])),
  };
}
