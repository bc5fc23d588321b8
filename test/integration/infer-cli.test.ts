/**
 * Test runs and inference jobs through the CLI, as the platform runs them: SeaweedFS for
 * storage, the real callback receiver, an OpenAI-compatible server for explanations, and
 * checkpoints trained a moment before by `vision-trainer train` (ultralytics detection and
 * classification). SAM 2 runs on randomly initialised sam2_t and sam2.1_t weights, prompted by the ground truth
 * and by the detector trained here.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cpuHasNativeBf16 } from '../../src/dev/cpu.js';
import { loadDataset } from '../../src/datasets/load.js';
import { resolveSplits } from '../../src/datasets/splits.js';
import { StoredOutcomeSchema } from '../../src/jobs/outcome.js';
import { PROJECT_ROOT, defaultPythonBin } from '../../src/paths.js';
import { runCli, startCli } from '../helpers/cli.js';
import { startFaultProxy } from '../helpers/fault-proxy.js';
import { uploadDataset } from '../helpers/datasets.js';
import { expectDatasetIds, expectLoopTiming, inferEnv, pngsUnder, readResults, trainTinyModel, type TrainedModel } from '../helpers/inference.js';
import { GOOD_ANSWER, startOpenAiServer, type OpenAiServer } from '../helpers/openai-server.js';
import { expectDesignCallbacksAfterEach } from '../helpers/design-contract.js';
import { useCallbackReceiver } from '../helpers/receiver.js';
import { jobEnv } from '../helpers/job-env.js';
import { useS3Server } from '../helpers/s3.js';
import { contractClassIds, writeSyntheticDataset } from '../helpers/synthetic.js';

const s3 = useS3Server();
const backend = useCallbackReceiver();
expectDesignCallbacksAfterEach(backend);
const OPENAI_KEY = 'sk-infer-cli-test-key-ABCDEF123456';
let llm: OpenAiServer;
let detector: TrainedModel;
let classifier: TrainedModel;

beforeAll(async () => {
  llm = await startOpenAiServer();
  // The dataset's class ids are not contiguous and not in name order (circle 7, square 3,
  // triangle 11): every id a job reports must be one of these, never the framework's index.
  detector = await trainTinyModel(s3, backend, 'object_detection', 'yolo11n', 'infer-det', {}, { classIds: contractClassIds(3) });
  classifier = await trainTinyModel(s3, backend, 'image_classification', 'yolo11n-cls', 'infer-cls', {}, { classIds: contractClassIds(3) });
}, 600_000);
afterAll(async () => {
  await llm?.close();
});

const callbacksOf = (jobId: string) => backend.receiver.received.filter((c) => c.jobId === jobId);

/** The job's durable record beside its results: outcome.json (the completion exactly as delivered, with its key) and job.log. */
async function expectStoredRecord(prefix: 'test_runs' | 'inference_jobs', jobId: string, callback: 'testRunDone' | 'inferenceJobDone', final: boolean) {
  const storage = s3.storage();
  const stored = StoredOutcomeSchema.parse(await storage.getJson(`${prefix}/${jobId}/outcome.json`));
  const delivered = callbacksOf(jobId).filter((c) => c.kind === callback);
  expect(delivered).toHaveLength(1);
  expect(stored).toMatchObject({ job_id: jobId, mode: 'infer', callback, final, idempotency_key: delivered[0]!.idempotencyKey });
  expect(stored.body).toEqual(delivered[0]!.body);
  const log = join(mkdtempSync(join(tmpdir(), 'vt-job-log-')), 'job.log');
  await storage.downloadFile(`${prefix}/${jobId}/job.log`, log);
  expect(readFileSync(log, 'utf8')).toContain(`vision-trainer infer: job ${jobId}`);
}
const bodyOf = (jobId: string, kind: string) => callbacksOf(jobId).find((c) => c.kind === kind)?.body as Record<string, any> | undefined;
const progressOf = (jobId: string) =>
  callbacksOf(jobId)
    .filter((c) => c.kind === 'inferenceProgress')
    .map((c) => c.body as Record<string, any>);

/** Image ids in `split` when the dataset is split as training split it. */
async function splitIds(model: TrainedModel, task: 'object_detection' | 'image_classification', split: string, strategy?: Parameters<typeof resolveSplits>[1]) {
  const dataset = await loadDataset(model.dataset.root, { taskType: task });
  const splits = resolveSplits(dataset, strategy);
  return { ids: dataset.images.filter((i) => splits.get(i.id) === split).map((i) => i.id), dataset };
}

function expectAllCallbacksAccepted() {
  expect(backend.receiver.requests.filter((r) => r.status !== 200)).toEqual([]);
}

