/**
 * `vision-trainer export` for ultralytics checkpoints, as the platform runs it: checkpoints and
 * validation datasets in SeaweedFS, callbacks to a real receiver, the CLI as a child process.
 * The checkpoints are trained here, small (64 px, 40 images) but long enough for the detection
 * tasks to find objects, so the validation figures and the wrappers' predictions mean something.
 * The exported packages are downloaded and their Python, Node and C++ wrappers run on the
 * package's sample images against the predictions the validation step recorded. The datasets'
 * class ids are not contiguous and not in name order (circle 7, square 3, triangle 11; person 5):
 * metadata.json and every wrapper's predictions must carry those, never the model's output index.
 */
import { describe, beforeAll, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defaultPythonBin } from '../../src/paths.js';
import { runCli } from '../helpers/cli.js';
import { uploadDataset } from '../helpers/datasets.js';
import { trainTinyCheckpoint, type TinyTrainingOptions } from '../helpers/export-checkpoints.js';
import {
  OTHER_RUNTIME,
  SAME_RUNTIME,
  buildCppWrapper,
  downloadPackage,
  expectDatasetClassIds,
  expectSamePredictions,
  runCppWrapper,
  runNodeWrapper,
  runPythonWrapper,
  validationOptions,
  type ExportPackage,
} from '../helpers/export-packages.js';
import { readResults } from '../helpers/inference.js';
import { jobEnv } from '../helpers/job-env.js';
import { expectDesignCallbacksAfterEach } from '../helpers/design-contract.js';
import { useCallbackReceiver } from '../helpers/receiver.js';
import { useS3Server } from '../helpers/s3.js';
import { contractClassIds, encodePng } from '../helpers/synthetic.js';

const s3 = useS3Server();
const backend = useCallbackReceiver();
expectDesignCallbacksAfterEach(backend);

type Task = 'object_detection' | 'instance_segmentation' | 'pose_estimation' | 'image_classification';
const ids = contractClassIds(3);
const FIXTURES: Record<Task, TinyTrainingOptions> = {
  object_detection: { taskType: 'object_detection', modelName: 'yolo11n', imageSize: 64, epochs: 50, dataset: { count: 40, classIds: ids } },
  instance_segmentation: { taskType: 'instance_segmentation', modelName: 'yolo11n-seg', imageSize: 64, epochs: 40, dataset: { count: 40, classIds: ids } },
  pose_estimation: { taskType: 'pose_estimation', modelName: 'yolo11n-pose', imageSize: 64, epochs: 30, dataset: { count: 40, classIds: contractClassIds(1) } },
  image_classification: { taskType: 'image_classification', modelName: 'yolo11n-cls', imageSize: 64, epochs: 5, dataset: { classIds: ids } },
};
/** mAP50-95 above this: the tiny detection fixture finds objects (a model that finds none scores 0). */
const FINDS_OBJECTS = 0.002;
const checkpointUri = (task: Task) => `s3://${s3.config.bucket}/checkpoints/job-fixture-${task}/best.pt`;
const datasetId = (task: Task) => `ds-export-${task.replace(/_/g, '-')}`;
const datasetDirs = new Map<Task, string>();

beforeAll(async () => {
  const storage = s3.storage();
  for (const [task, options] of Object.entries(FIXTURES) as [Task, TinyTrainingOptions][]) {
    const trained = await trainTinyCheckpoint(options);
    await storage.uploadFile(trained.path, `checkpoints/job-fixture-${task}/best.pt`);
    await uploadDataset(storage, datasetId(task), trained.datasetDir, 'zip');
    datasetDirs.set(task, trained.datasetDir);
  }
}, 900_000);

async function exportJob(jobId: string, task: Task, vars: Record<string, string>) {
  const env = jobEnv(s3, backend, jobId, {
    TASK_TYPE: task,
    MODEL_NAME: FIXTURES[task].modelName,
    CHECKPOINT_PATH: checkpointUri(task),
    ENABLE_VALIDATION: 'true',
    VALIDATION_DATASET_ID: datasetId(task),
    BATCH_SIZE: '1',
    ...vars,
  });
  const result = await runCli(['export'], env, { timeoutMs: 230_000 });
  const callbacks = backend.receiver.received.filter((c) => c.jobId === jobId);
  const done = callbacks.find((c) => c.kind === 'exportDone')?.body as Record<string, any> | undefined;
  // The job's own record (job.log, outcome.json) sits beside what the export produced.
  const keys = (await s3.storage().list(`export-jobs/${jobId}/`))
    .map((o) => o.key)
    .filter((k) => !/\/(job\.log|outcome\.json)$/.test(k))
    .sort();
  return { result, callbacks, done, keys, vars };
}

type Run = Awaited<ReturnType<typeof exportJob>>;

