/** Each job works in its own folder under WORK_DIR (default: a temp folder), removed at the end unless KEEP_WORK_DIR. */
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

export interface WorkDir {
  path: string;
  sub(name: string): string;
  cleanup(): Promise<void>;
}

export async function createWorkDir(options: { parent?: string | undefined; jobId: string; keep: boolean }): Promise<WorkDir> {
  const parent = resolve(options.parent ?? tmpdir());
  await mkdir(parent, { recursive: true });
  const path = await mkdtemp(join(parent, `vision-trainer-${options.jobId.slice(0, 40)}-`));
  return {
    path,
    sub: (name) => join(path, name),
    cleanup: async () => {
      if (!options.keep) await rm(path, { recursive: true, force: true });
    },
  };
}
