/**
 * The command line in-process (src/cli.ts `main`): strict parsing, suggestions, `--version`,
 * `--env-file` and `NAME=value` arguments, exit codes. Nothing here starts a job: every case
 * ends at a usage or configuration error, or at help.
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { main } from '../../src/cli.js';
import { applyCommandLine, closestVariable, variableNames } from '../../src/config/command-line.js';
import { interpreterProblem } from '../../src/jobs/preflight.js';
import { PROJECT_ROOT } from '../../src/paths.js';

async function cli(args: string[], env: NodeJS.ProcessEnv = {}) {
  let out = '';
  let err = '';
  const output = {
    out: (text: string) => {
      out += text;
    },
    err: (text: string) => {
      err += text;
    },
  };
  const code = await main(args, env, output);
  return { code, out, err };
}

describe('vision-trainer command line', () => {
  it('--version prints the package version and exits 0', async () => {
    const version = (JSON.parse(readFileSync(join(PROJECT_ROOT, 'package.json'), 'utf8')) as { version: string }).version;
    for (const flag of ['--version', '-V']) {
      const r = await cli([flag]);
      expect(r.code).toBe(0);
      expect(r.out.trim()).toBe(version);
    }
  });

  it('an unknown option is a usage error (exit 2) that names the variable to set', async () => {
    const r = await cli(['train', '--epochs', '10']);
    expect(r.code).toBe(2);
    expect(r.err).toContain("unknown option '--epochs'");
    expect(r.err).toContain('set EPOCHS (e.g. `vision-trainer train EPOCHS=...`');
  });

  it('a misspelt option or command gets the nearest one', async () => {
    const option = await cli(['train', '--no-callback']);
    expect(option.code).toBe(2);
    expect(option.err).toMatch(/Did you mean --no-callbacks\?/);
    const command = await cli(['trian']);
    expect(command.code).toBe(2);
    expect(command.err).toMatch(/unknown command 'trian'[\s\S]*Did you mean train\?/);
    const none = await cli(['doctor', '--bogus']);
    expect(none.code).toBe(2);
  });

  it('NAME=value arguments must name a variable of the command: every problem at once, with what was meant', async () => {
    const r = await cli(['train', 'model=yolo11n.pt', 'EPOHCS=2', 'epochs', 'EXPORT_FORMAT=onnx']);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/Invalid train configuration \(4 problems\)/);
    expect(r.err).toContain('model="yolo11n.pt": is not a variable of vision-trainer train; did you mean MODEL_NAME?');
    expect(r.err).toContain('EPOHCS="2": is not a variable of vision-trainer train; did you mean EPOCHS?');
    expect(r.err).toContain('epochs: is not NAME=value; to set EPOCHS, write EPOCHS=...');
    expect(r.err).toContain('EXPORT_FORMAT="onnx": is not read by vision-trainer train (it is a variable of vision-trainer export)');
    const infer = await cli(['infer', 'EPOCHS=3']);
    expect(infer.err).toContain('EPOCHS="3": is not read by vision-trainer infer (it is a variable of vision-trainer train)');
  });

  it('--no-callbacks does not ask for a backend; without it BACKEND_BASE_URL and CALLBACK_TOKEN are required', async () => {
    const local = await cli(['train', '--no-callbacks', 'EPOCHS=1']);
    expect(local.code).toBe(2);
    expect(local.err).toContain('DATASET_ID: is required');
    expect(local.err).not.toContain('BACKEND_BASE_URL');
    expect(local.err).not.toContain('EPOCHS');
    const platform = await cli(['train', 'EPOCHS=1']);
    expect(platform.err).toContain('BACKEND_BASE_URL: is required');
    expect(platform.err).toContain('CALLBACK_TOKEN: is required');
  });

  it('an --env-file that cannot be read is a configuration error', async () => {
    const r = await cli(['train', '--env-file', '/nonexistent/job.env']);
    expect(r.code).toBe(2);
    expect(r.err).toContain('--env-file="/nonexistent/job.env": cannot be read: ENOENT');
  });

  it('help lists the options and every variable; exit 0', async () => {
    const r = await cli(['train', '--help']);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/--env-file <file>/);
    expect(r.out).toMatch(/--no-callbacks/);
    expect(r.out).toMatch(/MAX_TRAINING_TIME_SECONDS\n\s+Stop after this many seconds.*\(default: 86400\)/);
    const top = await cli(['--help']);
    expect(top.code).toBe(0);
    for (const command of ['train', 'infer', 'export', 'doctor', 'setup', 'dev']) expect(top.out).toContain(command);
  });
});

describe('the three sources of a command environment', () => {
  it('files fill what the environment lacks (later files win), the environment wins over files, arguments win over both', () => {
    const dir = mkdtempSync(join(tmpdir(), 'vt-envfile-'));
    const a = join(dir, 'a.env');
    const b = join(dir, 'b.env');
    writeFileSync(a, '# a comment\nEPOCHS=3\nMODEL_NAME="yolo11n"\nBATCH_SIZE=4\nexport IMAGE_SIZE=64\nOMP_NUM_THREADS=1\n');
    writeFileSync(b, "BATCH_SIZE=16\nDATASET_ID='ds # not a comment'\nEPOHCS=9\n");
    const env: NodeJS.ProcessEnv = { MODEL_NAME: 'yolo11s' };
    const warnings = applyCommandLine(env, 'train', { envFiles: [a, b], assignments: ['EPOCHS=7'] });
    expect(env).toMatchObject({
      EPOCHS: '7',
      MODEL_NAME: 'yolo11s',
      BATCH_SIZE: '16',
      IMAGE_SIZE: '64',
      DATASET_ID: 'ds # not a comment',
      OMP_NUM_THREADS: '1',
      EPOHCS: '9',
    });
    expect(warnings).toContain('--env-file: MODEL_NAME is also set in the environment, whose value is used');
    expect(warnings.some((w) => w.includes('EPOHCS is not a variable of vision-trainer train; did you mean EPOCHS?'))).toBe(true);
    // Names that are no variable at all (thread counts, CUDA settings) are passed through silently.
    expect(warnings.some((w) => w.includes('OMP_NUM_THREADS'))).toBe(false);
  });

  it('suggests the contract variable for peer tools names', () => {
    const names = variableNames('train');
    expect(closestVariable('--imgsz', names)).toBe('IMAGE_SIZE');
    expect(closestVariable('lr0', names)).toBe('LEARNING_RATE');
    expect(closestVariable('--model-name', names)).toBe('MODEL_NAME');
    expect(closestVariable('batch-size', names)).toBe('BATCH_SIZE');
    expect(closestVariable('completely-unrelated', names)).toBeUndefined();
  });
});

describe('preflight: where the interpreter comes from', () => {
  it('names PYTHON_BIN and the setup command when there is no Python to run', () => {
    const missing = interpreterProblem('/nonexistent/python');
    expect(missing?.variable).toBe('PYTHON_BIN');
    expect(missing?.message).toContain('is not an executable file');
    const cache = mkdtempSync(join(tmpdir(), 'vt-cache-'));
    const unbuilt = interpreterProblem(undefined, { VISION_TRAINER_CACHE: cache });
    expect(unbuilt?.message).toContain(`is not set and the Python venv of this version is not built (${cache}/venv-`);
    expect(unbuilt?.message).toContain('npx vision-trainer setup');
    expect(interpreterProblem(process.execPath)).toBeUndefined();
  });
});