/** A succeeded export: stages in order, the three objects, figures read and measured. */
function expectExported(run: Run, jobId: string, task: Task, format: string) {
  const { result, callbacks, done, keys } = run;
  expect(result.code, result.stdout.slice(-3000) + result.stderr.slice(-3000)).toBe(0);
  expect(backend.receiver.requests.filter((r) => r.status !== 200)).toEqual([]);
  const stages = callbacks.filter((c) => c.kind === 'exportProgress').map((c) => (c.body as { stage: string }).stage);
  expect([...new Set(stages)]).toEqual(['downloading', 'converting', 'optimizing', 'validating', 'packaging', 'uploading']);
  expect(callbacks.at(-1)!.kind).toBe('exportDone');
  const bucket = s3.config.bucket;
  expect(done).toMatchObject({
    status: 'succeeded',
    error_message: null,
    export_path: `s3://${bucket}/export-jobs/${jobId}/model.${format}`,
    metadata_path: `s3://${bucket}/export-jobs/${jobId}/metadata.json`,
    package_path: `s3://${bucket}/export-jobs/${jobId}/package.zip`,
  });
  expect(keys).toEqual([`export-jobs/${jobId}/metadata.json`, `export-jobs/${jobId}/model.${format}`, `export-jobs/${jobId}/package.zip`]);
  const info = done!.model_info;
  expect(info.model_size_mb).toBeGreaterThan(0);
  expect(info.inference_speed_ms).toBeGreaterThan(0);
  expect(info.inference_speed_p95_ms).toBeGreaterThanOrEqual(info.inference_speed_ms);
  // INCLUDE_PREPROCESSING (default true) builds the normalisation into ONNX graphs: they take uint8 NHWC pixels.
  expect(info.input_shape).toEqual(format === 'onnx' && run.vars.INCLUDE_PREPROCESSING !== 'false' ? [1, 64, 64, 3] : [1, 3, 64, 64]);
  const v = done!.validation_metrics;
  // The validation split, resolved as training resolves it: a fifth of the images.
  expect(v).toMatchObject({ passed: true, num_samples: Math.round((FIXTURES[task].dataset?.count ?? 24) * 0.2), dataset_id: datasetId(task), split: 'val' });
  expect(v.accuracy_drop).toBeCloseTo(v.original_accuracy - v.accuracy, 5);
  expect(v.latency_ms.exported.p50).toBeGreaterThan(0);
  expect(v.latency_ms.original.p50).toBeGreaterThan(0);
  return { info, validation: v };
}

let pytorchDetection: ReturnType<typeof detectionTestRun> | undefined;
/** The detection fixture's test run on PyTorch, run once: what the runs of its exports are compared with. */
async function pytorchDetectionRun() {
  pytorchDetection ??= detectionTestRun('tr-det-pytorch', { INFERENCE_BACKEND: 'pytorch' });
  const run = await pytorchDetection;
  expect(run.result.code, run.result.stderr.slice(-2000)).toBe(0);
  return run;
}
const mAP = (run: Awaited<ReturnType<typeof detectionTestRun>>) => run.done!.overall_metrics['mAP50-95'] as number;
const detectionTestRun = (jobId: string, vars: Record<string, string>) => fixtureTestRun('object_detection', jobId, vars);

/**
 * INFERENCE_MODEL_PATH at an export job's model.onnx: the fixture's test run on it and on PyTorch
 * give the same overall metrics (to 0.002, or `tolerance` for a model of lower precision).
 */
async function expectReusedExportAgrees(task: Task, exportJobId: string, tolerance = 0.002) {
  const tag = task.replace(/_/g, '-');
  const modelPath = `s3://${s3.config.bucket}/export-jobs/${exportJobId}/model.onnx`;
  const pytorch = await fixtureTestRun(task, `tr-${tag}-pytorch`, { INFERENCE_BACKEND: 'pytorch' });
  const reused = await fixtureTestRun(task, `tr-${tag}-reused`, { INFERENCE_BACKEND: 'auto', INFERENCE_MODEL_PATH: modelPath });
  for (const run of [pytorch, reused]) expect(run.result.code, run.result.stdout.slice(-3000)).toBe(0);
  expect(reused.doc!.model.inference_backend).toMatchObject({ name: 'onnx', export_seconds: null, model_path: modelPath });
  const metrics = pytorch.done!.overall_metrics as Record<string, number | null>;
  expect(Object.keys(reused.done!.overall_metrics).sort()).toEqual(Object.keys(metrics).sort());
  for (const [name, value] of Object.entries(reused.done!.overall_metrics as Record<string, number | null>))
    expect(Math.abs((value ?? 0) - (metrics[name] ?? 0)), `${task} ${name}`).toBeLessThanOrEqual(tolerance);
  if (task !== 'image_classification') {
    // Something to agree on: the boxes reported down to 0.001 (one may fall either side of it in float32).
    const boxes = (run: typeof pytorch) => run.doc!.results.flatMap((r: any) => r.predictions.boxes).length;
    expect(boxes(pytorch)).toBeGreaterThan(0);
    expect(Math.abs(boxes(reused) - boxes(pytorch))).toBeLessThanOrEqual(1);
  }
  return { pytorch, reused };
}

/** A test run of a fixture's checkpoint on its own dataset: exit code, testRunDone (or the failure's callback) and results.json. */
async function fixtureTestRun(task: Task, jobId: string, vars: Record<string, string>) {
  const env = jobEnv(s3, backend, jobId, {
    INFERENCE_TYPE: 'test_run',
    TASK_TYPE: task,
    CHECKPOINT_PATH: checkpointUri(task),
    DATASET_ID: datasetId(task),
    SAVE_VISUALIZATIONS: 'false',
    // The fixture's training and export size.
    IMAGE_SIZE: '64',
    CONFIDENCE_THRESHOLD: '0.001',
    ...vars,
  });
  const result = await runCli(['infer'], env, { timeoutMs: 200_000 });
  const callbacks = backend.receiver.received.filter((c) => c.jobId === jobId);
  const done = callbacks.find((c) => c.kind === 'testRunDone')?.body as Record<string, any> | undefined;
  const failed = callbacks.find((c) => (c.body as { status?: string }).status === 'failed')?.body as Record<string, any> | undefined;
  const doc = result.code === 0 ? await readResults(s3.storage(), `test_runs/${jobId}/results.json`) : undefined;
  return { result, done, failed, doc };
}

