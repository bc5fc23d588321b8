/**
 * The parts of a job context that unit tests of a job's stages fill in by hand: a work folder
 * whose subfolders exist when asked for (except `dataset`, which a download creates by renaming
 * its staging folder onto it), and a logger that keeps what it was told.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

export function jobParts(root: string) {
  const logged: string[] = [];
  const keep = (m: string) => void logged.push(m);
  mkdirSync(join(root, 'scratch'), { recursive: true });
  return {
    logged,
    logger: { stage: keep, info: keep, debug: keep, warn: keep },
    work: {
      sub: (name: string) => {
        const path = join(root, 'job', name);
        if (name !== 'dataset') mkdirSync(path, { recursive: true });
        return path;
      },
    },
  };
}
