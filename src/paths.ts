/**
 * Where the project's own files and the cached Python venv live. The venv sits in a cache
 * folder keyed by the hash of python/requirements.txt (scripts/setup.sh computes the same
 * key), so a fresh clone reuses it and a changed requirement builds a new one.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository (or installed package) root: the folder holding package.json. */
export const PROJECT_ROOT = (() => {
  // Compiled files live in dist/src/, sources in src/: walk up to package.json.
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    try {
      readFileSync(join(dir, 'package.json'));
      return dir;
    } catch {
      dir = dirname(dir);
    }
  }
  throw new Error(`vision-trainer: cannot find the project root (package.json) above ${fileURLToPath(import.meta.url)}`);
})();

export const PYTHON_DIR = join(PROJECT_ROOT, 'python');
export const REQUIREMENTS_FILE = join(PYTHON_DIR, 'requirements.txt');

export function cacheRoot(env: NodeJS.ProcessEnv = process.env): string {
  if (env.VISION_TRAINER_CACHE) return resolve(env.VISION_TRAINER_CACHE);
  return join(env.XDG_CACHE_HOME ? resolve(env.XDG_CACHE_HOME) : join(homedir(), '.cache'), 'vision-trainer');
}

export function requirementsHash(): string {
  return createHash('sha256').update(readFileSync(REQUIREMENTS_FILE)).digest('hex').slice(0, 12);
}

/** The venv built by `npm run setup` for the current requirements. */
export function defaultVenvDir(env: NodeJS.ProcessEnv = process.env): string {
  return join(cacheRoot(env), `venv-${requirementsHash()}`);
}

/** The interpreter jobs use: PYTHON_BIN when set, else the cached venv's python. */
export function defaultPythonBin(env: NodeJS.ProcessEnv = process.env): string {
  return env.PYTHON_BIN ? resolve(env.PYTHON_BIN) : join(defaultVenvDir(env), 'bin', 'python');
}

/** `name==version` pins of python/requirements.txt, by lower-case distribution name. */
export function pinnedRequirements(file = REQUIREMENTS_FILE): Record<string, string> {
  const pins: Record<string, string> = {};
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const m = /^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([^\s;#]+)/.exec(line);
    if (m) pins[m[1]!.toLowerCase()] = m[2]!;
  }
  return pins;
}

/** Whether `vision-trainer setup` finished building the venv (its marker is written last). */
export function venvIsComplete(env: NodeJS.ProcessEnv = process.env): boolean {
  return existsSync(join(defaultVenvDir(env), '.complete'));
}