describe('vision-trainer infer: ultralytics detection', () => {
  it('test run: the val split as training split it, metrics, visualisations, Grad-CAM and LLM explanations for the sample', async () => {
    const jobId = 'tr-det';
    const { ids, dataset } = await splitIds(detector, 'object_detection', 'val');
    const result = await runCli(
      ['infer'],
      inferEnv(s3, backend, jobId, {
        INFERENCE_TYPE: 'test_run',
        TASK_TYPE: 'object_detection',
        FRAMEWORK: 'ultralytics',
        CHECKPOINT_PATH: detector.checkpointUri,
        DATASET_ID: detector.datasetId,
        TEST_SPLIT: 'val',
        MAX_VISUALIZATIONS: '3',
        ENABLE_XAI: 'true',
        XAI_METHOD: 'gradcam',
        ENABLE_LLM_EXPLANATION: 'true',
        OPENAI_API_KEY: OPENAI_KEY,
        OPENAI_BASE_URL: llm.baseUrl,
        OPENAI_MODEL: 'test-vision-explainer',
      }),
      { timeoutMs: 240_000 },
    );
    expect(result.code, result.stdout.slice(-4000) + result.stderr).toBe(0);
    expectAllCallbacksAccepted();

    // Progress: every 10 images and at the end, with the measured time per image.
    const progress = progressOf(jobId);
    expect(progress.at(-1)).toMatchObject({ processed_images: ids.length, total_images: ids.length, progress_percent: 100 });
    expect(progress.at(-1)!.avg_inference_time_ms).toBeGreaterThan(0);

    const done = bodyOf(jobId, 'testRunDone')!;
    const prefix = `s3://${s3.config.bucket}/test_runs/${jobId}/`;
    expect(done).toMatchObject({
      status: 'succeeded',
      error_message: null,
      results_path: `${prefix}results.json`,
      visualizations_path: `${prefix}visualizations/`,
      xai_results_path: `${prefix}xai/`,
    });
    for (const key of ['precision', 'recall', 'mAP50', 'mAP50-95']) expect(typeof done.overall_metrics[key]).toBe('number');
    await expectStoredRecord('test_runs', jobId, 'testRunDone', true);
    // Rows in ascending dataset id: square 3, circle 7, triangle 11.
    expect(done.per_class_metrics.map((r: any) => [r.class_id, r.class_name])).toEqual([
      [3, 'square'],
      [7, 'circle'],
      [11, 'triangle'],
    ]);
    // Rows are the true classes (ascending dataset id) plus background; each class row counts that class's objects in the split.
    const objects = dataset.images.filter((i) => ids.includes(i.id)).flatMap((i) => i.objects);
    expect(done.confusion_matrix).toHaveLength(4);
    expect(done.confusion_matrix_class_ids).toEqual([3, 7, 11, null]);
    [3, 7, 11].forEach((classId, row) => {
      const counts = done.confusion_matrix[row] as number[];
      expect(counts.reduce((a, b) => a + b, 0)).toBe(objects.filter((o) => o.classId === classId).length);
    });

    const doc = await readResults(s3.storage(), `test_runs/${jobId}/results.json`);
    expect(doc).toMatchObject({ job_id: jobId, inference_type: 'test_run', task_type: 'object_detection', num_images: ids.length, failed_images: 0 });
    expect(doc.settings).toMatchObject({ test_split: 'val', dataset_id: detector.datasetId, xai_method: 'gradcam', llm_model: 'test-vision-explainer' });
    expect(doc.model).toMatchObject({
      framework: 'ultralytics',
      task: 'detect',
      model_name: 'yolo11n',
      xai_layers: ['model.16', 'model.19', 'model.22'],
    });
    expect(doc.metrics!.overall_metrics).toEqual(done.overall_metrics);
    expectDatasetIds(detector, done, doc);
    expect(doc.timing.avg_inference_time_ms).toBeGreaterThan(0);
    expectLoopTiming(doc.timing, true);
    expect(doc.results.map((r) => r.image_id)).toEqual(ids);
    for (const r of doc.results) {
      expect(r.error).toBeNull();
      expect(r.ground_truth).toHaveProperty('objects');
      expect(r.metrics).toHaveProperty('missed');
      expect(r.metrics).toHaveProperty('recall');
      expect(r.image_path).toBe(dataset.images.find((i) => i.id === r.image_id)!.fileName);
      expect(r.inference_time_ms).toBeGreaterThan(0);
    }

    // The sample of three: drawn, explained by heatmap and by the LLM; the rest are not.
    const sampled = doc.results.filter((r) => r.visualization_path !== null);
    expect(sampled).toHaveLength(3);
    expect(doc.results.filter((r) => r.xai !== null)).toHaveLength(3);
    for (const r of sampled) {
      expect(r.visualization_path).toMatch(new RegExp(`^${prefix}visualizations/\\d{6}-`));
      expect(r.xai).toMatchObject({ method: 'gradcam', error: null, target_layers: ['model.16', 'model.19', 'model.22'] });
      expect(r.xai!.heatmap_path).toMatch(new RegExp(`^${prefix}xai/`));
      expect(r.xai!.gradcam!.mean_activation).toBeGreaterThanOrEqual(0);
      expect(Array.isArray(r.xai!.gradcam!.top_regions)).toBe(true);
      expect(r.xai!.explanation).toEqual({ available: true, format: 'json', ...GOOD_ANSWER, model: 'test-vision-explainer', generated_at: expect.any(String) });
    }
    expect(await pngsUnder(s3.storage(), `test_runs/${jobId}/visualizations/`)).toHaveLength(3);
    expect(await pngsUnder(s3.storage(), `test_runs/${jobId}/xai/`)).toHaveLength(3);

    // The key went to the LLM server, and nowhere else.
    expect(llm.requests.filter((r) => r.authorization === `Bearer ${OPENAI_KEY}`)).toHaveLength(3);
    expect(result.stdout + result.stderr).not.toContain(OPENAI_KEY);
    expect(JSON.stringify(doc)).not.toContain(OPENAI_KEY);
    expect(JSON.stringify(callbacksOf(jobId))).not.toContain(OPENAI_KEY);
  });

  it('inference job on IMAGE_PATHS: downloads, progress every 10 images, a missing and a broken input reported per image', async () => {
    const jobId = 'ij-det';
    const storage = s3.storage();
    const images = (await loadDataset(detector.dataset.root, { taskType: 'object_detection' })).images.slice(0, 11);
    const uris: string[] = [];
    for (const [i, image] of images.entries()) {
      await storage.uploadFile(image.path, `inference-inputs/${jobId}/photo-${i}.png`);
      uris.push(`s3://${s3.config.bucket}/inference-inputs/${jobId}/photo-${i}.png`);
    }
    const broken = join(mkdtempSync(join(tmpdir(), 'vt-broken-')), 'broken.jpg');
    writeFileSync(broken, 'this is not a picture');
    await storage.uploadFile(broken, `inference-inputs/${jobId}/broken.jpg`);
    uris.splice(5, 0, `s3://${s3.config.bucket}/inference-inputs/${jobId}/broken.jpg`);
    uris.push(`s3://${s3.config.bucket}/inference-inputs/${jobId}/missing.png`);

    const result = await runCli(
      ['infer'],
      inferEnv(s3, backend, jobId, {
        INFERENCE_TYPE: 'inference_job',
        TASK_TYPE: 'object_detection',
        CHECKPOINT_PATH: detector.checkpointUri, // FRAMEWORK unset: read from the checkpoint
        IMAGE_PATHS: JSON.stringify(uris),
        CONFIDENCE_THRESHOLD: '0.0001',
      }),
      { timeoutMs: 240_000 },
    );
    expect(result.code, result.stdout.slice(-4000) + result.stderr).toBe(0);
    expectAllCallbacksAccepted();
    // Batches of 4: 12 crosses 10, then the end. A progress callback still waiting when the next
    // one comes is replaced by it, so 12 reaches the backend only when it was sent before 13 came.
    expect([[12, 13], [13]]).toContainEqual(progressOf(jobId).map((p) => p.processed_images));
    const done = bodyOf(jobId, 'inferenceJobDone')!;
    expect(done).toMatchObject({ status: 'succeeded', results_path: `s3://${s3.config.bucket}/inference_jobs/${jobId}/results.json`, xai_results_path: null });

    const doc = await readResults(storage, `inference_jobs/${jobId}/results.json`);
    expect(doc.model.framework).toBe('ultralytics');
    expect(doc.num_images).toBe(13);
    expect(doc.failed_images).toBe(2);
    expect(doc.results.map((r) => r.image_path)).toEqual(uris);
    expect(doc.results[5]).toMatchObject({ file_name: 'broken.jpg', error: expect.stringMatching(/^not a readable image/), predictions: null });
    expect(doc.results[12]).toMatchObject({ file_name: 'missing.png', error: `${uris[12]} does not exist`, predictions: null });
    for (const r of doc.results.filter((x) => x.error === null)) {
      expect(r.width).toBe(64);
      expect(r.height).toBe(48);
      expect(r.ground_truth).toBeNull();
      expect(r.metrics).toBeNull();
      for (const box of (r.predictions as { boxes: Array<{ bbox: number[]; confidence: number }> }).boxes) {
        expect(box.bbox).toHaveLength(4);
        expect(box.confidence).toBeGreaterThan(0.0001);
      }
    }
    expect(await pngsUnder(storage, `inference_jobs/${jobId}/visualizations/`)).toHaveLength(11);
  });
});

