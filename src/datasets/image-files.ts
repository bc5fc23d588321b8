/**
 * Checks that every image (and semantic mask) file exists, is an image, and has the size the
 * annotations declare. Only the header is read (image-size), a few files at a time, so a
 * large dataset is verified in seconds without decoding pixels.
 */
import { close, open, read } from 'node:fs';
import { relative } from 'node:path';
import { imageSize } from 'image-size';
import type { ReadImage } from './read-common.js';
import type { ProblemList } from './checks.js';
import { FILE_CONCURRENCY, forEachBounded } from './concurrency.js';

/** Most formats keep the size in the first bytes; a JPEG's can sit after a large EXIF block. */
const FIRST_READ_BYTES = 64 * 1024;
const MAX_READ_BYTES = 1024 * 1024;

export interface ImageHeader {
  width: number;
  height: number;
  /** `jpg`, `png`, `webp`, ... as image-size names them. */
  type: string;
  /** EXIF orientation; 5-8 mean the stored pixels are rotated a quarter turn. */
  orientation?: number;
}

export type HeaderResult = { ok: true; header: ImageHeader } | { ok: false; reason: string };

/**
 * Reads one image header; `scratch` is a buffer the caller may reuse between calls.
 *
 * Written with fs callbacks rather than fs/promises: a FileHandle costs several promises and
 * a tracked object per file, which measured twice as slow (10,000 files: 250-380 ms against
 * 510-580 ms), and a dataset can have hundreds of thousands of images. No stat call either:
 * the first read tells an empty file (0 bytes), and reading a folder fails with EISDIR.
 */
export function readImageHeader(path: string, scratch: Buffer = Buffer.allocUnsafe(FIRST_READ_BYTES)): Promise<HeaderResult> {
  return new Promise((resolve) => {
    open(path, 'r', (openError, fd) => {
      if (openError) {
        resolve({ ok: false, reason: describeOpenError(openError) });
        return;
      }
      const finish = (result: HeaderResult) => close(fd, () => resolve(result));
      const readInto = (buffer: Buffer, mayRetry: boolean) =>
        read(fd, buffer, 0, buffer.length, 0, (readError, bytesRead) => {
          if (readError) {
            finish({ ok: false, reason: readError.code === 'EISDIR' ? 'is a folder, not a file' : `cannot be read (${readError.code ?? readError.message})` });
            return;
          }
          if (bytesRead === 0) {
            finish({ ok: false, reason: 'is empty (0 bytes)' });
            return;
          }
          const parsed = parseHeader(buffer.subarray(0, bytesRead));
          // A full buffer that does not parse may hold the size further on (JPEG after EXIF).
          if (!parsed.ok && mayRetry && bytesRead === buffer.length) readInto(Buffer.allocUnsafe(MAX_READ_BYTES), false);
          else finish(parsed);
        });
      readInto(scratch, scratch.length < MAX_READ_BYTES);
    });
  });
}

function parseHeader(bytes: Uint8Array): HeaderResult {
  try {
    const size = imageSize(bytes);
    if (!(size.width > 0 && size.height > 0) || size.type === undefined) {
      return { ok: false, reason: `is not a readable image (its ${size.type ?? 'unknown'} header gives no size)` };
    }
    const header: ImageHeader = { width: size.width, height: size.height, type: size.type };
    if (size.orientation !== undefined) header.orientation = size.orientation;
    return { ok: true, header };
  } catch (error) {
    const detail = (error as Error).message.startsWith('unsupported file type') ? 'not a known image format' : (error as Error).message;
    return { ok: false, reason: `is not a readable image (${detail})` };
  }
}

function describeOpenError(error: unknown): string {
  const code = (error as NodeJS.ErrnoException).code;
  if (code === 'ENOENT' || code === 'ENOTDIR') return 'does not exist';
  if (code === 'EACCES' || code === 'EPERM') return 'cannot be opened (permission denied)';
  if (code === 'EISDIR') return 'is a folder, not a file';
  return `cannot be opened (${code ?? (error as Error).message})`;
}

/** Whether the header's size is the declared one, allowing EXIF rotation to swap the sides. */
function sizeAgrees(header: ImageHeader, width: number, height: number): boolean {
  if (header.width === width && header.height === height) return true;
  const rotated = header.orientation !== undefined && header.orientation >= 5 && header.orientation <= 8;
  return rotated && header.width === height && header.height === width;
}

/**
 * Verifies each image's file (and mask), reporting problems in the images' order. Sets
 * `image.format` from the header, which the converters use to give links a usable extension.
 */
export async function verifyImageFiles(targets: readonly ReadImage[], root: string, problems: ProblemList, concurrency = FILE_CONCURRENCY): Promise<void> {
  const findings: Array<Array<{ field: string; message: string }> | undefined> = new Array(targets.length);
  const scratch = Array.from({ length: Math.min(concurrency, targets.length) }, () => Buffer.allocUnsafe(FIRST_READ_BYTES));
  await forEachBounded(targets, concurrency, async ({ image, field, maskField }, index, worker) => {
    const found: Array<{ field: string; message: string }> = [];
    const shown = relative(root, image.path);
    const result = await readImageHeader(image.path, scratch[worker]);
    if (!result.ok) {
      found.push({ field: `${field}.file_name`, message: `image file ${shown} ${result.reason}; upload the file or remove the entry` });
    } else {
      image.format = result.header.type;
      if (!sizeAgrees(result.header, image.width, image.height)) {
        found.push({
          field: `${field}.width/height`,
          message: `declared ${image.width}x${image.height} but ${shown} is ${result.header.width}x${result.header.height}; fix width and height (boxes are in pixels of the real image)`,
        });
      }
    }
    if (image.maskPath !== undefined) {
      const maskAt = maskField ?? `${field}.annotation.mask_file`;
      const mask = await readImageHeader(image.maskPath, scratch[worker]);
      const maskShown = relative(root, image.maskPath);
      if (!mask.ok) found.push({ field: maskAt, message: `mask file ${maskShown} ${mask.reason}` });
      else if (mask.header.width !== image.width || mask.header.height !== image.height) {
        found.push({
          field: maskAt,
          message: `mask ${maskShown} is ${mask.header.width}x${mask.header.height} but the image is ${image.width}x${image.height}; a mask must match its image pixel for pixel`,
        });
      }
    }
    if (found.length) findings[index] = found;
  });
  findings.forEach((found, index) => {
    for (const { field, message } of found ?? []) problems.add((targets[index] as ReadImage).label, field, message);
  });
}