let cppBinary: string | undefined;
/** The C++ wrapper is the same source in every package: built once, run on each package's model. */
function cppWrapper(pkg: ExportPackage): string {
  cppBinary ??= buildCppWrapper(pkg);
  const built = join(cppBinary, '..', '..', 'model_wrapper.cpp');
  expect(readFileSync(join(pkg.dir, 'runtimes', 'cpp', 'model_wrapper.cpp'), 'utf8')).toBe(readFileSync(built, 'utf8'));
  return cppBinary;
}

/** Every wrapper, at the validation step's thresholds and at the package defaults, against the recorded predictions. */
function expectWrappersAgree(pkg: ExportPackage, options: { cpp: boolean }) {
  const expected = pkg.expected!;
  const scored = expected.images.map((i) => ({ predictions: i.validation_predictions }));
  const defaults = expected.images.map((i) => ({ predictions: i.predictions }));
  const opts = validationOptions(pkg);
  const threshold = Number(expected.thresholds.validation.confidence ?? 0);
  expect(
    scored.some((s) => s.predictions.length > 0),
    'the samples have predictions to compare',
  ).toBe(true);
  const python = runPythonWrapper(pkg, opts);
  expectSamePredictions(python, scored, SAME_RUNTIME, 'python (validation thresholds)');
  expectSamePredictions(runPythonWrapper(pkg), defaults, SAME_RUNTIME, 'python (defaults)');
  const node = runNodeWrapper(pkg, opts);
  expectSamePredictions(node, scored, SAME_RUNTIME, 'node (validation thresholds)');
  expectSamePredictions(runNodeWrapper(pkg), defaults, SAME_RUNTIME, 'node (defaults)');
  const outputs = [python, node];
  if (options.cpp) {
    const binary = cppWrapper(pkg);
    const cpp = runCppWrapper(binary, pkg, opts);
    expectSamePredictions(cpp, scored, OTHER_RUNTIME, 'c++ (validation thresholds)', threshold, 0.002);
    outputs.push(cpp);
  }
  // The recorded predictions and every wrapper's name the dataset's ids (metadata.json model.class_ids).
  expectDatasetClassIds(
    scored.map((p, i) => ({ image: String(i), ...p })),
    pkg.metadata,
  );
  for (const lines of outputs) expectDatasetClassIds(lines, pkg.metadata);
}

