/**
 * Training on several processes and machines, proved on this machine's CPUs with gloo on
 * localhost (src/jobs/distributed.ts, python/vision_trainer/common/distributed.py): one node
 * with two worker processes for each framework; two "nodes" as two `vision-trainer train`
 * processes of one job, where only node 0 reports (as the retry of an attempt whose node 1 was
 * preempted: both nodes resume); node 1 refusing to start, which node 0 learns at once; node 1
 * killed mid-epoch, where the job ends with one failed completion naming it. Every process runs
 * one thread (2 cores).
 */
import { mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../src/jobs/distributed.js';
import { type CliRun, startCli } from '../helpers/cli.js';
import {
  BY_ID,
  CLASS_NAMES,
  classifierJobs,
  expectCompleteClassifierRun,
  fixture,
  inIdOrder,
  scratchDir,
  TINY_VIT,
  valImages,
  type ClassifierRun,
} from '../helpers/classifier-runs.js';
import { useCallbackReceiver } from '../helpers/receiver.js';
import { useS3Server } from '../helpers/s3.js';

const s3 = useS3Server();
const backend = useCallbackReceiver();
const jobs = classifierJobs(s3, backend);
const scratch = scratchDir('vt-dist-');
const ONE_THREAD = { OMP_NUM_THREADS: '1' };

beforeAll(async () => {
  await jobs.dataset();
});

/** best.pt of a run, re-evaluated in one plain process on the run's val images. */
async function reevaluateBest(run: ClassifierRun) {
  const best = join(scratch, `${run.jobId}-best.pt`);
  await s3.storage().downloadFile(`checkpoints/job-${run.jobId}/best.pt`, best);
  const images = join(scratch, `${run.jobId}-val.json`);
  const layout = existsManifest(run.work) ? 'manifest' : 'imagefolder';
  writeFileSync(images, JSON.stringify(valImages(run.work, layout)));
  const seen = fixture<{ confusion_matrix: number[][]; metadata: Record<string, any> }>('reevaluate', best, images);
  return { ...seen, confusion_matrix: inIdOrder(seen.confusion_matrix, seen.metadata.class_ids) };
}
const existsManifest = (work: string) => readdirSync(join(work, 'data')).includes('val.jsonl');

/** What every framework's report must be, whatever its metrics: each epoch once, the checkpoints once, one `done`. */
function expectOneReport(run: ClassifierRun, epochs: number) {
  expect(run.result.code, run.result.stdout.slice(-3000) + run.result.stderr.slice(-3000)).toBe(0);
  const epochsOf = (kind: string) =>
    run.callbacks.filter((c) => c.kind === kind && (c.body as { batch?: number }).batch === undefined).map((c) => (c.body as { epoch: number }).epoch);
  const all = Array.from({ length: epochs }, (_, i) => i + 1);
  expect(epochsOf('heartbeat')).toEqual(all);
  expect(epochsOf('validation')).toEqual(all);
  expect(run.keys).toEqual([...all.map((e) => `checkpoints/job-${run.jobId}/epoch-${e}.pt`), `checkpoints/job-${run.jobId}/best.pt`].sort());
  const dones = run.callbacks.filter((c) => c.kind === 'trainingDone');
  expect(dones.map((c) => (c.body as { status: string }).status)).toEqual(['succeeded']);
}

/** The launcher's own line: this node ran that many worker processes (DDP), not one process. */
const expectWorkers = (run: ClassifierRun, n: number) =>
  expect(run.result.stdout + run.result.stderr).toContain(`vision-trainer: node 0 of 1: ${n} worker process(es) on the CPU`);

const validationsOf = (run: ClassifierRun) => run.callbacks.filter((c) => c.kind === 'validation').map((c) => c.body as Record<string, any>);

/*
 * A 2-process epoch against one process on the same 16 training images, the same model start and
 * the same global batch: the gradients are averaged over as many images, but the ranks draw
 * their shards in another order than one process does (and BatchNorm, in resnet18 and YOLO, sees
 * half a batch per rank), so the validation loss is close, not equal. Every val image is counted
 * once (the shards are gathered, not padded). The runs are seeded and single-threaded, so the
 * differences repeat; measured here (docs/scaling.md): timm 0.065, transformers 0.0001 (its ViT
 * has no BatchNorm), ultralytics 0.003. The tolerances leave room for other CPUs' arithmetic.
 */
const TIMM_LOSS_TOLERANCE = 0.35;
const HF_LOSS_TOLERANCE = 0.05;
const YOLO_LOSS_TOLERANCE = 0.05;
function expectCloseTo(single: Record<string, any>, distributed: Record<string, any>, lossTolerance: number, what: string) {
  expect(distributed.num_images_validated).toBe(single.num_images_validated);
  const loss = `validation loss ${distributed.metrics.loss} (2 processes) against ${single.metrics.loss} (1 process)`;
  console.info(`${what}: ${loss}, accuracy ${distributed.metrics.accuracy} against ${single.metrics.accuracy}`);
  expect(Math.abs(distributed.metrics.loss - single.metrics.loss), loss).toBeLessThan(lossTolerance);
}

describe('one node, NPROC_PER_NODE=2 on the CPU (gloo)', () => {
  it("timm: one report of each epoch; the metrics are a single process's within tolerance; best.pt re-evaluates to the same matrix", async () => {
    const single = await jobs.run('dist-timm-single', { TASK_TYPE: 'image_classification', MODEL_NAME: 'resnet18', EPOCHS: '1', ...ONE_THREAD });
    await expectCompleteClassifierRun(single, 1, s3, backend);
    const run = await jobs.run('dist-timm', { TASK_TYPE: 'image_classification', MODEL_NAME: 'resnet18', EPOCHS: '1', NPROC_PER_NODE: '2', ...ONE_THREAD });
    const { validations, bestEpoch } = await expectCompleteClassifierRun(run, 1, s3, backend);
    expectWorkers(run, 2);
    expectCloseTo(validationsOf(single)[0]!, validations[0]!, TIMM_LOSS_TOLERANCE, 'timm');
    const seen = await reevaluateBest(run);
    expect(seen.confusion_matrix).toEqual(validations[bestEpoch - 1]!.confusion_matrix);
  }, 420_000);

  it("transformers (a tiny ViT through the Trainer's own DDP): one report of each epoch; the metrics are a single process's within tolerance; best.pt re-evaluates to the same matrix", async () => {
    const vit = {
      TASK_TYPE: 'image_classification',
      MODEL_NAME: 'vit-base-patch16-224',
      HF_CONFIG_OVERRIDES: JSON.stringify(TINY_VIT),
      EPOCHS: '1',
      ...ONE_THREAD,
    };
    const single = await jobs.run('dist-hf-single', vit);
    await expectCompleteClassifierRun(single, 1, s3, backend);
    const run = await jobs.run('dist-hf', { ...vit, NPROC_PER_NODE: '2' });
    const { validations, bestEpoch } = await expectCompleteClassifierRun(run, 1, s3, backend);
    expectWorkers(run, 2);
    expectCloseTo(validationsOf(single)[0]!, validations[0]!, HF_LOSS_TOLERANCE, 'transformers');
    const seen = await reevaluateBest(run);
    expect(seen.confusion_matrix).toEqual(validations[bestEpoch - 1]!.confusion_matrix);
    expect([...seen.metadata.class_names].sort()).toEqual([...CLASS_NAMES].sort());
  }, 420_000);

  it("ultralytics (its own DDP loop joined to our rendezvous, gloo on CPUs): one report of each epoch, the checkpoints once; the metrics are a single process's within tolerance; best.pt loads through the job's restricted unpickler and scores the val images as the run reported", async () => {
    const yolo = { TASK_TYPE: 'image_classification', MODEL_NAME: 'yolo11n-cls', EPOCHS: '1', ...ONE_THREAD };
    const single = await jobs.run('dist-yolo-single', yolo);
    expectOneReport(single, 1);
    const run = await jobs.run('dist-yolo', { ...yolo, NPROC_PER_NODE: '2' });
    expectOneReport(run, 1);
    expectWorkers(run, 2);
    const [v] = validationsOf(run);
    expect(v!.num_images_validated).toBe(4); // ultralytics validates on rank 0, every image once
    expectCloseTo(validationsOf(single)[0]!, v!, YOLO_LOSS_TOLERANCE, 'ultralytics');
    const best = join(scratch, 'dist-yolo-best.pt');
    await s3.storage().downloadFile('checkpoints/job-dist-yolo/best.pt', best);
    const images = join(scratch, 'dist-yolo-val.json');
    const val = join(run.work, 'data', 'val');
    writeFileSync(images, JSON.stringify(readdirSync(val).flatMap((name) => readdirSync(join(val, name)).map((f) => [join(val, name, f), name]))));
    const seen = fixture<{ confusion_matrix: number[][]; class_names: string[]; task: string }>('yolo-reevaluate', best, images);
    expect(seen.task).toBe('classify');
    expect([...seen.class_names].sort()).toEqual([...CLASS_NAMES].sort());
    // In ascending class id, as the run reports its matrix.
    const order = BY_ID.map((c) => seen.class_names.indexOf(c.name));
    expect(order.map((r) => order.map((c) => seen.confusion_matrix[r]![c]!))).toEqual(v!.confusion_matrix);
  }, 420_000);
});

/** Two `vision-trainer train` processes of one job on this machine, as two pods would run it. */
async function twoNodes(jobId: string, vars: Record<string, string>, node1: Record<string, string> = {}, beforeNode1?: (n0: CliRun) => Promise<void>) {
  const port = await freePort();
  const datasetId = await jobs.dataset();
  const node = (rank: number) => {
    const workDir = mkdtempSync(join(scratch, `${jobId}-node${rank}-`));
    const env = jobs.env(jobId, {
      DATASET_ID: datasetId,
      WORK_DIR: workDir,
      TRACE_ID: `trace-${jobId}-node${rank}`,
      NNODES: '2',
      NODE_RANK: String(rank),
      NPROC_PER_NODE: '1',
      MASTER_ADDR: '127.0.0.1',
      MASTER_PORT: String(port),
      ...ONE_THREAD,
      ...vars,
      ...(rank === 1 ? node1 : {}),
    });
    return startCli(['train'], env, { timeoutMs: 300_000 });
  };
  const n0 = node(0);
  if (beforeNode1) await beforeNode1(n0);
  return [n0, node(1)] as const;
}

/** Resolves once the job's output (Python's stderr) holds `text`; undefined if the job ended first. */
async function outputLine(run: CliRun, text: string): Promise<'ended' | undefined> {
  const seen = new Promise<void>((resolve) => {
    let out = '';
    run.child.stderr!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes(text)) resolve();
    });
  });
  return Promise.race([seen.then(() => undefined), run.done.then(() => 'ended' as const)]);
}