describe('vision-trainer infer: INFERENCE_BACKEND', () => {
  type Box = { bbox: number[]; class_id: number; confidence: number };
  const boxesOf = (r: { predictions: unknown }) => (r.predictions as { boxes: Box[] }).boxes;

  it('onnx and openvino (float32, and bfloat16 where the CPU has it): the exported graph predicts the boxes PyTorch predicts, and the metrics agree within 0.002', async () => {
    const run = async (backendName: string, extra: Record<string, string> = {}) => {
      const jobId = `tr-det-${backendName}${extra.INFERENCE_PRECISION ? `-${extra.INFERENCE_PRECISION}` : ''}`;
      const result = await runCli(
        ['infer'],
        inferEnv(s3, backend, jobId, {
          INFERENCE_TYPE: 'test_run',
          TASK_TYPE: 'object_detection',
          CHECKPOINT_PATH: detector.checkpointUri,
          DATASET_ID: detector.datasetId,
          TEST_SPLIT: 'val',
          // Low enough that the 1-epoch model reports boxes to compare.
          CONFIDENCE_THRESHOLD: '0.0001',
          SAVE_VISUALIZATIONS: 'false',
          // auto: the default, spelled out; on 12 images it keeps PyTorch (no export to pay for).
          INFERENCE_BACKEND: backendName,
          ...extra,
        }),
        { timeoutMs: 240_000 },
      );
      expect(result.code, result.stdout.slice(-4000) + result.stderr.slice(-3000)).toBe(0);
      return readResults(s3.storage(), `test_runs/${jobId}/results.json`);
    };
    const torch = await run('auto');
    expect(torch.settings.inference_backend).toBe('auto');
    expect(torch.model.inference_backend).toMatchObject({
      name: 'pytorch',
      requested: 'auto',
      reason: expect.stringMatching(/^auto: \d+ image\(s\), fewer than 1000/),
      runtime: expect.stringMatching(/^torch /),
      export_seconds: null,
      xai_backend: null,
      cpu_threads: expect.any(Number),
    });
    // PREFETCH_NEXT_BATCH=auto: the next batch decodes beside the model only where its runtime leaves
    // a CPU of the budget (decode_threads) free: ultralytics' predictor computes on all but one.
    const ran = torch.model.inference_backend;
    expect(ran.prefetch).toBe(ran.cpu_threads! < ran.decode_threads!);
    expect(ran.prefetch_reason).toMatch(/^auto: the model computes on /);
    const reported = torch.results.flatMap(boxesOf);
    expect(reported.length).toBeGreaterThan(0);
    // INFERENCE_PRECISION=bf16 on a CPU with native bfloat16: OpenVINO's scores move in the third
    // digit (bfloat16's 8 bits of mantissa). This 1-epoch detector scores every class alike (to
    // the fourth digit), so bfloat16 may name another class for the same box: its twins are
    // matched by place and score only. On another CPU it computes in float32, as PyTorch does.
    const nativeBf16 = cpuHasNativeBf16();
    const variants: Array<{ name: string; extra: Record<string, string>; scoreTolerance: number; anyClass: boolean }> = [
      { name: 'onnx', extra: {}, scoreTolerance: 1e-3, anyClass: false },
      { name: 'openvino', extra: {}, scoreTolerance: 1e-3, anyClass: false },
      { name: 'openvino', extra: { INFERENCE_PRECISION: 'bf16' }, scoreTolerance: nativeBf16 ? 1e-2 : 1e-3, anyClass: nativeBf16 },
    ];
    for (const { name, extra, scoreTolerance, anyClass } of variants) {
      const graph = await run(name, extra);
      expect(graph.model.inference_backend).toMatchObject(
        extra.INFERENCE_PRECISION
          ? { precision_requested: 'bf16', precision: nativeBf16 ? 'bf16' : 'fp32' }
          : { precision: 'fp32', precision_requested: 'fp32' },
      );
      // bf16 that ran: its first batch compared with float32's, box by box, in results.json.
      const check = graph.model.inference_backend.precision_check;
      if (extra.INFERENCE_PRECISION && nativeBf16) {
        expect(check).toMatchObject({ against: 'pytorch float32', compared: expect.stringMatching(/^boxes above CONFIDENCE_THRESHOLD/) });
        expect(check!.agreement).toBeGreaterThanOrEqual(0);
        expect(check!.agreement).toBeLessThanOrEqual(1);
        expect(check!.error).toBeUndefined();
      } else expect(check).toBeUndefined();
      expect(graph.settings.inference_backend).toBe(name);
      expect(graph.model.inference_backend).toMatchObject({
        name,
        requested: name,
        reason: 'INFERENCE_BACKEND',
        device: 'cpu',
        runtime: expect.stringMatching(/^(onnxruntime|openvino) /),
      });
      expect(graph.model.inference_backend.export_seconds).toBeGreaterThan(0);
      // The graph runtimes compute on the whole budget: auto decodes each batch in its turn.
      expect(graph.model.inference_backend).toMatchObject({ prefetch: false, prefetch_reason: expect.stringMatching(/^auto: the model computes on all /) });
      for (const [key, value] of Object.entries(torch.metrics!.overall_metrics)) {
        if (value === null) expect(graph.metrics!.overall_metrics[key], key).toBeNull();
        else expect(Math.abs(graph.metrics!.overall_metrics[key]! - value), `${name} ${key}`).toBeLessThanOrEqual(0.002);
      }
      expect(graph.results.map((r) => r.image_id)).toEqual(torch.results.map((r) => r.image_id));
      // Box by box: float rounding may move a box scoring right at the threshold, or tip NMS
      // between two near-equal neighbours, so a few boxes may lack a twin; the rest agree.
      const twinOf = (box: Box, among: Box[]) =>
        among.find((b) => (anyClass || b.class_id === box.class_id) && b.bbox.every((v, k) => Math.abs(v - box.bbox[k]!) < 0.5));
      let boxes = 0;
      let twins = 0;
      graph.results.forEach((r, i) => {
        for (const [from, to] of [
          [boxesOf(r), boxesOf(torch.results[i]!)],
          [boxesOf(torch.results[i]!), boxesOf(r)],
        ] as const) {
          for (const box of from) {
            const twin = twinOf(box, to);
            boxes++;
            if (!twin) continue;
            twins++;
            expect(Math.abs(twin.confidence - box.confidence)).toBeLessThan(scoreTolerance);
          }
        }
      });
      expect(twins / boxes, `${name}: ${twins} of ${boxes} boxes have a twin`).toBeGreaterThanOrEqual(0.95);
    }
  });
});