describe('vision-trainer export (ultralytics)', () => {
  it('object_detection to ONNX: stages, figures, metadata.json, package; NMS and normalisation in the graph; the Python and Node wrappers reproduce the validation predictions', async () => {
    const run = await exportJob('exp-det-onnx', 'object_detection', { EXPORT_FORMAT: 'onnx' });
    const { info, validation } = expectExported(run, 'exp-det-onnx', 'object_detection', 'onnx');
    // INCLUDE_POSTPROCESSING (default true): the model's own NMS gives up to 300 rows of x1, y1, x2, y2, score, dataset class id.
    expect(info.output_shape).toEqual([1, 300, 6]);
    expect(info.engine).toBe('onnxruntime-node 1.30.0');
    expect(validation.metric).toBe('mAP50-95');
    // The fixture model finds objects. Its mAP50-95 on the 8 validation images depends on the CPU's
    // kernels (the same training: above 0.01 on an Intel Xeon, 0.0069 on an AMD EPYC), so the
    // bound says "not nothing"; the output differences and the wrappers' agreement below say the rest.
    expect(validation.original_accuracy).toBeGreaterThan(FINDS_OBJECTS);
    expect(validation.accuracy_drop).toBeLessThan(0.005); // float32 export: the same model
    expect(validation.max_abs_output_diff).toBeLessThan(0.01);

    const pkg = await downloadPackage(s3.storage(), 'exp-det-onnx');
    const stored = await s3.storage().getJson<Record<string, any>>('export-jobs/exp-det-onnx/metadata.json');
    expect(pkg.metadata).toEqual(stored);
    expect(stored).toMatchObject({
      format_version: '1.0',
      export_format: 'onnx',
      task_type: 'object_detection',
      model_name: 'yolo11n',
      model: {
        framework: 'ultralytics',
        file: 'model.onnx',
        // ultralytics numbers the classes by dataset id: square 3, circle 7, triangle 11.
        class_names: ['square', 'circle', 'triangle'],
        class_ids: [3, 7, 11],
        inputs: [{ name: 'images', shape: [1, 64, 64, 3], dtype: 'uint8' }],
        outputs: [{ name: 'output0', shape: [1, 300, 6] }],
      },
      preprocessing: {
        resize: { method: 'letterbox', size: [64, 64], fill_value: 114 },
        normalize: { method: 'divide', std: [255, 255, 255] },
        data_type: 'uint8',
        layout: 'NHWC',
        embedded: true,
        included: true,
      },
      postprocessing: {
        nms: { iou_threshold: 0.45, confidence_threshold: 0.25, max_detections: 300, min_confidence: 0 },
        coordinate_format: 'xyxy',
        output_layout: expect.stringContaining('the dataset class id'),
        embedded: true,
        included: true,
      },
      runtime: {
        wrappers: ['python', 'node'],
        absent_wrappers: [
          { wrapper: 'cpp', reason: expect.stringContaining('NMS is built into the graph (INCLUDE_POSTPROCESSING=true: ONNX NonMaxSuppression)') },
        ],
      },
      optimization: { level: 1, quantization: null },
      performance: { inference_speed_ms: info.inference_speed_ms, engine: 'onnxruntime-node 1.30.0' },
      validation: { accuracy: validation.accuracy },
    });
    expect(stored.optimization.passes).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/materialized \d+ broadcast constant/),
        expect.stringMatching(/^NMS built into the model \(ultralytics nms=True: class-aware, IoU 0.45, scores above 0, at most 300 detections/),
        'normalisation and NHWC -> NCHW built into the model (input uint8 NHWC)',
      ]),
    );
    // Validation ran the checkpoint through the same NMS: its outputs are the exported rows, to float precision.
    expect(validation.max_abs_output_diff).toBeLessThan(0.01);
    const readme = readFileSync(join(pkg.dir, 'README.md'), 'utf8');
    expect(readme).toContain(`| original | ${validation.original_accuracy.toFixed(4)} |`);
    expect(readme).toContain('3 classes (class id: name): 3: square, 7: circle, 11: triangle.');
    expect(readFileSync(join(pkg.dir, 'Dockerfile'), 'utf8')).toContain('COPY model.onnx .');
    expect(existsSync(join(pkg.dir, 'runtimes', 'cpp'))).toBe(false);
    expectWrappersAgree(pkg, { cpp: false }); // OpenCV's DNN module has no NonMaxSuppression
  });

  it('object_detection to ONNX with dynamic int8 quantization: a smaller model, figures within the default drop', async () => {
    const run = await exportJob('exp-det-int8', 'object_detection', { EXPORT_FORMAT: 'onnx', QUANTIZATION_TYPE: 'dynamic', QUANTIZATION_DTYPE: 'int8' });
    const { info, validation } = expectExported(run, 'exp-det-int8', 'object_detection', 'onnx');
    expect(info.model_size_mb).toBeLessThan(5); // float32: 10 MB
    expect(validation.max_abs_output_diff).toBeGreaterThan(0); // quantized: no longer the same numbers
    const pkg = await downloadPackage(s3.storage(), 'exp-det-int8');
    expect(pkg.metadata.optimization.quantization).toBe('dynamic');
    expect(pkg.metadata.optimization.quantization_details).toEqual({
      type: 'dynamic',
      dtype: 'int8',
      method: expect.stringMatching(/onnxruntime dynamic quantization/),
      unquantized_size_mb: expect.any(Number),
      accuracy_drop: validation.accuracy_drop,
    });
    expect(pkg.metadata.optimization.quantization_details.unquantized_size_mb).toBeGreaterThan(info.model_size_mb * 2);
    // The quantized graph keeps the embedded preprocessing's uint8 pixel input.
    expect(pkg.metadata.model.inputs[0].dtype).toBe('uint8');
    // The package ships only the wrappers that can load the model, and says why the C++ one is absent.
    expect(pkg.metadata.runtime.wrappers).toEqual(['python', 'node']);
    expect(pkg.metadata.runtime.absent_wrappers).toEqual([{ wrapper: 'cpp', reason: expect.stringContaining('ONNX NonMaxSuppression') }]);
    expect(readFileSync(join(pkg.dir, 'README.md'), 'utf8')).toContain("- **cpp**: the detector's NMS is built into the graph");
    expectWrappersAgree(pkg, { cpp: false });
  });

  it("an inference job runs the export jobs' ONNX models (INFERENCE_MODEL_PATH): built-in NMS and uint8 input, on ONNX Runtime and OpenVINO, with PyTorch's metrics; another NMS refused", async () => {
    // exp-det-onnx and exp-det-int8 (the tests above): NMS (IoU 0.45, floor 0, dataset class ids) and the
    // normalisation in the graph, a fixed batch of 1 and 64x64 input.
    const modelPath = (jobId: string) => `s3://${s3.config.bucket}/export-jobs/${jobId}/model.onnx`;
    const pytorch = await pytorchDetectionRun();
    const reported = (run: typeof pytorch) => run.doc!.results.flatMap((r: any) => r.predictions.boxes).length;
    // The fixture's boxes score low (its mAP50-95 on these 8 images is below 0.01): CONFIDENCE_THRESHOLD=0.001 reports them to compare.
    expect(reported(pytorch), JSON.stringify(pytorch.done!.overall_metrics)).toBeGreaterThan(0);
    for (const [jobId, backendName, vars] of [
      ['tr-det-reused-onnx', 'onnx', { INFERENCE_BACKEND: 'auto', INFERENCE_MODEL_PATH: modelPath('exp-det-onnx') }],
      ['tr-det-reused-openvino', 'openvino', { INFERENCE_BACKEND: 'openvino', INFERENCE_MODEL_PATH: modelPath('exp-det-onnx') }],
    ] as const) {
      const reused = await detectionTestRun(jobId, vars);
      expect(reused.result.code, reused.result.stdout.slice(-2000) + reused.result.stderr.slice(-2000)).toBe(0);
      expect(reused.doc!.model.inference_backend).toMatchObject({
        name: backendName,
        export_seconds: null,
        model_path: modelPath('exp-det-onnx'),
        precision: 'fp32',
        ...(backendName === 'onnx' ? { requested: 'auto', reason: expect.stringContaining('INFERENCE_MODEL_PATH') } : { requested: 'openvino' }),
      });
      expect(Math.abs(mAP(reused) - mAP(pytorch)), backendName).toBeLessThanOrEqual(0.002);
      // The graph's rows name dataset class ids; the job maps them back, so each image's best boxes name PyTorch's classes, at its confidences and places.
      const best = (doc: any) => doc.results.map((r: any) => [...r.predictions.boxes].sort((a: any, b: any) => b.confidence - a.confidence).slice(0, 5));
      const expected = best(pytorch.doc);
      best(reused.doc).forEach((boxes: any[], i: number) => {
        expect(
          boxes.map((b) => [b.class_id, b.class_name]),
          `${backendName}, image ${i}`,
        ).toEqual(expected[i].map((b: any) => [b.class_id, b.class_name]));
        boxes.forEach((b, j) => {
          expect(Math.abs(b.confidence - expected[i][j].confidence)).toBeLessThan(1e-3);
          b.bbox.forEach((v: number, k: number) => expect(Math.abs(v - expected[i][j].bbox[k])).toBeLessThan(0.5));
        });
      });
      // A box scoring at the 0.001 floor may fall on either side of it in float32: one in the 8 images at most.
      expect(Math.abs(reported(reused) - reported(pytorch))).toBeLessThanOrEqual(1);
    }
    // int8 weights: the same model within what quantization costs, so it is run, and its mAP is its own.
    const int8 = await detectionTestRun('tr-det-reused-int8', { INFERENCE_BACKEND: 'onnx', INFERENCE_MODEL_PATH: modelPath('exp-det-int8') });
    expect(int8.result.code, int8.result.stdout.slice(-3000)).toBe(0);
    expect(int8.doc!.model.inference_backend).toMatchObject({ name: 'onnx', model_path: modelPath('exp-det-int8') });
    // The NMS built into the graph is not the job's: refused before any image is predicted (exit 2, naming the variable).
    const otherIou = await detectionTestRun('tr-det-reused-iou', {
      INFERENCE_BACKEND: 'onnx',
      INFERENCE_MODEL_PATH: modelPath('exp-det-onnx'),
      IOU_THRESHOLD: '0.6',
    });
    expect(otherIou.result.code).toBe(2);
    expect(otherIou.result.stdout).toContain("its NMS is built in at IoU 0.45, this job's IOU_THRESHOLD is 0.6: set IOU_THRESHOLD=0.45");
    expect(otherIou.failed?.error_message).toContain('INCLUDE_POSTPROCESSING=false');
    // A graph of other weights with the same classes is refused by its scores: test/python/test_ultralytics_graph_model.py.
  });

  it('object_detection to TorchScript with static int8 (backbone and neck, calibrated) and to OpenVINO: smaller, the mAP drop in metadata, the Python wrapper runs both', async () => {
    // TorchScript's int8 is torch FX static quantization of our own trace; int8 may move the coarse
    // mAP of eight images either way, so the gate is opened and the recorded figures are checked.
    const TORCHSCRIPT_INT8 = { QUANTIZATION_TYPE: 'static', QUANTIZATION_DTYPE: 'int8', OPTIMIZATION_LEVEL: '2', ACCURACY_DROP_MAX: '1' };
    const drops = new Map<string, number>();
    for (const format of ['torchscript', 'openvino'] as const) {
      const jobId = `exp-det-${format}`;
      const run = await exportJob(jobId, 'object_detection', {
        EXPORT_FORMAT: format,
        ...(format === 'openvino' ? { QUANTIZATION_TYPE: 'dynamic', QUANTIZATION_DTYPE: 'float16' } : TORCHSCRIPT_INT8),
      });
      const { info, validation } = expectExported(run, jobId, 'object_detection', format);
      expect(info.engine).toBe(`python ${format} runtime (package wrapper)`);
      expect(info.output_shape).toEqual([1, 7, 84]);
      expect(validation.metric).toBe('mAP50-95');
      if (format === 'openvino') expect(validation.accuracy_drop).toBeLessThan(0.02);
      drops.set(format, validation.accuracy_drop);
      const pkg = await downloadPackage(s3.storage(), jobId);
      expect(pkg.metadata.runtime.wrappers).toEqual(['python']);
      const scored = pkg.expected!.images.map((i) => ({ predictions: i.validation_predictions }));
      expectSamePredictions(runPythonWrapper(pkg, validationOptions(pkg)), scored, SAME_RUNTIME, `python ${format}`);
    }
    // INFERENCE_MODEL_PATH at the OpenVINO export (float16 weights, raw outputs, NMS left to the job): auto runs it on OpenVINO.
    const irPath = `s3://${s3.config.bucket}/export-jobs/exp-det-openvino/model.openvino`;
    const reused = await detectionTestRun('tr-det-reused-ir', { INFERENCE_BACKEND: 'auto', INFERENCE_MODEL_PATH: irPath });
    expect(reused.result.code, reused.result.stdout.slice(-3000)).toBe(0);
    expect(reused.doc!.model.inference_backend).toMatchObject({ name: 'openvino', requested: 'auto', export_seconds: null, model_path: irPath });
    expect(Math.abs(mAP(reused) - mAP(await pytorchDetectionRun()))).toBeLessThanOrEqual(0.002);
    const ts = await downloadPackage(s3.storage(), 'exp-det-torchscript');
    const details = ts.metadata.optimization.quantization_details;
    expect(ts.metadata.optimization.quantization).toBe('static');
    expect(details).toMatchObject({
      type: 'static',
      dtype: 'int8',
      method: expect.stringContaining('backbone and neck (FX graph mode, x86 backend'),
      float32_modules: ['Attention', 'Detect'],
    });
    expect(details.accuracy_drop).toBe(drops.get('torchscript'));
    // The convolutions of backbone and neck in int8, the Detect head (box decoding) in float32: well under half of float32's 10 MB.
    expect(ts.metadata.model.size_mb).toBeLessThan(details.unquantized_size_mb * 0.5);
    expect(ts.metadata.optimization.passes).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^torch FX static int8 quantization .* calibrated on \d+ images; float32 kept: Attention, Detect$/),
        'torch.jit.freeze',
      ]),
    );
    const ov = await downloadPackage(s3.storage(), 'exp-det-openvino');
    expect(ov.metadata.model).toMatchObject({ file: 'model.openvino', directory: true });
    expect(ov.metadata.optimization).toMatchObject({
      quantization: 'dynamic',
      quantization_details: { dtype: 'float16', method: 'OpenVINO float16 weight compression' },
    });
  });

  it('static int8 calibrated on an unrepresentative split, ACCURACY_DROP_MAX=0: a failed completion that names the drop, exit code 5, nothing uploaded', async () => {
    // On the fixture's own images int8 may tie the original (8 val images give a coarse mAP, and
    // quantization noise can move it either way). Calibrating on flat images instead (static
    // quantization calibrates on the train split) clips every real activation, so the drop is
    // certain and the gate, not luck, decides the outcome.
    const dir = join(mkdtempSync(join(tmpdir(), 'vt-export-drop-')), 'dataset');
    cpSync(datasetDirs.get('object_detection')!, dir, { recursive: true });
    const doc = JSON.parse(readFileSync(join(dir, 'annotations.json'), 'utf8')) as { images: Record<string, unknown>[] };
    for (const image of doc.images) image.split = 'val';
    const flat = encodePng(64, 48, new Uint8Array(64 * 48 * 3).fill(200));
    for (let i = 0; i < 8; i++) {
      writeFileSync(join(dir, 'images', `flat-${i}.png`), flat);
      doc.images.push({ id: 1000 + i, file_name: `flat-${i}.png`, width: 64, height: 48, split: 'train', annotations: [] });
    }
    writeFileSync(join(dir, 'annotations.json'), JSON.stringify(doc));
    await uploadDataset(s3.storage(), 'ds-export-flat-calibration', dir, 'zip');
    const run = await exportJob('exp-det-drop', 'object_detection', {
      VALIDATION_DATASET_ID: 'ds-export-flat-calibration',
      EXPORT_FORMAT: 'onnx',
      QUANTIZATION_TYPE: 'static',
      QUANTIZATION_DTYPE: 'int8',
      ACCURACY_DROP_MAX: '0',
    });
    expect(run.result.code).toBe(5);
    const stages = run.callbacks.filter((c) => c.kind === 'exportProgress').map((c) => (c.body as { stage: string }).stage);
    expect(stages).not.toContain('packaging');
    expect(run.done).toMatchObject({ status: 'failed', export_path: null, package_path: null });
    const v = run.done!.validation_metrics;
    expect(v).toMatchObject({ passed: false, threshold: 0, metric: 'mAP50-95', num_samples: 40 });
    expect(v.original_accuracy).toBeGreaterThan(0);
    expect(v.accuracy_drop).toBeGreaterThan(0);
    expect(run.done!.error_message).toContain(`mAP50-95 dropped by ${v.accuracy_drop.toFixed(4)}`);
    expect(run.done!.error_message).toMatch(/more than ACCURACY_DROP_MAX=0\n.*lighter quantization/);
    expect(run.keys).toEqual([]);
  });

  it('instance_segmentation to ONNX with NMS in the graph: masks agree across the Python and Node wrappers', async () => {
    const run = await exportJob('exp-seg', 'instance_segmentation', { EXPORT_FORMAT: 'onnx' });
    const { info, validation } = expectExported(run, 'exp-seg', 'instance_segmentation', 'onnx');
    // The NMS rows carry the 32 mask coefficients after the class id.
    expect(info.output_shape).toEqual([
      [1, 300, 38],
      [1, 32, 16, 16],
    ]);
    expect(validation.exported_metrics).toHaveProperty('box_mAP50-95');
    const pkg = await downloadPackage(s3.storage(), 'exp-seg');
    expect(pkg.expected!.images.flatMap((i) => i.validation_predictions).some((p) => p.mask!.counts.length > 1)).toBe(true);
    expectWrappersAgree(pkg, { cpp: false });
    // INFERENCE_MODEL_PATH: the NMS rows' 32 mask coefficients and the prototypes read by ultralytics' predictor.
    await expectReusedExportAgrees('instance_segmentation', 'exp-seg');
  });

  it('pose_estimation to ONNX with NMS in the graph: keypoints agree across the Python and Node wrappers', async () => {
    const run = await exportJob('exp-pose', 'pose_estimation', { EXPORT_FORMAT: 'onnx' });
    const { info } = expectExported(run, 'exp-pose', 'pose_estimation', 'onnx');
    expect(info.output_shape).toEqual([1, 300, 6 + 17 * 3]);
    const pkg = await downloadPackage(s3.storage(), 'exp-pose');
    expect(pkg.metadata.model.keypoints).toEqual({ shape: [17, 3] });
    expect(pkg.metadata.model).toMatchObject({ class_names: ['person'], class_ids: [5] });
    expect(pkg.expected!.images[0]!.validation_predictions[0]!.keypoints).toHaveLength(17);
    expectWrappersAgree(pkg, { cpp: false });
    // INFERENCE_MODEL_PATH: the NMS rows' keypoints read by ultralytics' predictor.
    await expectReusedExportAgrees('pose_estimation', 'exp-pose');
  });

  it('image_classification to ONNX as float16: top-k agrees across the wrappers', async () => {
    const run = await exportJob('exp-cls-fp16', 'image_classification', { EXPORT_FORMAT: 'onnx', QUANTIZATION_TYPE: 'dynamic', QUANTIZATION_DTYPE: 'float16' });
    const { validation } = expectExported(run, 'exp-cls-fp16', 'image_classification', 'onnx');
    expect(validation.metric).toBe('accuracy');
    const pkg = await downloadPackage(s3.storage(), 'exp-cls-fp16');
    expect(pkg.metadata.preprocessing.resize).toMatchObject({ method: 'resize_shorter_center_crop', crop_pct: 1 });
    expect(pkg.metadata.postprocessing.softmax).toEqual({ apply: false, temperature: 1 });
    // yolo-cls numbers the classes by folder name: circle, square, triangle; their dataset ids are 7, 3, 11.
    expect(pkg.metadata.model).toMatchObject({ class_names: ['circle', 'square', 'triangle'], class_ids: [7, 3, 11] });
    expect(pkg.expected!.images[0]!.predictions.map((p) => [p.class_id, p.class_name]).sort()).toEqual([
      [11, 'triangle'],
      [3, 'square'],
      [7, 'circle'],
    ]);
    expect(pkg.metadata.runtime.wrappers).toEqual(['python', 'node']); // float16 graphs: ONNX Runtime wrappers only
    expectWrappersAgree(pkg, { cpp: false });
    // INFERENCE_MODEL_PATH: the uint8 input and float16 weights; the same top-1 on every image.
    const { pytorch, reused } = await expectReusedExportAgrees('image_classification', 'exp-cls-fp16');
    expect(reused.doc!.results.map((r: any) => r.predictions.class_id)).toEqual(pytorch.doc!.results.map((r: any) => r.predictions.class_id));
  });

  it('image_classification to TorchScript with static int8: int8 up to the softmax, a third of the size, the accuracy drop in metadata', async () => {
    const vars = { EXPORT_FORMAT: 'torchscript', QUANTIZATION_TYPE: 'static', QUANTIZATION_DTYPE: 'int8', ACCURACY_DROP_MAX: '1' };
    const run = await exportJob('exp-cls-int8', 'image_classification', vars);
    const { validation } = expectExported(run, 'exp-cls-int8', 'image_classification', 'torchscript');
    const pkg = await downloadPackage(s3.storage(), 'exp-cls-int8');
    const details = pkg.metadata.optimization.quantization_details;
    expect(details).toMatchObject({ type: 'static', dtype: 'int8', accuracy_drop: validation.accuracy_drop, float32_modules: ['Attention'] });
    // Every convolution and the Linear head in int8 (only the C2PSA attention stays float32).
    expect(pkg.metadata.model.size_mb).toBeLessThan(details.unquantized_size_mb * 0.35);
    expect(pkg.metadata.optimization.passes).toEqual(expect.arrayContaining([expect.stringMatching(/float32 kept: Attention$/)]));
    const defaults = pkg.expected!.images.map((i) => ({ predictions: i.predictions }));
    expectSamePredictions(runPythonWrapper(pkg), defaults, SAME_RUNTIME, 'python torchscript int8');
  });

  it("object_detection to TFLite (ultralytics' LiteRT exporter) with float16 weights: validated in the LiteRT interpreter, boxes as fractions, the Python wrapper reproduces the validation predictions", async () => {
    const run = await exportJob('exp-det-tflite', 'object_detection', { EXPORT_FORMAT: 'tflite', QUANTIZATION_TYPE: 'dynamic', QUANTIZATION_DTYPE: 'float16' });
    const { info, validation } = expectExported(run, 'exp-det-tflite', 'object_detection', 'tflite');
    expect(info.engine).toBe('python tflite runtime (package wrapper)');
    expect(validation.exported_runtime).toBe('python tflite runtime (package wrapper)');
    expect(validation.original_accuracy).toBeGreaterThan(FINDS_OBJECTS);
    expect(validation.accuracy_drop).toBeLessThan(0.005); // float16 weights computed in float32: the same detections
    const pkg = await downloadPackage(s3.storage(), 'exp-det-tflite');
    expect(pkg.metadata).toMatchObject({
      export_format: 'tflite',
      model: { file: 'model.tflite', inputs: [{ shape: [1, 3, 64, 64], dtype: 'float32' }], outputs: [{ shape: [1, 7, 84] }] },
      postprocessing: { box_units: 'normalized' },
      runtime: { wrappers: ['python', 'kotlin'], engines: ['tflite'] },
      optimization: { quantization: 'dynamic', quantization_details: { dtype: 'float16', accuracy_drop: validation.accuracy_drop } },
    });
    // ultralytics writes float32; the weights cast to float16 roughly halve the file.
    const details = pkg.metadata.optimization.quantization_details;
    expect(pkg.metadata.model.size_mb).toBeLessThan(details.unquantized_size_mb * 0.6);
    expect(pkg.metadata.optimization.passes).toEqual(expect.arrayContaining([expect.stringMatching(/ai-edge-quantizer .* float16 weights/)]));
    expect(pkg.metadata.optimization.passes.join(' ')).not.toContain('onnx');
    const scored = pkg.expected!.images.map((i) => ({ predictions: i.validation_predictions }));
    expect(scored.some((s) => s.predictions.length > 0)).toBe(true);
    expectSamePredictions(runPythonWrapper(pkg, validationOptions(pkg)), scored, SAME_RUNTIME, 'python tflite');
  });

  it('object_detection to TFLite with static int8 calibrated on the dataset: int8 weights and activations, the mAP drop and size drop in metadata', async () => {
    // Eight validation images of a 50-epoch toy detector: int8 may move its mAP a lot, so the gate is opened; the figures are what is checked.
    const run = await exportJob('exp-det-tflite-int8', 'object_detection', {
      EXPORT_FORMAT: 'tflite',
      QUANTIZATION_TYPE: 'static',
      QUANTIZATION_DTYPE: 'int8',
      ACCURACY_DROP_MAX: '1',
    });
    const { validation } = expectExported(run, 'exp-det-tflite-int8', 'object_detection', 'tflite');
    const pkg = await downloadPackage(s3.storage(), 'exp-det-tflite-int8');
    const details = pkg.metadata.optimization.quantization_details;
    expect(details).toMatchObject({
      type: 'static',
      dtype: 'int8',
      method: expect.stringContaining('static_wi8_ai8'),
      accuracy_drop: validation.accuracy_drop,
    });
    expect(pkg.metadata.optimization.passes).toEqual(expect.arrayContaining([expect.stringMatching(/static_wi8_ai8 .* calibrated on \d+ images$/)]));
    // int8 weights: well under half of ultralytics' float32 file.
    expect(pkg.metadata.model.size_mb).toBeLessThan(details.unquantized_size_mb * 0.5);
    // float32 in and out (ultralytics' contract), int8 inside: the interpreter lists int8 tensors.
    expect(pkg.metadata.model.inputs).toEqual([{ name: expect.any(String), shape: [1, 3, 64, 64], dtype: 'float32' }]);
    const int8 = spawnSync(
      defaultPythonBin(),
      [
        '-c',
        'import sys; from ai_edge_litert.interpreter import Interpreter as I; print(sum(d["dtype"].__name__ == "int8" for d in I(sys.argv[1]).get_tensor_details()))',
        join(pkg.dir, 'model.tflite'),
      ],
      { encoding: 'utf8' },
    );
    expect(int8.status, int8.stderr).toBe(0);
    expect(Number(int8.stdout.trim())).toBeGreaterThan(50);
    const scored = pkg.expected!.images.map((i) => ({ predictions: i.validation_predictions }));
    expectSamePredictions(runPythonWrapper(pkg, validationOptions(pkg)), scored, SAME_RUNTIME, 'python tflite int8');
  });

  it('TensorRT without a CUDA GPU fails at once, naming what it needs, and uploads nothing', async () => {
    const trt = await exportJob('exp-trt', 'object_detection', { EXPORT_FORMAT: 'tensorrt', ENABLE_VALIDATION: 'false' });
    expect(trt.result.code).toBe(5);
    expect(trt.done).toMatchObject({ status: 'failed' });
    expect(trt.done!.error_message).toContain(
      'EXPORT_FORMAT=tensorrt builds a TensorRT engine for the GPU it runs on and needs a CUDA GPU; torch sees none on this machine',
    );
    expect(trt.keys).toEqual([]);
  });

  it("classifier to CoreML through ultralytics' exporter: the class labels in the ML program are checked structurally", async () => {
    const run = await exportJob('exp-coreml-cls', 'image_classification', { EXPORT_FORMAT: 'coreml' });
    expect(run.result.code, run.result.stdout.slice(-3000) + run.result.stderr.slice(-3000)).toBe(0);
    const stages = run.callbacks.filter((c) => c.kind === 'exportProgress').map((c) => (c.body as { stage: string }).stage);
    expect([...new Set(stages)]).toEqual(['downloading', 'converting', 'optimizing', 'validating', 'packaging', 'uploading']);
    expect(run.keys).toEqual(['metadata.json', 'model.coreml', 'package.zip'].map((f) => `export-jobs/exp-coreml-cls/${f}`));
    expect(run.done).toMatchObject({ status: 'succeeded', validation_metrics: null, model_info: { inference_speed_ms: null, input_shape: [1, 3, 64, 64] } });
    const pkg = await downloadPackage(s3.storage(), 'exp-coreml-cls');
    expect(pkg.metadata.model).toMatchObject({
      framework: 'ultralytics',
      file: 'model.mlpackage',
      // ultralytics' CoreML classifiers take the picture itself (scaled by 1/255 inside) and name the class.
      inputs: [{ name: 'image', shape: [1, 3, 64, 64], dtype: expect.stringContaining('image') }],
      outputs: [
        { name: 'classLabel', dtype: 'stringType' },
        { name: 'classLabel_probs', dtype: 'dictionaryType' },
      ],
    });
    expect(pkg.metadata.structural_validation).toMatchObject({
      passed: true,
      predictions_compared: false,
      checks: expect.arrayContaining([`class labels are the checkpoint's 3 classes, in output order`]),
    });
    expect(pkg.metadata.runtime).toMatchObject({ wrappers: ['swift', 'python'], absent_wrappers: [] });
  });

  it('an unsupported framework/format pair is a configuration error listing the supported formats, reported at once', async () => {
    const run = await exportJob('exp-bad-pair', 'image_classification', { EXPORT_FORMAT: 'tensorrt', MODEL_NAME: 'resnet18' });
    expect(run.result.code).toBe(2);
    expect(run.result.stderr).toContain('EXPORT_FORMAT="tensorrt": timm models export to onnx, torchscript, openvino, coreml');
    expect(run.callbacks.map((c) => c.kind)).toEqual(['exportDone']);
    expect(run.done).toMatchObject({ status: 'failed' });
  });
});
