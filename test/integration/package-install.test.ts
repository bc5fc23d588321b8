/**
 * The package as a consumer gets it: `npm pack`, `npm install ./vision-trainer-*.tgz` in a new
 * project, `npx vision-trainer setup` (the venv of the same requirements is reused, so it
 * builds nothing here), and a tiny training through the library imported by its package name:
 * `break` out of `for await` detaches and the run goes on; a bad config throws ConfigError.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { defaultPythonBin, PROJECT_ROOT } from '../../src/paths.js';
import { writeSyntheticDataset } from '../helpers/synthetic.js';

const run = promisify(execFile);
const root = mkdtempSync(join(tmpdir(), 'vt-package-'));
const project = join(root, 'consumer');
// onnxruntime-node's CPU binaries ship in the package; its install script would fetch CUDA ones.
const env = { ...process.env, ONNXRUNTIME_NODE_INSTALL: 'skip', npm_config_audit: 'false', npm_config_fund: 'false' };

beforeAll(async () => {
  // The tarball of the built tree (`npm test` builds first), installed from npm's cache where it can.
  const packed = await run('npm', ['pack', '--pack-destination', root, '--silent'], { cwd: PROJECT_ROOT, env });
  const tarball = join(root, packed.stdout.trim().split('\n').at(-1)!);
  mkdirSync(project);
  writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }));
  await run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', tarball], { cwd: project, env, timeout: 600_000 });
}, 660_000);

describe('vision-trainer installed from its tarball', () => {
  it('carries the Python side and the set-up script, and no tests or sources it does not run', () => {
    const installed = join(project, 'node_modules', 'vision-trainer');
    const files = readdirSync(installed, { recursive: true }).map(String);
    for (const f of ['dist/src/cli.js', 'dist/src/index.d.ts', 'python/requirements.txt', 'python/vision_trainer/environment.py', 'scripts/setup-python.sh']) {
      expect(files).toContain(f);
    }
    expect(files.some((f) => f.startsWith('test/') || f.includes('__pycache__') || f.endsWith('.tsbuildinfo'))).toBe(false);
  });

  it('`npx vision-trainer setup` finds the venv of the same requirements and builds nothing; --version answers', async () => {
    const setup = await run('npx', ['vision-trainer', 'setup'], { cwd: project, env, timeout: 600_000 });
    expect(setup.stdout).toContain(`Python environment ready: ${defaultPythonBin()}`);
    expect(setup.stderr).not.toContain('building Python venv');
    const version = await run('npx', ['vision-trainer', '--version'], { cwd: project, env });
    expect(version.stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
  }, 620_000);

  it('trains through the library by its package name; break detaches; a bad config is a ConfigError', async () => {
    const data = writeSyntheticDataset(join(root, 'dataset'), { taskType: 'image_classification', count: 24, seed: 5 });
    const script = join(project, 'consumer.mjs');
    writeFileSync(
      script,
      `
import { train, infer, exportModel, ConfigError } from 'vision-trainer';
const out = {};
for (const start of [() => infer({ jobId: 'x' }), () => exportModel({ jobId: 'y', exportFormat: 'gif' })]) {
  try { start(); out.threw = 'nothing'; } catch (err) { (out.configErrors ??= []).push(err instanceof ConfigError ? err.exitCode : String(err)); }
}
const run = train({
  jobId: 'consumer-1', taskType: 'image_classification', framework: 'timm', modelName: 'resnet18', datasetId: 'local',
  epochs: 2, imageSize: 32, batchSize: 8, numWorkers: 0, device: 'cpu',
  storage: { type: 'local', root: ${JSON.stringify(join(root, 'storage'))}, datasetPath: ${JSON.stringify(data.root)} },
}, { logger: false, signal: AbortSignal.timeout(600_000) });
const seen = [];
const epochs = [];
run.subscribe((e) => { if (e.type === 'epoch') epochs.push(e.epoch); });
for await (const event of run) { seen.push(event.type); if (event.type === 'epoch') break; }
const result = await run.result;
out.seen = seen.at(-1);
out.epochs = epochs;
out.result = { status: result.status, exitCode: result.exitCode, checkpointUri: result.checkpointUri, error: result.error?.message };
process.stdout.write(JSON.stringify(out));
`,
    );
    const r = await run(process.execPath, [script], { cwd: project, env: { ...env, OMP_NUM_THREADS: '1' }, timeout: 600_000 });
    const out = JSON.parse(r.stdout) as { configErrors: unknown[]; seen: string; epochs: number[]; result: Record<string, unknown> };
    expect(out.configErrors).toEqual([2, 2]);
    // The loop left at the first epoch; the run went on to the second and succeeded.
    expect(out.seen).toBe('epoch');
    expect(out.epochs).toEqual([1, 2]);
    expect(out.result).toMatchObject({ status: 'succeeded', exitCode: 0 });
    expect(String(out.result.checkpointUri)).toContain('checkpoints/job-consumer-1/best.pt');
  }, 620_000);
});
