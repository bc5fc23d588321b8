import { lstatSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';

// Filesystems that refuse symlinks (some mounts, Windows without privileges) or hard links
// (another device) are simulated by making those calls fail the way the OS does.
const refuse = vi.hoisted(() => ({ symlink: false, link: false }));
vi.mock('node:fs', async (importOriginal) => {
  const actual = await importOriginal<typeof import('node:fs')>();
  const fail = (code: string) => Object.assign(new Error(`${code}: operation not permitted`), { code });
  return {
    ...actual,
    symlinkSync: (...args: Parameters<typeof actual.symlinkSync>) =>
      refuse.symlink
        ? (() => {
            throw fail('EPERM');
          })()
        : actual.symlinkSync(...args),
    linkSync: (...args: Parameters<typeof actual.linkSync>) =>
      refuse.link
        ? (() => {
            throw fail('EXDEV');
          })()
        : actual.linkSync(...args),
  };
});

const { ImageLinker, writeFilesInSlices } = await import('../../src/datasets/convert/files.js');

const scratch = mkdtempSync(join(tmpdir(), 'vt-linker-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));
const target = join(scratch, 'image.png');
writeFileSync(target, 'pixels');

describe('ImageLinker', () => {
  it('symlinks when it can', () => {
    refuse.symlink = false;
    refuse.link = false;
    const linker = new ImageLinker();
    linker.link(target, join(scratch, 'a.png'));
    expect(linker.mode).toBe('symlink');
    expect(lstatSync(join(scratch, 'a.png')).isSymbolicLink()).toBe(true);
  });

  it('falls back to a hard link, then to a copy, and keeps the mode that worked', async () => {
    refuse.symlink = true;
    refuse.link = false;
    const hard = new ImageLinker();
    await writeFilesInSlices([{ link: { target, path: join(scratch, 'b.png') } }, { link: { target, path: join(scratch, 'c.png') } }], hard);
    expect(hard.mode).toBe('hardlink');
    expect(statSync(join(scratch, 'c.png')).ino).toBe(statSync(target).ino);

    refuse.link = true;
    const copy = new ImageLinker();
    copy.link(target, join(scratch, 'd.png'));
    expect(copy.mode).toBe('copy');
    expect(lstatSync(join(scratch, 'd.png')).isSymbolicLink()).toBe(false);
    expect(statSync(join(scratch, 'd.png')).ino).not.toBe(statSync(target).ino);
    expect(readFileSync(join(scratch, 'd.png'), 'utf8')).toBe('pixels');
  });

  it('reports a path that is taken instead of falling back', () => {
    refuse.symlink = false;
    refuse.link = false;
    const linker = new ImageLinker();
    linker.link(target, join(scratch, 'e.png'));
    expect(() => linker.link(target, join(scratch, 'e.png'))).toThrow(/Cannot place image .*image\.png at .*e\.png \(symlink: EEXIST\)/);
    expect(linker.mode).toBe('symlink');
  });
});
