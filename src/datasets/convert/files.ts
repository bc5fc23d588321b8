/**
 * File work every converter shares: linking images into a framework's layout, unique flat
 * file names, preparing the output folder, and writing many small files quickly.
 */
import { createHash } from 'node:crypto';
import { copyFileSync, linkSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import { extname, join } from 'node:path';
import { VisionTrainerError } from '../../errors.js';
import type { DatasetImage } from '../model.js';

/** Extensions ultralytics loads (`IMG_FORMATS`); torchvision/timm accept a subset of the same. */
export const IMAGE_EXTENSIONS: ReadonlySet<string> = new Set(['avif', 'bmp', 'dng', 'heic', 'heif', 'jp2', 'jpeg', 'jpg', 'mpo', 'png', 'tif', 'tiff', 'webp']);

/**
 * Names that are unique within one output folder. Uniqueness is on the stem, ignoring case:
 * ultralytics finds `x.txt` for both `x.jpg` and `x.png`, and a dataset moved to a
 * case-insensitive disk must not merge `A.jpg` with `a.jpg`.
 */
export class UniqueNames {
  private readonly taken = new Set<string>();

  /**
   * A flat name for an image: its path with folders joined by `__` (`cats/001.jpg` →
   * `cats__001.jpg`), the image id added on a clash, and an image extension from the file
   * header when the name has none (frameworks skip files without one).
   */
  take(image: Pick<DatasetImage, 'id' | 'fileName' | 'format'>): string {
    let name = flatName(image);
    let ext = extname(name);
    if (!hasImageExtension(ext) && image.format !== undefined) {
      name += `.${image.format}`;
      ext = `.${image.format}`;
    }
    let stem = name.slice(0, name.length - ext.length);
    // UTF-8 takes at most 3 bytes per UTF-16 unit: short names skip the byte count.
    if (name.length > 66 && Buffer.byteLength(name) > 200) {
      // Keep the end of the path (the most specific part) and a hash of the whole.
      const hash = createHash('sha1').update(image.fileName).digest('hex').slice(0, 10);
      stem = `${stem.slice(-120)}~${hash}`;
      if (ext.length > 16) ext = '';
    }
    let key = stem.toLowerCase();
    if (this.taken.has(key)) {
      const base = `${stem}__${image.id.replace(/[^\w.-]+/g, '_').slice(0, 40)}`;
      stem = base;
      for (let n = 2; this.taken.has(stem.toLowerCase()); n++) stem = `${base}-${n}`;
      key = stem.toLowerCase();
    }
    this.taken.add(key);
    return `${stem}${ext}`;
  }
}

function flatName(image: Pick<DatasetImage, 'id' | 'fileName'>): string {
  return PLAIN_PATH.test(image.fileName)
    ? image.fileName.replaceAll('/', '__')
    : image.fileName
        .split(/[\\/]+/)
        .filter((part) => part !== '' && part !== '.')
        .join('__') || `image-${image.id}`;
}

const hasImageExtension = (ext: string): boolean => IMAGE_EXTENSIONS.has(ext.slice(1).toLowerCase());

/**
 * Whether an image's name in a prepared layout depends on its file's header (`format`, known
 * only once the file is read): a file name without an image extension.
 */
export function nameNeedsFormat(image: Pick<DatasetImage, 'id' | 'fileName'>): boolean {
  return !hasImageExtension(extname(flatName(image)));
}

/** Relative paths with single slashes and no `.` segments or backslashes flatten by replacing `/`. */
const PLAIN_PATH = /^(?!.*(?:^|\/)\.?(?:\/|$))[^\\]*$/;

export type LinkMode = 'symlink' | 'hardlink' | 'copy';

/**
 * Puts an image at a new path without copying it: a symlink, else (filesystems or mounts
 * that refuse symlinks) a hard link, else (another device) a copy. The first mode that
 * works is kept for the rest of the dataset.
 */
export class ImageLinker {
  private order: LinkMode[] = ['symlink', 'hardlink', 'copy'];

  get mode(): LinkMode {
    return this.order[0] as LinkMode;
  }

  link(target: string, path: string): void {
    for (;;) {
      const mode = this.order[0] as LinkMode;
      try {
        if (mode === 'symlink') symlinkSync(target, path);
        else if (mode === 'hardlink') linkSync(target, path);
        else copyFileSync(target, path);
        return;
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        if (this.order.length === 1 || code === 'EEXIST' || code === 'ENOENT' || code === 'ENOSPC') {
          throw new VisionTrainerError(`Cannot place image ${target} at ${path} (${mode}: ${code ?? (error as Error).message})`, {
            cause: error,
            hint: code === 'ENOSPC' ? "The work folder's disk is full; free space or point the work folder elsewhere." : undefined,
          });
        }
        this.order = this.order.slice(1);
      }
    }
  }
}

/**
 * Removes what a converter writes (never the whole folder: it may be the caller's) and
 * creates the folders it needs.
 */
export async function prepareOutputDir(outDir: string, owned: readonly string[], folders: readonly string[]): Promise<void> {
  await Promise.all(owned.map((entry) => rm(join(outDir, entry), { recursive: true, force: true })));
  for (const folder of folders) mkdirSync(join(outDir, folder), { recursive: true });
}

/** Files written between yields to the event loop (a few milliseconds of work). */
const FILES_PER_SLICE = 256;

/** One image's file work: its label file, its link, or both. */
export interface FileWork {
  write?: { path: string; content: string };
  link?: { target: string; path: string };
}

/**
 * Writes many small files and links. Synchronous calls in slices, yielding between slices
 * so timers (heartbeats) keep running: measured on this project's 2-core machine, 100,000
 * label files plus 100,000 symlinks took 1.2 s this way on tmpfs against 5.2 s with
 * fs.promises at 16-64 in flight (per-call promise and thread-pool costs dominate small
 * files), and were no slower on an ext4 disk, where the journal sets the pace for both.
 */
export async function writeFilesInSlices(work: readonly FileWork[], linker: ImageLinker = new ImageLinker()): Promise<void> {
  for (let start = 0; start < work.length; start += FILES_PER_SLICE) {
    const end = Math.min(work.length, start + FILES_PER_SLICE);
    for (let i = start; i < end; i++) {
      const { write, link } = work[i] as FileWork;
      if (write) writeFileSync(write.path, write.content);
      if (link) linker.link(link.target, link.path);
    }
    if (end < work.length) await new Promise<void>((resolve) => setImmediate(resolve));
  }
}

/** The val split's images as the framework will see them, one JSON object per line. */
export const VAL_IMAGES_FILE = 'val_images.jsonl';

/** One line of val_images.jsonl: where the framework reads the image, and which dataset image it is. */
export interface IndexedImage {
  /** The path the framework is given (a link in the prepared layout, or the image itself). */
  path: string;
  image: DatasetImage;
}

/**
 * Writes val_images.jsonl: per image its prepared path, its original path, its dataset id and
 * file name. The trainers read it to name images in the per-image validation results
 * (validation-results/job-{JOB_ID}/epoch-{N}/images.json) the way the dataset names them.
 */
export async function writeValImages(outDir: string, images: readonly IndexedImage[]): Promise<string> {
  const file = join(outDir, VAL_IMAGES_FILE);
  const lines = images.map(({ path, image }) => JSON.stringify({ path, source: image.path, image_id: image.id, file_name: image.fileName }));
  await writeFile(file, lines.length ? `${lines.join('\n')}\n` : '');
  return file;
}

/** What a class name must not bring into a folder name: control characters and path separators. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what this replaces
const UNSAFE_IN_FOLDER_NAME = /[\u0000-\u001f\u007f/\\]+/g;

/**
 * Folder names for classes: path separators and control characters replaced, blank or dot
 * names replaced by `class_<id>`, and clashes (ignoring case) resolved with the class id.
 */
export function classFolderNames(classes: readonly { id: number; name: string }[]): Map<number, string> {
  const folders = new Map<number, string>();
  const taken = new Set<string>();
  for (const cls of classes) {
    let folder = cls.name.trim().replace(UNSAFE_IN_FOLDER_NAME, '_').trim();
    if (folder === '' || /^\.+$/.test(folder)) folder = `class_${cls.id}`;
    if (Buffer.byteLength(folder) > 120) folder = `${folder.slice(0, 100)}_${cls.id}`;
    if (taken.has(folder.toLowerCase())) {
      const base = `${folder}_${cls.id}`;
      folder = base;
      for (let n = 2; taken.has(folder.toLowerCase()); n++) folder = `${base}_${n}`;
    }
    taken.add(folder.toLowerCase());
    folders.set(cls.id, folder);
  }
  return folders;
}

/** Python's `sorted()` on str compares code points; JavaScript's default sort compares UTF-16 units. */
export function compareCodePoints(a: string, b: string): number {
  const ai = a[Symbol.iterator]();
  const bi = b[Symbol.iterator]();
  for (;;) {
    const x = ai.next();
    const y = bi.next();
    if (x.done || y.done) return x.done && y.done ? 0 : x.done ? -1 : 1;
    const dx = x.value.codePointAt(0) as number;
    const dy = y.value.codePointAt(0) as number;
    if (dx !== dy) return dx - dy;
  }
}