describe('vision-trainer infer: the model opened while the images download', () => {
  it("a test run on a dataset stored as files opens the model from its annotations while an image is still held back; its results equal the zip's", async () => {
    const filesId = `${classifier.datasetId}-files`;
    await uploadDataset(s3.storage(), filesId, classifier.dataset.root, 'prefix');
    // One image's download is held until the job says it opens the model: the images are
    // certainly not all in when it does, whatever this machine's speed.
    const proxy = await startFaultProxy(Number(new URL(s3.server.endpoint).port));
    let held = false;
    proxy.rule = (r) => {
      if (held || r.method !== 'GET' || !r.path.includes(`/datasets/${filesId}/images/`)) return 'pass';
      held = true;
      return 'hang';
    };
    const env = (jobId: string, datasetId: string, endpoint?: string) =>
      inferEnv(s3, backend, jobId, {
        INFERENCE_TYPE: 'test_run',
        TASK_TYPE: 'image_classification',
        FRAMEWORK: 'ultralytics',
        CHECKPOINT_PATH: classifier.checkpointUri,
        DATASET_ID: datasetId,
        TEST_SPLIT: 'val',
        SAVE_VISUALIZATIONS: 'false',
        ...(endpoint ? { S3_ENDPOINT: endpoint } : {}),
      });
    try {
      const run = startCli(['infer'], env('tr-early-files', filesId, proxy.endpoint), { timeoutMs: 240_000 });
      let opened = false;
      run.child.stdout!.on('data', (d: Buffer) => {
        if (!opened && d.toString().includes('Opening the model while the images download')) {
          opened = true;
          proxy.rule = () => 'pass';
          proxy.release(); // the held request's connection is dropped: the download asks again
        }
      });
      const files = await run.done;
      expect(files.code, files.stdout.slice(-4000) + files.stderr).toBe(0);
      expect(held && opened).toBe(true);
      const zipped = await runCli(['infer'], env('tr-early-zip', classifier.datasetId), { timeoutMs: 240_000 });
      expect(zipped.code, zipped.stdout.slice(-4000) + zipped.stderr).toBe(0);
      const { ids } = await splitIds(classifier, 'image_classification', 'val');
      // The plan from the annotations is the verified images' plan: the model is opened once.
      expect(files.stdout).toContain(`Opening the model while the images download (${ids.length} images to predict, from the annotations)`);
      expect(files.stdout).not.toContain('the model is opened again');
      const [a, b] = await Promise.all(['tr-early-files', 'tr-early-zip'].map((id) => readResults(s3.storage(), `test_runs/${id}/results.json`)));
      expect(a!.results.map((r) => r.image_id)).toEqual(ids);
      expect(a!.results.map((r) => [r.image_id, r.predictions, r.metrics])).toEqual(b!.results.map((r) => [r.image_id, r.predictions, r.metrics]));
      expect(bodyOf('tr-early-files', 'testRunDone')!.overall_metrics).toEqual(bodyOf('tr-early-zip', 'testRunDone')!.overall_metrics);
    } finally {
      await proxy.close();
    }
  });
});

