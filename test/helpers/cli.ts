/**
 * Runs `vision-trainer` as a child process, exactly as the platform does: a fresh environment
 * holding only the job's variables (plus PATH/HOME), the compiled CLI (`npm test` builds it).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'vitest';
import { PROJECT_ROOT } from '../../src/paths.js';

export const CLI = join(PROJECT_ROOT, 'dist/src/cli.js');

export interface CliRun {
  child: ChildProcess;
  /** Resolves with the exit code and everything printed. */
  done: Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>;
}

export function startCli(args: string[], env: Record<string, string | undefined>, options: { timeoutMs?: number } = {}): CliRun {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build\` (npm test does it)`);
  const base: Record<string, string> = {};
  for (const k of ['PATH', 'HOME', 'TMPDIR', 'VISION_TRAINER_CACHE', 'XDG_CACHE_HOME', 'PYTHON_BIN', 'OPENBLAS_CORETYPE', 'OPENBLAS_L2_SIZE']) {
    if (process.env[k]) base[k] = process.env[k]!;
  }
  const child = spawn(process.execPath, [CLI, ...args], {
    env: { ...base, LOG_FORMAT: 'json', AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true', ...env } as NodeJS.ProcessEnv,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`vision-trainer ${args.join(' ')} did not finish within ${options.timeoutMs} ms\n${stdout.slice(-3000)}\n${stderr.slice(-3000)}`));
    }, options.timeoutMs ?? 300_000);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
  return { child, done };
}

export async function runCli(args: string[], env: Record<string, string | undefined>, options: { timeoutMs?: number } = {}) {
  return startCli(args, env, options).done;
}

/** A job expected to succeed: exit 0, else the failure shows the end of what it printed. */
export async function runCliOk(args: string[], env: Record<string, string | undefined>, options: { timeoutMs?: number } = { timeoutMs: 240_000 }) {
  const result = await runCli(args, env, options);
  expect(result.code, result.stdout.slice(-4000) + result.stderr.slice(-3000)).toBe(0);
  return result;
}

/** JSON log lines the CLI printed (LOG_FORMAT=json). */
export function logLines(stdout: string): Array<Record<string, unknown>> {
  return stdout
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => {
      try {
        return JSON.parse(l) as Record<string, unknown>;
      } catch {
        return {};
      }
    });
}

/** Direct children of a process (Linux /proc), e.g. the Python interpreter pythonia started. */
export function childPids(pid: number): number[] {
  const out: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) out.push(Number(entry));
    } catch {
      // the process ended while we looked
    }
  }
  return out;
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
