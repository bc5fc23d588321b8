/**
 * Experiment tracking, framework-native settings and seeds through the CLI, for each framework:
 * two tiny runs with the same SEED and TRAINER_ARGS, the first tracked by a real `mlflow server`
 * (sqlite store, artifact proxy) with TensorBoard on, the second against a tracking server that
 * fails (answers 500, or is down). Both must succeed with identical per-epoch losses; the first
 * must be in MLflow (parameters, per-epoch metrics, validation artefacts, best.pt, status) and in
 * TensorBoard's files as TensorBoard itself reads them; the tracking token must appear nowhere.
 * Plus: an unknown ultralytics TRAINER_ARGS key is a configuration error before any download.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultPythonBin } from '../../src/paths.js';
import { classifierJobs, scratchDir, TINY_VIT } from '../helpers/classifier-runs.js';
import { runCli } from '../helpers/cli.js';
import { uploadDataset } from '../helpers/datasets.js';
import { jobEnv } from '../helpers/job-env.js';
import { useMlflowServer } from '../helpers/mlflow.js';
import { useCallbackReceiver } from '../helpers/receiver.js';
import { useS3Server } from '../helpers/s3.js';
import { writeSyntheticDataset } from '../helpers/synthetic.js';

const s3 = useS3Server();
const backend = useCallbackReceiver();
const mlflow = useMlflowServer();
const jobs = classifierJobs(s3, backend);
const scratch = scratchDir('vt-tracking-');
const TOKEN = 'mlflow-token-7d1e9c42';
const SEED = '5';

/** A tracking server that answers every request with 500, remembering the headers it saw. */
let failing: { server: Server; url: string; headers: IncomingHttpHeaders[] };
beforeAll(async () => {
  const headers: IncomingHttpHeaders[] = [];
  const server = createServer((req, res) => {
    headers.push(req.headers);
    req.resume();
    res.writeHead(500, { 'content-type': 'application/json' }).end('{"error_code":"INTERNAL_ERROR","message":"database is locked"}');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  failing = { server, url: `http://127.0.0.1:${(server.address() as { port: number }).port}`, headers };
  await jobs.dataset();
});
afterAll(() => new Promise<void>((r) => failing.server.close(() => r())));

type Run = Awaited<ReturnType<typeof jobs.run>>;

async function storageText(key: string): Promise<string> {
  const file = join(mkdtempSync(join(scratch, 'get-')), 'file');
  await s3.storage().downloadFile(key, file);
  return readFileSync(file, 'utf8');
}

/** metrics.jsonl of a run: every event, one per line. */
async function eventsOf(jobId: string): Promise<Array<Record<string, any>>> {
  return (await storageText(`logs/job-${jobId}/metrics.jsonl`))
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
}

async function epochLosses(jobId: string): Promise<Array<Record<string, number | null>>> {
  return (await eventsOf(jobId)).filter((e) => e.type === 'epoch').map((e) => e.losses);
}

/** TensorBoard's own reader over the uploaded event files: {tag: [[step, value], ...]}. */
async function tensorboardScalars(jobId: string): Promise<Record<string, Array<[number, number]>>> {
  const dir = mkdtempSync(join(scratch, 'tb-'));
  const objects = await s3.storage().list(`logs/job-${jobId}/tensorboard/`);
  expect(objects.length).toBeGreaterThan(0);
  for (const o of objects) await s3.storage().downloadFile(o.key, join(dir, o.key.split('/').at(-1)!));
  const code = [
    'import json, sys',
    'from tensorboard.backend.event_processing.event_accumulator import EventAccumulator',
    'acc = EventAccumulator(sys.argv[1]); acc.Reload()',
    'print(json.dumps({t: [[e.step, e.value] for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}))',
  ].join('\n');
  const r = spawnSync(defaultPythonBin(), ['-c', code, dir], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(r.stderr.slice(-2000));
  return JSON.parse(r.stdout.trim().split('\n').at(-1)!);
}

async function mlflowRunOf(jobId: string): Promise<Record<string, any>> {
  const experiment = (await mlflow.api(`experiments/get-by-name?experiment_name=tracking-tests`)).experiment.experiment_id;
  const { runs } = await mlflow.api('runs/search', { experiment_ids: [experiment], filter: `tags.job_id = '${jobId}'` });
  expect(runs).toHaveLength(1);
  return runs[0];
}

async function artifactsOf(runId: string, path: string): Promise<string[]> {
  const { files } = await mlflow.api(`artifacts/list?run_id=${runId}&path=${encodeURIComponent(path)}`);
  return (files ?? []).map((f: { path: string }) => f.path).sort();
}

/** The tracked run in MLflow, TensorBoard and storage; returns its epoch losses. */
async function expectTracked(
  run: Run,
  opts: { epochs: number; primary: string; trainerArgs: Record<string, unknown>; curves: 'confusion_matrix' | 'pr_curves' },
) {
  const { jobId } = run;
  expect(run.result.code, run.result.stdout.slice(-3000) + run.result.stderr.slice(-3000)).toBe(0);

  const started = run.callbacks.find((c) => c.kind === 'event' && (c.body as any).event_type === 'training_started')!.body as any;
  expect(started.data.seed).toBe(Number(SEED));
  expect(started.data.trainer_args).toMatchObject(opts.trainerArgs);

  const mlrun = await mlflowRunOf(jobId);
  expect(mlrun.info.status).toBe('FINISHED');
  expect(mlrun.info.run_name).toBe(`run-${jobId}`);
  const params = Object.fromEntries(mlrun.data.params.map((p: { key: string; value: string }) => [p.key, p.value]));
  expect(params).toMatchObject({ epochs: String(opts.epochs), seed: SEED, image_size: '32' });
  for (const [key, value] of Object.entries(opts.trainerArgs))
    expect(params[`trainer_args.${key}`]).toBe(typeof value === 'string' ? value : JSON.stringify(value));
  const lossHistory = (await mlflow.api(`metrics/get-history?run_id=${mlrun.info.run_id}&metric_key=${encodeURIComponent('train/loss')}`)).metrics;
  expect(lossHistory.map((m: { step: number }) => m.step).sort()).toEqual(Array.from({ length: opts.epochs }, (_, i) => i + 1));
  const primaryHistory = (await mlflow.api(`metrics/get-history?run_id=${mlrun.info.run_id}&metric_key=${encodeURIComponent(`val/${opts.primary}`)}`)).metrics;
  expect(primaryHistory).toHaveLength(opts.epochs);
  expect(await artifactsOf(mlrun.info.run_id, 'checkpoints')).toEqual(['checkpoints/best.pt']);
  for (const folder of ['validation/best', 'validation/last']) {
    expect(await artifactsOf(mlrun.info.run_id, folder)).toEqual(
      [`${folder}/${opts.curves}.json`, `${folder}/metrics.json`, `${folder}/per_class_metrics.json`].sort(),
    );
  }

  const scalars = await tensorboardScalars(jobId);
  expect(scalars['train/loss']!.map(([step]) => step)).toEqual(Array.from({ length: opts.epochs }, (_, i) => i + 1));
  expect(scalars[`val/${opts.primary}`]).toHaveLength(opts.epochs);
  expect(scalars['batch/loss']!.length).toBeGreaterThanOrEqual(opts.epochs);

  const events = await eventsOf(jobId);
  expect(events.at(-1)).toMatchObject({ type: 'done', status: 'succeeded' });
  expect(events.filter((e) => e.type === 'epoch')).toHaveLength(opts.epochs);
  const losses = events.filter((e) => e.type === 'epoch').map((e) => e.losses);
  // The MLflow metrics are the epoch events' values.
  expect(lossHistory.sort((a: any, b: any) => a.step - b.step).map((m: { value: number }) => m.value)).toEqual(losses.map((l) => l.loss));
  return losses;
}

/** The run against a failing tracking server: it succeeds, says why tracking stopped, never shows the token. */
async function expectUntracked(run: Run, warning: RegExp) {
  expect(run.result.code, run.result.stdout.slice(-3000) + run.result.stderr.slice(-3000)).toBe(0);
  expect(run.callbacks.at(-1)!.body).toMatchObject({ status: 'succeeded' });
  expect(run.result.stdout).toMatch(warning);
  expect(run.result.stdout).toMatch(/MLflow tracking is off for the rest of this job/);
  const log = await storageText(`logs/job-${run.jobId}/training.log`);
  for (const text of [run.result.stdout, run.result.stderr, log, JSON.stringify(run.callbacks)]) expect(text).not.toContain(TOKEN);
}

const tracked = (jobId: string, url: string, extra: Record<string, string> = {}) => ({
  SEED,
  MLFLOW_TRACKING_URI: url,
  MLFLOW_EXPERIMENT_NAME: 'tracking-tests',
  MLFLOW_RUN_NAME: `run-${jobId}`,
  MLFLOW_TRACKING_TOKEN: TOKEN,
  ...extra,
});

describe('tracking, TRAINER_ARGS and SEED', () => {
  it('timm: MLflow + TensorBoard; a 500-answering tracking server fails nothing; same SEED, same losses', async () => {
    const trainerArgs = { opt: 'sgd', momentum: 0.8, smoothing: 0.05, hflip: 0.0 };
    const vars = { TASK_TYPE: 'image_classification', MODEL_NAME: 'resnet18', EPOCHS: '2', TRAINER_ARGS: JSON.stringify(trainerArgs) };
    const a = await jobs.run('track-timm-a', { ...vars, ...tracked('track-timm-a', mlflow.url, { ENABLE_TENSORBOARD: 'true' }) });
    const lossesA = await expectTracked(a, { epochs: 2, primary: 'accuracy', trainerArgs: { ...trainerArgs, sched: 'cosine' }, curves: 'confusion_matrix' });
    expect(await storageText(`logs/job-${a.jobId}/training.log`)).toContain(`SEED=${SEED}: generators seeded, deterministic algorithms on`);
    const b = await jobs.run('track-timm-b', { ...vars, ...tracked('track-timm-b', failing.url) });
    await expectUntracked(
      b,
      /MLflow: could not start the run: GET http:\/\/127\.0\.0\.1:\d+\/api\/2\.0\/mlflow\/experiments\/get-by-name\?… answered 500 INTERNAL_ERROR: database is locked/,
    );
    // The token went to the server (and nowhere else).
    expect(failing.headers.map((h) => h.authorization)).toContain(`Bearer ${TOKEN}`);
    expect(await epochLosses(b.jobId)).toEqual(lossesA);
  }, 600_000);

  it('transformers: MLflow + TensorBoard; a tracking server that is down fails nothing; same SEED, same losses', async () => {
    const trainerArgs = { weight_decay: 0.01, lr_scheduler_type: 'linear', warmup_steps: 0 };
    const vars = {
      TASK_TYPE: 'image_classification',
      MODEL_NAME: 'vit-base-patch16-224',
      EPOCHS: '2',
      HF_CONFIG_OVERRIDES: JSON.stringify(TINY_VIT),
      TRAINER_ARGS: JSON.stringify(trainerArgs),
    };
    const a = await jobs.run('track-hf-a', { ...vars, ...tracked('track-hf-a', mlflow.url, { ENABLE_TENSORBOARD: 'true' }) });
    const lossesA = await expectTracked(a, { epochs: 2, primary: 'accuracy', trainerArgs, curves: 'confusion_matrix' });
    expect(await storageText(`logs/job-${a.jobId}/training.log`)).toContain(`SEED=${SEED}: generators seeded, deterministic algorithms on`);
    const down = await new Promise<string>((resolve) => {
      const s = createServer().listen(0, '127.0.0.1', () => {
        const url = `http://127.0.0.1:${(s.address() as { port: number }).port}`;
        s.close(() => resolve(url));
      });
    });
    const b = await jobs.run('track-hf-b', { ...vars, ...tracked('track-hf-b', down) });
    await expectUntracked(b, /MLflow: could not start the run: .*(ECONNREFUSED|connect)/);
    expect(await epochLosses(b.jobId)).toEqual(lossesA);
  }, 600_000);

  it('ultralytics detection: MLflow (PR curves) + TensorBoard + result plots; same SEED, same losses', async () => {
    const dir = mkdtempSync(join(scratch, 'det-'));
    writeSyntheticDataset(dir, { taskType: 'object_detection', count: 20, width: 64, height: 48, seed: 3 });
    const datasetId = `ds-track-det-${Date.now()}`;
    await uploadDataset(s3.storage(), datasetId, dir, 'zip');
    const trainerArgs = { patience: 5, mosaic: 0.5, optimizer: 'SGD', close_mosaic: 0 };
    const run = async (jobId: string, extra: Record<string, string>) => {
      const workDir = mkdtempSync(join(scratch, `${jobId}-`));
      const env = jobEnv(s3, backend, jobId, {
        TASK_TYPE: 'object_detection',
        MODEL_NAME: 'yolo11n',
        DATASET_ID: datasetId,
        EPOCHS: '2',
        CHECKPOINT_FREQUENCY: '1',
        WORK_DIR: workDir,
        TRAINER_ARGS: JSON.stringify(trainerArgs),
        ...extra,
      });
      const result = await runCli(['train'], env, { timeoutMs: 280_000 });
      return { jobId, result, callbacks: backend.receiver.received.filter((c) => c.jobId === jobId), keys: [], work: workDir, labels: new Map() } as Run;
    };
    const a = await run('track-yolo-a', tracked('track-yolo-a', mlflow.url, { ENABLE_TENSORBOARD: 'true' }));
    const lossesA = await expectTracked(a, { epochs: 2, primary: 'mAP50-95', trainerArgs, curves: 'pr_curves' });
    expect(Object.keys(lossesA[0]!).sort()).toEqual(['box_loss', 'cls_loss', 'dfl_loss', 'loss']);
    const plots = (await s3.storage().list(`logs/job-${a.jobId}/plots/`)).map((o) => o.key.split('/').at(-1));
    expect(plots).toEqual(expect.arrayContaining(['results.png', 'results.csv', 'confusion_matrix.png', 'args.yaml']));
    expect(plots.filter((p) => !/\.(png|jpe?g|csv|yaml)$/.test(p!))).toEqual([]);
    // ultralytics ran with SEED and the TRAINER_ARGS (its own record of its arguments).
    const args = await storageText(`logs/job-${a.jobId}/plots/args.yaml`);
    expect(args).toMatch(new RegExp(`^seed: ${SEED}$`, 'm'));
    expect(args).toMatch(/^deterministic: true$/m);
    expect(args).toMatch(/^mosaic: 0\.5$/m);
    expect(args).toMatch(/^optimizer: SGD$/m);
    const b = await run('track-yolo-b', { SEED });
    expect(b.result.code, b.result.stdout.slice(-3000)).toBe(0);
    expect(await epochLosses(b.jobId)).toEqual(lossesA);
  }, 600_000);

  it('an unknown ultralytics TRAINER_ARGS key is a configuration error before any download, the closest valid key first', async () => {
    const workDir = mkdtempSync(join(scratch, 'bad-args-'));
    const env = jobEnv(s3, backend, 'track-bad-args', {
      TASK_TYPE: 'object_detection',
      MODEL_NAME: 'yolo11n',
      DATASET_ID: 'no-such-dataset',
      EPOCHS: '1',
      WORK_DIR: workDir,
      TRAINER_ARGS: '{"mosiac":0.5,"patience":3}',
    });
    const result = await runCli(['train'], env, { timeoutMs: 200_000 });
    expect(result.code, result.stdout.slice(-3000)).toBe(2);
    const callbacks = backend.receiver.received.filter((c) => c.jobId === 'track-bad-args');
    expect(callbacks.map((c) => c.kind)).toEqual(['trainingDone']);
    const done = callbacks[0]!.body as { status: string; error_message: string };
    expect(done.status).toBe('failed');
    expect(done.error_message).toMatch(/TRAINER_ARGS mosiac: is not a setting of ultralytics' train arguments; valid keys \(closest first\): mosaic, /);
  }, 300_000);
});