describe('vision-trainer infer: ultralytics classification', () => {
  it('test run on a split of SPLIT_STRATEGY: accuracy, top-5, per-class F1, confusion matrix; Grad-CAM++ heatmaps', async () => {
    const jobId = 'tr-cls';
    const strategy = { method: 'auto' as const, ratio: [0.6, 0.2, 0.2], seed: 7 };
    const { ids } = await splitIds(classifier, 'image_classification', 'test', strategy);
    const result = await runCli(
      ['infer'],
      inferEnv(s3, backend, jobId, {
        INFERENCE_TYPE: 'test_run',
        TASK_TYPE: 'image_classification',
        FRAMEWORK: 'ultralytics',
        CHECKPOINT_PATH: classifier.checkpointUri,
        DATASET_ID: classifier.datasetId,
        TEST_SPLIT: 'test',
        SPLIT_STRATEGY: JSON.stringify(strategy),
        ENABLE_XAI: 'true',
        XAI_METHOD: 'gradcam++',
        // No OPENAI_API_KEY: every explanation is unavailable, in the design's shape all the same.
        ENABLE_LLM_EXPLANATION: 'true',
      }),
      { timeoutMs: 240_000 },
    );
    expect(result.code, result.stdout.slice(-4000) + result.stderr).toBe(0);
    expectAllCallbacksAccepted();
    const done = bodyOf(jobId, 'testRunDone')!;
    for (const key of ['accuracy', 'top5_accuracy']) expect(done.overall_metrics[key]).toBeGreaterThanOrEqual(0);
    expect(done.confusion_matrix).toHaveLength(3);
    expect(done.confusion_matrix.flat().reduce((a: number, b: number) => a + b, 0)).toBe(ids.length);
    expect(done.per_class_metrics.map((r: any) => Object.keys(r).sort())).toEqual(
      Array(3).fill(['ap', 'class_id', 'class_name', 'f1', 'precision', 'recall', 'support']),
    );
    expect(done.pr_curves).toEqual({});

    const doc = await readResults(s3.storage(), `test_runs/${jobId}/results.json`);
    expect(doc.results.map((r) => r.image_id)).toEqual(ids);
    expectDatasetIds(classifier, done, doc);
    expect(done.per_class_metrics.map((r: any) => r.class_id)).toEqual([3, 7, 11]);
    expect(doc.settings.split_source).toContain('SPLIT_STRATEGY (job): auto, ratio 0.6/0.2/0.2, seed 7');
    const correct = doc.results.filter((r) => (r.metrics as { correct: boolean }).correct).length;
    expect(done.overall_metrics.accuracy).toBeCloseTo(correct / ids.length, 10);
    for (const r of doc.results) {
      expect(r.predictions).toMatchObject({ class_name: expect.any(String), top5: expect.any(Array) });
      const top5 = (r.predictions as { top5: Array<{ class_id: number; class_name: string }> }).top5;
      expect(top5.map((t) => [t.class_id, t.class_name]).sort()).toEqual([
        [11, 'triangle'],
        [3, 'square'],
        [7, 'circle'],
      ]);
      expect(r.xai).toMatchObject({ method: 'gradcam++', error: null, target: { class_id: (r.predictions as { class_id: number }).class_id } });
    }
    expect(await pngsUnder(s3.storage(), `test_runs/${jobId}/xai/`)).toHaveLength(ids.length);
    const explanations = doc.results.map((r) => r.xai?.explanation).filter((e) => e);
    expect(explanations.length).toBeGreaterThan(0);
    for (const e of explanations) {
      expect(e).toEqual({
        available: false,
        reason: expect.stringContaining('OPENAI_API_KEY is not set'),
        summary: '',
        key_factors: [],
        confidence_reasoning: '',
        alternative_considerations: '',
        model: 'gpt-4o-mini',
        generated_at: expect.any(String),
      });
    }
  });

  it('inference job on every image of a dataset, without visualisations', async () => {
    const jobId = 'ij-cls';
    const result = await runCli(
      ['infer'],
      inferEnv(s3, backend, jobId, {
        INFERENCE_TYPE: 'inference_job',
        TASK_TYPE: 'image_classification',
        CHECKPOINT_PATH: classifier.checkpointUri,
        DATASET_ID: classifier.datasetId,
        SAVE_VISUALIZATIONS: 'false',
      }),
      { timeoutMs: 240_000 },
    );
    expect(result.code, result.stdout.slice(-4000) + result.stderr).toBe(0);
    expect(bodyOf(jobId, 'inferenceJobDone')).toMatchObject({ status: 'succeeded', visualizations_path: null, xai_results_path: null });
    const doc = await readResults(s3.storage(), `inference_jobs/${jobId}/results.json`);
    expect(doc.num_images).toBe(20);
    expect(doc.results.every((r) => r.error === null && r.visualization_path === null)).toBe(true);
    expect([[12, 20], [20]]).toContainEqual(progressOf(jobId).map((p) => p.processed_images)); // 12 may be replaced by 20 while waiting
  });
});