describe('two nodes (two vision-trainer processes, NNODES=2)', () => {
  it('node 1 preempted (SIGTERM): every node stops at one batch, node 0 fails the job resumably naming node 1; the retried pods resume on both nodes, node 0 reports everything once, node 1 sends nothing', async () => {
    const jobId = 'dist-2nodes';
    const vars = { TASK_TYPE: 'image_classification', MODEL_NAME: 'resnet18', EPOCHS: '2', BATCH_SIZE: '4' }; // 4 steps an epoch
    const ofJob = (from: number) => backend.receiver.received.slice(from).filter((c) => c.jobId === jobId);
    const epochBeats = (from: number) =>
      ofJob(from)
        .filter((c) => c.kind === 'heartbeat' && (c.body as { batch?: number }).batch === undefined)
        .map((c) => (c.body as { epoch: number }).epoch);

    // The first attempt: node 1's pod is preempted as soon as the training starts (its first batch).
    const [n0, n1] = await twoNodes(jobId, vars);
    const started = backend.receiver.waitFor(
      (c) => c.jobId === jobId && c.kind === 'event' && (c.body as { event_type: string }).event_type === 'training_started',
      300_000,
    );
    const early = await Promise.race([started.then(() => undefined), n0.done]);
    expect(early, 'node 0 ended before the training started').toBeUndefined();
    const stoppedAt = Date.now();
    n1.child.kill('SIGTERM'); // the kubelet's notice to a preempted pod
    const [p0, p1] = await Promise.all([n0.done, n1.done]);
    expect((Date.now() - stoppedAt) / 1000).toBeLessThan(90);
    expect(p1.code, p1.stdout.slice(-3000) + p1.stderr.slice(-3000)).toBe(143);
    expect(p0.code, p0.stdout.slice(-3000) + p0.stderr.slice(-3000)).toBe(11);
    const failed = ofJob(0).filter((c) => c.kind === 'trainingDone');
    expect(failed).toHaveLength(1);
    const body = failed[0]!.body as Record<string, any>;
    expect(body.status).toBe('failed');
    expect(body.error_message).toMatch(/node 1 of the job was stopped/);
    expect(body.resumable).toBe(true);
    // Stopped within epoch 1: its checkpoint holds the batches done and says the epoch is unfinished.
    expect(epochBeats(0)).toEqual([]);
    expect(body.error_message).toMatch(/last checkpoint in storage: epoch 1 at /);
    expect(body.checkpoint_path).toBe(`s3://${s3.config.bucket}/checkpoints/job-${jobId}/epoch-1.pt`);
    expect((await s3.storage().list(`checkpoints/job-${jobId}/`)).map((o) => o.key)).toEqual([`checkpoints/job-${jobId}/epoch-1.pt`]);

    // The retried pods: the identical environment (RESUME=auto), a fresh rendezvous.
    const mark = backend.receiver.received.length;
    const [n0b, n1b] = await twoNodes(jobId, vars);
    const [r0, r1] = await Promise.all([n0b.done, n1b.done]);
    expect(r0.code, r0.stdout.slice(-3000) + r0.stderr.slice(-3000)).toBe(0);
    expect(r1.code, r1.stdout.slice(-3000) + r1.stderr.slice(-3000)).toBe(0);
    for (const node of [r0, r1]) expect(node.stdout).toMatch(/Resuming job dist-2nodes from the checkpoint of epoch 1 that an earlier attempt stored/);
    const later = ofJob(mark);
    expect(later.filter((c) => c.kind === 'event' && (c.body as { event_type: string }).event_type === 'training_resumed')).toHaveLength(1);
    // Apart from saying it resumed, the retried job reports like a fresh one: every epoch once, one done.
    const callbacks = later.filter((c) => !(c.kind === 'event' && (c.body as { event_type: string }).event_type === 'training_resumed'));
    const keys = (await s3.storage().list(`checkpoints/job-${jobId}/`)).map((o) => o.key).sort();
    await expectCompleteClassifierRun({ jobId, result: r0, callbacks, keys, work: '', labels: jobs.labels() }, 2, s3, backend);
    const traces = new Set(backend.receiver.requests.filter((r) => r.jobId === jobId).map((r) => r.traceId));
    expect(traces, 'node 1 sent nothing in either attempt').toEqual(new Set([`trace-${jobId}-node0`]));
    expect(await s3.storage().exists(`logs/job-${jobId}/training.log`)).toBe(true);
  }, 600_000);

  it("node 1 refuses to start (DEVICE=0 where torch sees no GPU): node 0 fails the job at once with node 1's reason and exit code, not at the rendezvous timeout", async () => {
    const jobId = 'dist-refused';
    const started = Date.now();
    const [n0, n1] = await twoNodes(
      jobId,
      { TASK_TYPE: 'image_classification', MODEL_NAME: 'resnet18', EPOCHS: '1', RENDEZVOUS_TIMEOUT_SECONDS: '600' },
      { DEVICE: '0' },
    );
    const [r0, r1] = await Promise.all([n0.done, n1.done]);
    expect((Date.now() - started) / 1000).toBeLessThan(240); // node 0 waited for nothing near its 600 s
    expect(r1.code, r1.stdout.slice(-3000) + r1.stderr.slice(-3000)).toBe(2);
    expect(r0.code, r0.stdout.slice(-3000) + r0.stderr.slice(-3000)).toBe(2); // a configuration error stays one: a retry would repeat it
    const dones = backend.receiver.received.filter((c) => c.jobId === jobId && c.kind === 'trainingDone');
    expect(dones).toHaveLength(1);
    const done = dones[0]!.body as Record<string, any>;
    expect(done.status).toBe('failed');
    expect(done.error_message).toMatch(/^node 1 \(rank 1\) failed before training started: .*DEVICE="0": needs a CUDA GPU/s);
    expect(done.resumable).toBeUndefined();
    expect(new Set(backend.receiver.requests.filter((r) => r.jobId === jobId).map((r) => r.traceId))).toEqual(new Set([`trace-${jobId}-node0`]));
  }, 420_000);

  it('node 1 killed without a word before it joins (during its download): node 0 fails the job naming it once its heartbeat has stopped for NODE_TIMEOUT_SECONDS, not at the rendezvous timeout', async () => {
    const jobId = 'dist-silent';
    // Node 1 starts once node 0's store is up, so that it checks in at once, before its download,
    // and is killed there (not after it has already joined: that is the mid-epoch test's case).
    const [n0, n1] = await twoNodes(
      jobId,
      { TASK_TYPE: 'image_classification', MODEL_NAME: 'resnet18', EPOCHS: '1', RENDEZVOUS_TIMEOUT_SECONDS: '600', NODE_TIMEOUT_SECONDS: '10' },
      {},
      async (n0) =>
        expect(await outputLine(n0, 'vision-trainer: node 0 of 2 hosts the rendezvous store'), 'node 0 ended before it hosted its store').toBeUndefined(),
    );
    // Node 1 has checked in at node 0's store: it dies with no note left.
    expect(await outputLine(n1, 'vision-trainer: node 1 of 2 checked in'), 'node 1 ended before it checked in').toBeUndefined();
    const killedAt = Date.now();
    n1.child.kill('SIGKILL'); // its Python dies with it (parent-death signal)
    await n1.done;
    const r0 = await n0.done;
    expect((Date.now() - killedAt) / 1000).toBeLessThan(180); // node 0's own start and download, then 10 s of silence; not 600 s
    expect(r0.code, r0.stdout.slice(-3000) + r0.stderr.slice(-3000)).toBe(11);
    const dones = backend.receiver.received.filter((c) => c.jobId === jobId && c.kind === 'trainingDone');
    expect(dones).toHaveLength(1);
    const done = dones[0]!.body as Record<string, any>;
    expect(done.status).toBe('failed');
    expect(done.error_message).toMatch(/^node 1 \(rank 1\) stopped answering before training started: it checked in, then sent no heartbeat for \d+ s/);
    expect(backend.receiver.received.filter((c) => c.jobId === jobId && c.kind === 'event' && (c.body as any).event_type === 'training_started')).toEqual([]);
    expect(new Set(backend.receiver.requests.filter((r) => r.jobId === jobId).map((r) => r.traceId))).toEqual(new Set([`trace-${jobId}-node0`]));
  }, 420_000);

  it('node 1 killed mid-epoch: node 0 ends the job with one failed completion naming node 1, in bounded time', async () => {
    const jobId = 'dist-lost';
    const [n0, n1] = await twoNodes(jobId, {
      TASK_TYPE: 'image_classification',
      MODEL_NAME: 'resnet18',
      EPOCHS: '3',
      BATCH_SIZE: '4', // 4 steps an epoch, 2 images per process (BatchNorm needs 2)
      NODE_TIMEOUT_SECONDS: '10',
    });
    const batch = backend.receiver.waitFor(
      (c) => c.jobId === jobId && c.kind === 'heartbeat' && typeof (c.body as { batch?: number }).batch === 'number',
      300_000,
    );
    const early = await Promise.race([batch.then(() => undefined), n0.done]);
    expect(early, 'node 0 ended before the first batch').toBeUndefined();
    const killedAt = Date.now();
    n1.child.kill('SIGKILL'); // its Python and workers die with it (parent-death signal)
    const r0 = await n0.done;
    const seconds = (Date.now() - killedAt) / 1000;
    await n1.done;
    expect(seconds).toBeLessThan(90);
    expect(r0.code, r0.stdout.slice(-3000) + r0.stderr.slice(-3000)).toBe(11);
    const dones = backend.receiver.received.filter((c) => c.jobId === jobId && c.kind === 'trainingDone');
    expect(dones).toHaveLength(1);
    const done = dones[0]!.body as Record<string, any>;
    expect(done.status).toBe('failed');
    expect(done.error_message).toMatch(/node 1 \(rank 1\)/);
  }, 420_000);
});