describe('vision-trainer infer: LIME on a YOLO classifier', () => {
  it("XAI_METHOD=lime: captum LIME over superpixels for the sampled images, with Grad-CAM's statistics fields and an overlay under xai/", async () => {
    const jobId = 'ij-cls-lime';
    const result = await runCli(
      ['infer'],
      inferEnv(s3, backend, jobId, {
        INFERENCE_TYPE: 'inference_job',
        TASK_TYPE: 'image_classification',
        CHECKPOINT_PATH: classifier.checkpointUri,
        DATASET_ID: classifier.datasetId,
        ENABLE_XAI: 'true',
        XAI_METHOD: 'lime',
        XAI_SAMPLES: '40',
        MAX_VISUALIZATIONS: '2',
      }),
      { timeoutMs: 240_000 },
    );
    expect(result.code, result.stdout.slice(-4000) + result.stderr).toBe(0);
    const doc = await readResults(s3.storage(), `inference_jobs/${jobId}/results.json`);
    const explained = doc.results.filter((r) => r.xai !== null);
    expect(explained).toHaveLength(2);
    for (const r of explained) {
      expect(r.xai).toMatchObject({ method: 'lime', error: null, target_layers: [], target: { class_id: (r.predictions as { class_id: number }).class_id } });
      expect(r.xai!.lime).toMatchObject({ max_activation: expect.any(Number), mean_activation: expect.any(Number), top_regions: expect.any(Array) });
    }
    expect(await pngsUnder(s3.storage(), `inference_jobs/${jobId}/xai/`)).toHaveLength(2);
    // Progress while the heatmaps are made: a line and a progress callback for the first and the last.
    expect(result.stdout + result.stderr).toMatch(/XAI lime: 1\/2 images explained \(\d+\.\d s per image\)/);
    expect(result.stdout + result.stderr).toMatch(/XAI lime: 2\/2 images explained/);
    // (A later progress callback may replace a queued one: at least one of the two reaches the backend.)
    const explaining = progressOf(jobId).filter((p) => p.explained_images !== undefined);
    expect(explaining.length).toBeGreaterThan(0);
    for (const p of explaining) expect(p).toMatchObject({ explained_images: expect.toBeOneOf([1, 2]), images_to_explain: 2, xai_method: 'lime' });
  });
});

describe('vision-trainer infer: stopped', () => {
  it('SIGTERM mid-job: the current batch ends, `failed` is reported with how far it got, exit 143', async () => {
    const jobId = 'ij-sigterm';
    const run = startCli(
      ['infer'],
      inferEnv(s3, backend, jobId, {
        INFERENCE_TYPE: 'inference_job',
        TASK_TYPE: 'image_classification',
        CHECKPOINT_PATH: classifier.checkpointUri,
        DATASET_ID: classifier.datasetId,
        BATCH_SIZE: '1',
      }),
      { timeoutMs: 240_000 },
    );
    await backend.receiver.waitFor((c) => c.jobId === jobId && c.kind === 'inferenceProgress', 120_000);
    run.child.kill('SIGTERM');
    const result = await run.done;
    expect(result.code).toBe(143);
    const done = bodyOf(jobId, 'inferenceJobDone')!;
    expect(done.status).toBe('failed');
    expect(done.error_message).toMatch(/^Job stopped by SIGTERM after \d+ images/);
    expect(await s3.storage().exists(`inference_jobs/${jobId}/results.json`)).toBe(false);
    // A stop is not final: a retry of the job runs it again, and its outcome replaces this one.
    expect(done.resumable).toBe(true);
    await expectStoredRecord('inference_jobs', jobId, 'inferenceJobDone', false);
  });
});

describe('vision-trainer infer: refused before any image is processed', () => {
  const testRun = (jobId: string, extra: Record<string, string>) =>
    runCli(
      ['infer'],
      inferEnv(s3, backend, jobId, {
        INFERENCE_TYPE: 'test_run',
        TASK_TYPE: 'object_detection',
        FRAMEWORK: 'ultralytics',
        CHECKPOINT_PATH: detector.checkpointUri,
        DATASET_ID: detector.datasetId,
        ...extra,
      }),
      { timeoutMs: 240_000 },
    );

  it('XAI_TARGET_LAYERS holding code is an unknown layer, and the code never runs', async () => {
    const marker = join(mkdtempSync(join(tmpdir(), 'vt-pwned-')), 'pwned');
    const layer = `__import__("os").system("touch ${marker}")`;
    const result = await testRun('xai-inject', { ENABLE_XAI: 'true', XAI_TARGET_LAYERS: JSON.stringify([layer]) });
    expect(result.code).toBe(2);
    const done = bodyOf('xai-inject', 'testRunDone')!;
    expect(done.status).toBe('failed');
    expect(done.error_message).toContain('XAI_TARGET_LAYERS');
    expect(done.error_message).toContain(`unknown layer ${JSON.stringify(layer)}`);
    expect(progressOf('xai-inject')).toEqual([]);
    expect(existsSync(marker)).toBe(false);
  });

  it('a well-formed path to a layer the model lacks: Python names where the lookup stopped', async () => {
    const result = await testRun('xai-missing', { ENABLE_XAI: 'true', XAI_TARGET_LAYERS: '["model.99"]' });
    expect(result.code).toBe(2);
    const done = bodyOf('xai-missing', 'testRunDone')!;
    expect(done.error_message).toMatch(/XAI_TARGET_LAYERS=.*unknown layer 'model\.99': model has no submodule '99'; it holds 24 layers, indices 0 to 23/);
    expect(progressOf('xai-missing')).toEqual([]);
  });

  it('a classification checkpoint for TASK_TYPE=object_detection', async () => {
    const result = await testRun('task-mismatch', { CHECKPOINT_PATH: classifier.checkpointUri });
    expect(result.code).toBe(2);
    expect(bodyOf('task-mismatch', 'testRunDone')!.error_message).toMatch(
      /TASK_TYPE="object_detection": the checkpoint holds a classify model .* needs a detect model/,
    );
  });

  it('Score-CAM for a detector: XAI_METHOD does not fit, with the methods that do', async () => {
    const result = await testRun('xai-method', { ENABLE_XAI: 'true', XAI_METHOD: 'scorecam' });
    expect(result.code).toBe(2);
    expect(bodyOf('xai-method', 'testRunDone')!.error_message).toContain(
      'XAI_METHOD=scorecam does not fit a detect model; use one of: gradcam, gradcam++, eigencam, layercam',
    );
  });

  it('a checkpoint that does not exist: storage error, exit 4', async () => {
    const result = await testRun('no-checkpoint', { CHECKPOINT_PATH: `s3://${s3.config.bucket}/checkpoints/job-nope/best.pt` });
    expect(result.code).toBe(4);
    expect(bodyOf('no-checkpoint', 'testRunDone')!.error_message).toContain('checkpoints/job-nope/best.pt does not exist');
  });
});

describe('vision-trainer infer: SAM 2 (randomly initialised sam2_t and sam2.1_t weights: no hub here)', () => {
  const storage = () => s3.storage();
  let samUri: string;
  let sam21Uri: string;
  let segmentation: { datasetId: string; ids: number[]; names: string[] };

  beforeAll(async () => {
    // The weights files as SAM 2's releases hold them ({"model": state dict}), built offline: sam2_t (float16) and
    // sam2.1_t (float32, the release's exact layout), uploaded under names that say nothing (the keys decide).
    const out = mkdtempSync(join(tmpdir(), 'vt-sam2-'));
    const built = spawnSync(defaultPythonBin(), [join(PROJECT_ROOT, 'test/integration/sam2-fixtures.py'), out], { encoding: 'utf8' });
    expect(built.status, built.stderr.slice(-3000)).toBe(0);
    await storage().uploadFile(join(out, 'sam2_t.pt'), 'models/sam2/weights.pt');
    samUri = `s3://${s3.config.bucket}/models/sam2/weights.pt`;
    await storage().uploadFile(join(out, 'sam2.1_t.pt'), 'models/sam2.1/weights.pt');
    sam21Uri = `s3://${s3.config.bucket}/models/sam2.1/weights.pt`;
    // Outlined objects of the detector's classes and ids (circle 7, square 3, triangle 11).
    const dir = mkdtempSync(join(tmpdir(), 'vt-sam2-ds-'));
    const ds = writeSyntheticDataset(dir, { taskType: 'instance_segmentation', count: 8, classIds: contractClassIds(3), seed: 5 });
    await uploadDataset(storage(), 'ds-sam2', dir, 'zip');
    segmentation = { datasetId: 'ds-sam2', ids: ds.classIds, names: ds.classNames };
  }, 300_000);

  const sam = (jobId: string, extra: Record<string, string>) =>
    runCli(['infer'], inferEnv(s3, backend, jobId, { TASK_TYPE: 'instance_segmentation', CHECKPOINT_PATH: samUri, IMAGE_SIZE: '64', ...extra }), {
      timeoutMs: 240_000,
    });
  type Box = { bbox: number[]; class_id: number; class_name: string; confidence: number; mask_score: number; segmentation: number[][] };

  it('test run prompted by the ground-truth boxes: one mask per object, mask IoU per object, per class (dataset ids) and overall; overlays', async () => {
    const jobId = 'tr-sam2';
    const result = await sam(jobId, { INFERENCE_TYPE: 'test_run', DATASET_ID: segmentation.datasetId });
    expect(result.code, result.stdout.slice(-4000) + result.stderr.slice(-3000)).toBe(0);
    expectAllCallbacksAccepted();
    const done = bodyOf(jobId, 'testRunDone')!;
    const doc = await readResults(storage(), `test_runs/${jobId}/results.json`);
    expect(doc.model).toMatchObject({ framework: 'ultralytics', task: 'segment', model_name: 'sam2_t', prompts: 'ground_truth_boxes', class_ids_stored: true });
    expectLoopTiming(doc.timing, false);
    expect(doc.model.class_ids).toEqual(segmentation.ids);
    expect(doc.model.class_names).toEqual(segmentation.names);
    expect(doc.results.length).toBeGreaterThan(0);

    // Each object's prompt is its own box: the prediction carries the box, class and id it was given.
    const perClass = new Map<number, number[]>();
    for (const r of doc.results) {
      const truth = (r.ground_truth as { objects: Array<{ bbox: number[]; class_id: number; class_name: string }> }).objects;
      const boxes = (r.predictions as { boxes: Box[] }).boxes;
      const metrics = r.metrics as { mask_iou: number | null; objects: Array<{ ground_truth: number; class_id: number; class_name: string; iou: number }> };
      expect(boxes).toHaveLength(truth.length);
      boxes.forEach((b, i) => {
        truth[i]!.bbox.forEach((v, k) => expect(b.bbox[k]).toBeCloseTo(v, 3));
        expect([b.class_id, b.class_name]).toEqual([truth[i]!.class_id, truth[i]!.class_name]);
        expect(b.mask_score).toBeGreaterThanOrEqual(0);
        expect(b.mask_score).toBeLessThanOrEqual(1);
        for (const outline of b.segmentation) expect(outline.length % 2).toBe(0);
      });
      expect(metrics.objects.map((o) => o.ground_truth)).toEqual(truth.map((_, i) => i));
      for (const o of metrics.objects) {
        expect([o.class_id, o.class_name]).toEqual([truth[o.ground_truth]!.class_id, truth[o.ground_truth]!.class_name]);
        perClass.set(o.class_id, [...(perClass.get(o.class_id) ?? []), o.iou]);
      }
      const mean = metrics.objects.reduce((s, o) => s + o.iou, 0) / metrics.objects.length;
      expect(metrics.mask_iou).toBeCloseTo(mean, 9);
    }
    // The run's tables are the per-image IoUs aggregated: per class (ascending dataset id), overall, and the matrix.
    const all = [...perClass.values()].flat();
    const meanOf = (v: number[]) => v.reduce((s, x) => s + x, 0) / v.length;
    expect(done.overall_metrics.mask_iou).toBeCloseTo(meanOf(all), 9);
    expect(done.overall_metrics.mIoU).toBeCloseTo(meanOf([...perClass.values()].map(meanOf)), 9);
    expect(done.overall_metrics.mask_recall50).toBeCloseTo(all.filter((v) => v >= 0.5).length / all.length, 9);
    // The design's detection fields, read for one mask per object (mask AP ranked by SAM's score).
    expect(done.overall_metrics.precision).toBe(done.overall_metrics.mask_recall50);
    expect(done.overall_metrics.recall).toBe(done.overall_metrics.mask_recall50);
    for (const key of ['mAP50', 'mAP50-95']) expect(done.overall_metrics[key]).toBeGreaterThanOrEqual(0);
    expect(done.per_class_metrics.map((p: { class_id: number }) => p.class_id)).toEqual([...segmentation.ids].sort((a, b) => a - b));
    for (const row of done.per_class_metrics as Array<{ class_id: number; iou: number | null; support: number }>) {
      const ious = perClass.get(row.class_id) ?? [];
      expect(row.support).toBe(ious.length);
      if (ious.length) expect(row.iou).toBeCloseTo(meanOf(ious), 9);
    }
    const hits = (done.confusion_matrix as number[][]).reduce((s, row, i) => s + (i < row.length - 1 ? row[i]! : 0), 0);
    expect(hits).toBe(all.filter((v) => v >= 0.5).length);
    expect(done.confusion_matrix_class_ids).toEqual([...[...segmentation.ids].sort((a, b) => a - b), null]);
    expect(await pngsUnder(storage(), `test_runs/${jobId}/visualizations/`)).toHaveLength(doc.results.length);
  });

  it("inference job on SAM 2.1 weights (the release's float32 file) prompted by PROMPT_CHECKPOINT_PATH's detector: one mask per detection, with the detection's class id and confidence", async () => {
    const jobId = 'ij-sam2';
    const images = (await loadDataset(detector.dataset.root, { taskType: 'object_detection' })).images.slice(0, 2);
    const uris: string[] = [];
    for (const [i, image] of images.entries()) {
      await storage().uploadFile(image.path, `inference-inputs/${jobId}/photo-${i}.png`);
      uris.push(`s3://${s3.config.bucket}/inference-inputs/${jobId}/photo-${i}.png`);
    }
    const result = await sam(jobId, {
      INFERENCE_TYPE: 'inference_job',
      CHECKPOINT_PATH: sam21Uri,
      PROMPT_CHECKPOINT_PATH: detector.checkpointUri,
      IMAGE_PATHS: JSON.stringify(uris),
      CONFIDENCE_THRESHOLD: '0.001',
    });
    expect(result.code, result.stdout.slice(-4000) + result.stderr.slice(-3000)).toBe(0);
    expectAllCallbacksAccepted();
    expect(bodyOf(jobId, 'inferenceJobDone')).toMatchObject({ status: 'succeeded' });
    const doc = await readResults(storage(), `inference_jobs/${jobId}/results.json`);
    expect(doc.model).toMatchObject({ model_name: 'sam2.1_t', prompts: 'detector', class_ids_stored: true });
    expect(doc.model.class_ids).toEqual(expect.arrayContaining(detector.dataset.classIds));
    const boxes = doc.results.flatMap((r) => (r.predictions as { boxes: Box[] }).boxes);
    expect(boxes.length).toBeGreaterThan(0);
    for (const b of boxes) {
      expect(detector.dataset.classNames[detector.dataset.classIds.indexOf(b.class_id)]).toBe(b.class_name);
      expect(b.confidence).toBeGreaterThan(0.001);
      expect(Array.isArray(b.segmentation)).toBe(true);
    }
    expect(doc.results.every((r) => r.ground_truth === null && r.metrics === null && r.error === null)).toBe(true);
    expect(await pngsUnder(storage(), `inference_jobs/${jobId}/visualizations/`)).toHaveLength(2);
  });

  it('refused with exit 2 naming the variable: SAM 2 without a detector, a detector without SAM 2, SAM 2 weights to export', async () => {
    const images = { INFERENCE_TYPE: 'inference_job', IMAGE_PATHS: JSON.stringify([`s3://${s3.config.bucket}/inference-inputs/ij-sam2/photo-0.png`]) };
    const unprompted = await sam('sam2-unprompted', images);
    expect(unprompted.code, unprompted.stdout.slice(-3000)).toBe(2);
    expect(bodyOf('sam2-unprompted', 'inferenceJobDone')!.error_message).toMatch(/PROMPT_CHECKPOINT_PATH.*SAM 2 segments what a prompt points at/s);
    const yolo = await sam('sam2-not-sam', { ...images, CHECKPOINT_PATH: detector.checkpointUri, PROMPT_CHECKPOINT_PATH: detector.checkpointUri });
    expect(yolo.code, yolo.stdout.slice(-3000)).toBe(2);
    expect(bodyOf('sam2-not-sam', 'inferenceJobDone')!.error_message).toMatch(/PROMPT_CHECKPOINT_PATH.*prompts SAM 2 weights only/s);
    // MODEL_NAME=sam2_* is refused before Python starts (unit tests); weights named as another model are refused when read.
    const exported = await runCli(
      ['export'],
      jobEnv(s3, backend, 'sam2-export', { TASK_TYPE: 'instance_segmentation', MODEL_NAME: 'yolo11n-seg', EXPORT_FORMAT: 'onnx', CHECKPOINT_PATH: samUri }),
      { timeoutMs: 240_000 },
    );
    expect(exported.code, exported.stdout.slice(-3000)).toBe(2);
    expect(bodyOf('sam2-export', 'exportDone')!.error_message).toMatch(/CHECKPOINT_PATH.*SAM 2 weights, which this runtime does not export/s);
  });
});
