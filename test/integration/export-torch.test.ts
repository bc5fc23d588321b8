/**
 * `vision-trainer export` for timm and transformers checkpoints (torch.onnx.export,
 * torch.jit.trace, OpenVINO from ONNX) through the CLI, SeaweedFS and the callback receiver.
 * The checkpoints are trained here with the platform's own trainers (tiny models, 32 px, two
 * epochs); the packages' wrappers are run against the validation step's predictions.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
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
  type ExportPackage,
} from '../helpers/export-packages.js';
import { jobEnv } from '../helpers/job-env.js';
import { readResults } from '../helpers/inference.js';
import { expectDesignCallbacksAfterEach } from '../helpers/design-contract.js';
import { useCallbackReceiver } from '../helpers/receiver.js';
import { TINY_CLIP, TINY_VIT } from '../helpers/classifier-runs.js';
import { useS3Server } from '../helpers/s3.js';

const s3 = useS3Server();
const backend = useCallbackReceiver();
expectDesignCallbacksAfterEach(backend);

type Fixture = 'timm' | 'vit' | 'clip';
const FIXTURES: Record<Fixture, TinyTrainingOptions> = {
  // The dataset's ids: circle 7, square 3, triangle 11 (the ImageFolder numbers them by name, transformers by id).
  timm: { taskType: 'image_classification', modelName: 'resnet10t', imageSize: 32, epochs: 2, dataset: { classIds: [7, 3, 11] } },
  vit: {
    taskType: 'image_classification',
    modelName: 'vit-base-patch16-224',
    imageSize: 32,
    epochs: 2,
    dataset: { classIds: [7, 3, 11] },
    config: { hfConfigOverrides: TINY_VIT },
  },
  clip: {
    taskType: 'zero_shot_classification',
    modelName: 'clip-vit-base-patch32',
    imageSize: 32,
    epochs: 2,
    dataset: { classIds: [7, 3, 11] },
    config: { hfConfigOverrides: TINY_CLIP },
  },
};

beforeAll(async () => {
  const storage = s3.storage();
  for (const [name, options] of Object.entries(FIXTURES)) {
    const trained = await trainTinyCheckpoint(options);
    await storage.uploadFile(trained.path, `checkpoints/job-fixture-${name}/best.pt`);
    await uploadDataset(storage, `ds-export-${name}`, trained.datasetDir, 'zip');
  }
}, 600_000);

async function exportJob(jobId: string, fixture: Fixture, vars: Record<string, string>) {
  const { taskType, modelName } = FIXTURES[fixture];
  const env = jobEnv(s3, backend, jobId, {
    TASK_TYPE: taskType,
    MODEL_NAME: modelName,
    CHECKPOINT_PATH: `s3://${s3.config.bucket}/checkpoints/job-fixture-${fixture}/best.pt`,
    ENABLE_VALIDATION: 'true',
    VALIDATION_DATASET_ID: `ds-export-${fixture}`,
    BATCH_SIZE: '1',
    ...vars,
  });
  const result = await runCli(['export'], env, { timeoutMs: 230_000 });
  expect(result.code, result.stdout.slice(-3000) + result.stderr.slice(-3000)).toBe(0);
  const done = backend.receiver.received.find((c) => c.kind === 'exportDone' && c.jobId === jobId)!.body as Record<string, any>;
  expect(done).toMatchObject({ status: 'succeeded', validation_metrics: { metric: 'accuracy', passed: true, num_samples: 5 } });
  const batch = Number(vars.BATCH_SIZE ?? 1);
  // INCLUDE_PREPROCESSING (default true) builds the normalisation into ONNX and OpenVINO graphs: they take uint8 NHWC pixels.
  const embedded = vars.INCLUDE_PREPROCESSING !== 'false' && (vars.EXPORT_FORMAT === 'onnx' || vars.EXPORT_FORMAT === 'openvino');
  expect(done.model_info.input_shape).toEqual(embedded ? [batch, 32, 32, 3] : [batch, 3, 32, 32]);
  expect(done.model_info.output_shape).toEqual([batch, 3]);
  return { done, pkg: await downloadPackage(s3.storage(), jobId) };
}

/** A test run of a fixture's checkpoint on its own dataset. */
const graphTestEnv = (jobId: string, fixture: Fixture, vars: Record<string, string>) =>
  jobEnv(s3, backend, jobId, {
    INFERENCE_TYPE: 'test_run',
    TASK_TYPE: FIXTURES[fixture].taskType,
    CHECKPOINT_PATH: `s3://${s3.config.bucket}/checkpoints/job-fixture-${fixture}/best.pt`,
    DATASET_ID: `ds-export-${fixture}`,
    SAVE_VISUALIZATIONS: 'false',
    ...vars,
  });

async function graphTestRun(jobId: string, fixture: Fixture, vars: Record<string, string>) {
  const result = await runCli(['infer'], graphTestEnv(jobId, fixture, vars), { timeoutMs: 240_000 });
  expect(result.code, result.stdout.slice(-3000) + result.stderr.slice(-2000)).toBe(0);
  const done = backend.receiver.received.find((c) => c.kind === 'testRunDone' && c.jobId === jobId)?.body as Record<string, any>;
  return { done, doc: await readResults(s3.storage(), `test_runs/${jobId}/results.json`) };
}

/** Top-k lists of every sample image, as the validation step recorded them. */
const recorded = (pkg: ExportPackage) => pkg.expected!.images.map((i) => ({ predictions: i.predictions }));

describe('vision-trainer export (timm, transformers)', () => {
  it("timm to ONNX: the checkpoint's normalisation in metadata.json; Python, Node and C++ wrappers give the recorded top-k", async () => {
    const { done, pkg } = await exportJob('exp-timm-onnx', 'timm', { EXPORT_FORMAT: 'onnx' });
    expect(done.validation_metrics.accuracy_drop).toBe(0);
    expect(done.validation_metrics.max_abs_output_diff).toBeLessThan(1e-3);
    expect(pkg.metadata).toMatchObject({
      model: {
        framework: 'timm',
        architecture: 'resnet10t',
        class_names: ['circle', 'square', 'triangle'],
        class_ids: [7, 3, 11],
        inputs: [{ name: 'images', shape: [1, 32, 32, 3], dtype: 'uint8' }],
        outputs: [{ name: 'probabilities', shape: [1, 3] }],
      },
      // The graph normalises (and transposes): the wrappers resize and feed the pixels; validation fed the checkpoint its float input.
      preprocessing: {
        resize: { method: 'resize_shorter_center_crop', size: [32, 32] },
        normalize: { method: 'standardize', mean: [0.485, 0.456, 0.406] },
        data_type: 'uint8',
        layout: 'NHWC',
        embedded: true,
        included: true,
      },
      postprocessing: { softmax: { apply: false }, top_k: 3, embedded: true, included: true },
    });
    expect(pkg.metadata.optimization.passes).toContain('normalisation and NHWC -> NCHW built into the model (input uint8 NHWC)');
    expect(pkg.metadata.runtime.wrappers).toEqual(['python', 'node', 'cpp']);
    const [python, node, cpp] = [runPythonWrapper(pkg), runNodeWrapper(pkg), runCppWrapper(buildCppWrapper(pkg), pkg)];
    // Every wrapper answers in the dataset's class ids, each with its own name.
    for (const lines of [python, node, cpp]) expectDatasetClassIds(lines, pkg.metadata);
    expectSamePredictions(python, recorded(pkg), SAME_RUNTIME, 'python');
    expectSamePredictions(node, recorded(pkg), SAME_RUNTIME, 'node');
    expectSamePredictions(cpp, recorded(pkg), OTHER_RUNTIME, 'c++');

    // INFERENCE_MODEL_PATH: a test run on this package's model.onnx (uint8 NHWC input, softmax
    // inside, a fixed batch of 1) instead of exporting the checkpoint again: the PyTorch run's
    // accuracy and top classes, and results.json names the model it ran.
    const modelPath = `s3://${s3.config.bucket}/export-jobs/exp-timm-onnx/model.onnx`;
    const pytorch = await graphTestRun('tr-graph-pytorch', 'timm', { INFERENCE_BACKEND: 'pytorch' });
    const reused = await graphTestRun('tr-graph-reused', 'timm', { INFERENCE_BACKEND: 'auto', INFERENCE_MODEL_PATH: modelPath });
    expect(reused.doc.model.inference_backend).toMatchObject({
      name: 'onnx',
      requested: 'auto',
      export_seconds: null,
      model_path: modelPath,
      reason: expect.stringContaining('INFERENCE_MODEL_PATH'),
    });
    expect(pytorch.doc.model.inference_backend.model_path).toBeNull();
    expect(Math.abs(reused.done.overall_metrics.accuracy - pytorch.done.overall_metrics.accuracy)).toBeLessThanOrEqual(0.002);
    expect(reused.doc.results.map((r: any) => r.predictions.class_id)).toEqual(pytorch.doc.results.map((r: any) => r.predictions.class_id));
    // A model exported from another checkpoint is refused (exit 2, INFERENCE_MODEL_PATH): test/python/test_inference_backend.py.
  });

  it('timm to TorchScript with static int8 (convolutions too, calibrated): a quarter of the size, the drop in metadata, the Python wrapper runs it', async () => {
    // Five validation images: one flipped prediction is a drop of 0.2, so the gate is opened; the figures are what is checked.
    const { done, pkg } = await exportJob('exp-timm-ts', 'timm', {
      EXPORT_FORMAT: 'torchscript',
      QUANTIZATION_TYPE: 'static',
      QUANTIZATION_DTYPE: 'int8',
      OPTIMIZATION_LEVEL: '2',
      ACCURACY_DROP_MAX: '1',
    });
    expect(done.export_path).toBe(`s3://${s3.config.bucket}/export-jobs/exp-timm-ts/model.torchscript`);
    const details = pkg.metadata.optimization.quantization_details;
    expect(details).toMatchObject({ type: 'static', dtype: 'int8', method: expect.stringContaining('FX graph mode, x86 backend') });
    // resnet10t is convolutions: int8 weights everywhere make the file about a quarter of float32's.
    expect(pkg.metadata.model.size_mb).toBeLessThan(details.unquantized_size_mb * 0.35);
    expect(details.accuracy_drop).toBe(done.validation_metrics.accuracy_drop);
    expect(pkg.metadata.optimization.passes).toEqual(
      expect.arrayContaining([expect.stringMatching(/^torch FX static int8 quantization .* calibrated on \d+ images$/), 'torch.jit.freeze']),
    );
    expect(pkg.metadata.runtime.wrappers).toEqual(['python']);
    expectSamePredictions(runPythonWrapper(pkg), recorded(pkg), SAME_RUNTIME, 'python torchscript');
  });

  it("OPTIMIZATION_LEVEL=3 to ONNX: ONNX Runtime's own fused operators baked in, so the package leaves out the C++ wrapper and says why", async () => {
    const { done, pkg } = await exportJob('exp-timm-level3', 'timm', { EXPORT_FORMAT: 'onnx', OPTIMIZATION_LEVEL: '3' });
    expect(done.validation_metrics.max_abs_output_diff).toBeLessThan(1e-3);
    expect(pkg.metadata.optimization.passes).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^onnxslim /),
        expect.stringMatching(/basic graph optimizations/),
        expect.stringMatching(/ORT_ENABLE_ALL/),
      ]),
    );
    expect(pkg.metadata.runtime).toMatchObject({
      wrappers: ['python', 'node'],
      engines: ['onnxruntime'],
      absent_wrappers: [{ wrapper: 'cpp', reason: expect.stringContaining("OPTIMIZATION_LEVEL=3 baked ONNX Runtime's own operators (com.microsoft") }],
    });
    expect(existsSync(join(pkg.dir, 'runtimes', 'cpp'))).toBe(false);
    expect(readFileSync(join(pkg.dir, 'README.md'), 'utf8')).toContain('### Runtimes not in this package');
    expectSamePredictions(runPythonWrapper(pkg), recorded(pkg), SAME_RUNTIME, 'python');
    expectSamePredictions(runNodeWrapper(pkg), recorded(pkg), SAME_RUNTIME, 'node');
  });

  it('BATCH_SIZE=2: the model takes a fixed batch of two, which validation and the wrappers fill with copies of one image', async () => {
    const { done, pkg } = await exportJob('exp-timm-batch', 'timm', { EXPORT_FORMAT: 'onnx', BATCH_SIZE: '2' });
    expect(pkg.metadata.performance.batch_size).toBe(2);
    expect(pkg.metadata.model.inputs).toEqual([{ name: 'images', shape: [2, 32, 32, 3], dtype: 'uint8' }]);
    expect(done.validation_metrics.accuracy_drop).toBe(0);
    expectSamePredictions(runPythonWrapper(pkg), recorded(pkg), SAME_RUNTIME, 'python');
    expectSamePredictions(runNodeWrapper(pkg), recorded(pkg), SAME_RUNTIME, 'node');
    // OpenCV 4.6 cannot run a batch-2 uint8 NHWC graph: the package says so instead of shipping a wrapper that fails.
    expect(pkg.metadata.runtime.absent_wrappers).toEqual([{ wrapper: 'cpp', reason: expect.stringContaining('uint8 NHWC input of batch 2') }]);
  });

  it('INCLUDE_PREPROCESSING=false and INCLUDE_POSTPROCESSING=false: the Python wrapper maps tensors to raw outputs', async () => {
    const { pkg } = await exportJob('exp-timm-raw', 'timm', { EXPORT_FORMAT: 'onnx', INCLUDE_PREPROCESSING: 'false', INCLUDE_POSTPROCESSING: 'false' });
    expect(pkg.metadata.preprocessing).toMatchObject({ included: false, embedded: false, resize: { method: 'resize_shorter_center_crop' } });
    expect(pkg.metadata.optimization).toMatchObject({ include_preprocessing: false, include_postprocessing: false });
    expect(pkg.expected).toBeUndefined(); // no samples: the wrappers print no predictions to compare
    const script =
      'import json, numpy as np; from model_wrapper import ModelWrapper; print(json.dumps([list(o.shape) for o in ModelWrapper().predict(np.zeros((1, 3, 32, 32), np.float32))]))';
    const r = spawnSync(defaultPythonBin(), ['-c', script], { cwd: join(pkg.dir, 'runtimes', 'python'), encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual([[1, 3]]);
    const example = spawnSync(defaultPythonBin(), ['example.py'], { cwd: join(pkg.dir, 'runtimes', 'python'), encoding: 'utf8' });
    expect(example.status).toBe(2);
    expect(example.stderr).toContain('exported with INCLUDE_PREPROCESSING=false: call ModelWrapper.predict(tensor)');
  });

  // timm and transformers share this path (a traced module, coremltools): the transformers model is the one tested here, a conv net in test/python/test_mobile_export.py.
  it('transformers ViT to CoreML (float16): an ML program checked structurally, since Core ML predicts on macOS only; metadata says so', async () => {
    const jobId = 'exp-vit-coreml';
    const env = jobEnv(s3, backend, jobId, {
      TASK_TYPE: 'image_classification',
      MODEL_NAME: FIXTURES.vit.modelName,
      CHECKPOINT_PATH: `s3://${s3.config.bucket}/checkpoints/job-fixture-vit/best.pt`,
      EXPORT_FORMAT: 'coreml',
      QUANTIZATION_TYPE: 'dynamic',
      QUANTIZATION_DTYPE: 'float16',
      ENABLE_VALIDATION: 'true',
      VALIDATION_DATASET_ID: 'ds-export-vit',
      BATCH_SIZE: '1',
    });
    const result = await runCli(['export'], env, { timeoutMs: 420_000 });
    expect(result.code, result.stdout.slice(-3000) + result.stderr.slice(-3000)).toBe(0);
    const callbacks = backend.receiver.received.filter((c) => c.jobId === jobId);
    const stages = callbacks.filter((c) => c.kind === 'exportProgress').map((c) => (c.body as { stage: string }).stage);
    expect([...new Set(stages)]).toEqual(['downloading', 'converting', 'optimizing', 'validating', 'packaging', 'uploading']);
    const done = callbacks.find((c) => c.kind === 'exportDone')!.body as Record<string, any>;
    expect(done).toMatchObject({
      status: 'succeeded',
      export_path: `s3://${s3.config.bucket}/export-jobs/${jobId}/model.coreml`,
      // Nothing ran the model: no accuracy and no latency are claimed.
      validation_metrics: null,
      model_info: {
        inference_speed_ms: null,
        input_shape: [1, 3, 32, 32],
        output_shape: [1, 3],
        engine: expect.stringContaining('Core ML runs models on macOS and iOS only'),
      },
    });
    const pkg = await downloadPackage(s3.storage(), jobId);
    expect(pkg.metadata).toMatchObject({
      export_format: 'coreml',
      model: {
        file: 'model.mlpackage',
        directory: true,
        inputs: [{ name: 'images', shape: [1, 3, 32, 32], dtype: 'float32' }],
        outputs: [{ name: 'probabilities', shape: [1, 3] }],
        architecture: 'ViTForImageClassification',
        class_ids: [3, 7, 11],
      },
      optimization: { quantization: 'dynamic', quantization_details: { dtype: 'float16', method: 'CoreML float16 weights' } },
      runtime: { wrappers: ['swift', 'python'], engines: ['coreml'] },
      structural_validation: {
        method: 'structural',
        passed: true,
        predictions_compared: false,
        reason: expect.stringContaining('export jobs run on Linux'),
        checks: expect.arrayContaining(["one input 'images' of shape [1, 3, 32, 32]", "output 'probabilities' holds the checkpoint's 3 classes"]),
      },
    });
    expect(pkg.metadata.performance).toBeUndefined();
    expect(pkg.metadata.validation).toBeUndefined();
    expect(pkg.metadata.optimization.passes).toEqual(
      expect.arrayContaining([expect.stringMatching(/^coremltools 9\.0 ML program from torch\.jit\.trace \(float16/)]),
    );
    expect(readFileSync(join(pkg.dir, 'README.md'), 'utf8')).toContain('**Validation**: structural only');
    // The package's model loads back with coremltools as a float16 ML program; its Python wrapper says where it runs.
    const check = spawnSync(
      defaultPythonBin(),
      [
        '-c',
        'import sys, coremltools as ct; s = ct.utils.load_spec(sys.argv[1]); print(s.WhichOneof("Type"), s.description.input[0].type.multiArrayType.shape)',
        join(pkg.dir, 'model.mlpackage'),
      ],
      { encoding: 'utf8' },
    );
    expect(check.stdout.trim()).toBe('mlProgram [1, 3, 32, 32]');
    for (const file of ['model_wrapper.py', 'example.py', 'requirements.txt']) expect(existsSync(join(pkg.dir, 'runtimes', 'python', file))).toBe(true);
    expect(readFileSync(join(pkg.dir, 'runtimes', 'python', 'requirements.txt'), 'utf8')).toContain('coremltools>=9.0');
    const wrapper = spawnSync(defaultPythonBin(), ['example.py'], { cwd: join(pkg.dir, 'runtimes', 'python'), encoding: 'utf8' });
    expect(wrapper.status).not.toBe(0);
    expect(wrapper.stderr).toContain('CoreML models run on macOS and iOS only (Core ML); this is Linux');
  }, 480_000);

  it('timm to TFLite with static int8 (litert-torch PT2E, calibrated): full integer down to the int8 input, validated in the LiteRT interpreter, the Python wrapper gives the recorded top-k', async () => {
    // Five validation images: one flipped prediction is a drop of 0.2, so the gate is opened; the figures are what is checked.
    const { done, pkg } = await exportJob('exp-timm-tflite', 'timm', {
      EXPORT_FORMAT: 'tflite',
      QUANTIZATION_TYPE: 'static',
      QUANTIZATION_DTYPE: 'int8',
      ACCURACY_DROP_MAX: '1',
    });
    expect(done.export_path).toBe(`s3://${s3.config.bucket}/export-jobs/exp-timm-tflite/model.tflite`);
    expect(done.validation_metrics).toMatchObject({ exported_runtime: 'python tflite runtime (package wrapper)' });
    expect(done.validation_metrics.accuracy_drop).toBeCloseTo(done.validation_metrics.original_accuracy - done.validation_metrics.accuracy, 6);
    // The model's own input is int8 (the wrappers quantize the normalised tensor with its scale and zero point).
    expect(pkg.metadata.model.inputs).toEqual([
      { name: expect.any(String), shape: [1, 3, 32, 32], dtype: 'int8', quantization: { scale: expect.any(Number), zero_point: expect.any(Number) } },
    ]);
    // INCLUDE_POSTPROCESSING's softmax is an op the PT2E quantizer leaves float: the probabilities come out float32.
    expect(pkg.metadata.model.outputs).toEqual([expect.objectContaining({ shape: [1, 3], dtype: 'float32' })]);
    const details = pkg.metadata.optimization.quantization_details;
    expect(details).toMatchObject({
      type: 'static',
      dtype: 'int8',
      method: expect.stringContaining('PT2E'),
      accuracy_drop: done.validation_metrics.accuracy_drop,
    });
    // int8 weights everywhere: about a quarter of the float32 file.
    expect(pkg.metadata.model.size_mb).toBeLessThan(details.unquantized_size_mb * 0.35);
    expect(pkg.metadata.optimization.passes).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^litert-torch 0\.10\.0/),
        expect.stringMatching(/^litert-torch PT2E static int8 .*; int8 input, float32 output\), calibrated on \d+ images$/),
      ]),
    );
    expect(pkg.metadata.runtime.wrappers).toEqual(['python', 'kotlin']);
    expect(readFileSync(join(pkg.dir, 'runtimes', 'python', 'requirements.txt'), 'utf8')).toContain('ai-edge-litert');
    expectSamePredictions(runPythonWrapper(pkg), recorded(pkg), SAME_RUNTIME, 'python tflite');
  }, 480_000);

  it('transformers ViT to TFLite (float16 weights): validated in the LiteRT interpreter, the Python wrapper gives the recorded top-k', async () => {
    const tflite = await exportJob('exp-vit-tflite', 'vit', { EXPORT_FORMAT: 'tflite', QUANTIZATION_TYPE: 'dynamic', QUANTIZATION_DTYPE: 'float16' });
    expect(tflite.done.validation_metrics).toMatchObject({ exported_runtime: 'python tflite runtime (package wrapper)', accuracy_drop: 0 });
    expect(tflite.pkg.metadata).toMatchObject({
      model: { framework: 'huggingface', architecture: 'ViTForImageClassification', inputs: [{ shape: [1, 3, 32, 32], dtype: 'float32' }] },
      optimization: { quantization_details: { dtype: 'float16', method: 'LiteRT float16 weights (computed in float32)' } },
      runtime: { wrappers: ['python', 'kotlin'], engines: ['tflite'] },
    });
    expect(tflite.pkg.metadata.model.size_mb).toBeLessThan(tflite.pkg.metadata.optimization.quantization_details.unquantized_size_mb);
    expectSamePredictions(runPythonWrapper(tflite.pkg), recorded(tflite.pkg), SAME_RUNTIME, 'python tflite vit');
  }, 480_000);

  it('transformers ViT to ONNX and OpenVINO; the wrappers give the recorded top-k', async () => {
    const onnx = await exportJob('exp-vit-onnx', 'vit', { EXPORT_FORMAT: 'onnx' });
    expect(onnx.pkg.metadata).toMatchObject({
      // transformers numbers the classes by dataset id: square 3, circle 7, triangle 11.
      model: { framework: 'huggingface', architecture: 'ViTForImageClassification', class_names: ['square', 'circle', 'triangle'], class_ids: [3, 7, 11] },
      preprocessing: { resize: { method: 'resize' } },
      // ViT's LayerNormalization: OpenCV 4.6 (the C++ wrapper's engine) cannot load the graph.
      runtime: { wrappers: ['python', 'node'], absent_wrappers: [{ wrapper: 'cpp', reason: expect.stringContaining('LayerNormalization') }] },
    });
    const [python, node] = [runPythonWrapper(onnx.pkg), runNodeWrapper(onnx.pkg)];
    for (const lines of [python, node]) expectDatasetClassIds(lines, onnx.pkg.metadata);
    expectSamePredictions(python, recorded(onnx.pkg), SAME_RUNTIME, 'python');
    expectSamePredictions(node, recorded(onnx.pkg), SAME_RUNTIME, 'node');

    const ov = await exportJob('exp-vit-openvino', 'vit', { EXPORT_FORMAT: 'openvino' });
    expect(ov.done.export_path).toBe(`s3://${s3.config.bucket}/export-jobs/exp-vit-openvino/model.openvino`);
    // INCLUDE_POSTPROCESSING (default true): the softmax is in the model, so the wrappers read probabilities.
    expect(ov.pkg.metadata.model.outputs).toEqual([{ name: 'probabilities', shape: [1, 3], dtype: 'float32' }]);
    expect(ov.pkg.metadata.postprocessing).toMatchObject({ embedded: true, softmax: { apply: false } });
    // OpenVINO is converted from the ONNX graph, normalisation included.
    expect(ov.pkg.metadata.preprocessing).toMatchObject({ embedded: true, data_type: 'uint8', layout: 'NHWC' });
    expect(ov.pkg.metadata.model.inputs).toEqual([{ name: 'images', shape: [1, 32, 32, 3], dtype: 'uint8' }]);
    expectSamePredictions(runPythonWrapper(ov.pkg), recorded(ov.pkg), SAME_RUNTIME, 'python openvino');

    // INFERENCE_MODEL_PATH at the OpenVINO export (model.openvino, the IR folder zipped): auto runs it on
    // OpenVINO, the uint8 input and the softmax read as the metadata says, with PyTorch's predictions.
    const irPath = `s3://${s3.config.bucket}/export-jobs/exp-vit-openvino/model.openvino`;
    const pytorch = await graphTestRun('tr-vit-pytorch', 'vit', { INFERENCE_BACKEND: 'pytorch' });
    const reused = await graphTestRun('tr-vit-reused-ir', 'vit', { INFERENCE_BACKEND: 'auto', INFERENCE_MODEL_PATH: irPath });
    expect(reused.doc.model.inference_backend).toMatchObject({
      name: 'openvino',
      requested: 'auto',
      export_seconds: null,
      model_path: irPath,
      reason: "auto: INFERENCE_MODEL_PATH names an export job's OpenVINO model",
    });
    expect(Math.abs(reused.done.overall_metrics.accuracy - pytorch.done.overall_metrics.accuracy)).toBeLessThanOrEqual(0.002);
    expect(reused.doc.results.map((r: any) => r.predictions.class_id)).toEqual(pytorch.doc.results.map((r: any) => r.predictions.class_id));
    // ONNX Runtime does not read IR: refused before anything downloads (exit 2, naming the variable).
    const refused = await runCli(['infer'], graphTestEnv('tr-vit-ir-onnx', 'vit', { INFERENCE_BACKEND: 'onnx', INFERENCE_MODEL_PATH: irPath }), {
      timeoutMs: 60_000,
    });
    expect(refused.code).toBe(2);
    expect(refused.stdout + refused.stderr).toContain('names an OpenVINO IR model, which ONNX Runtime does not read');
  });

  it('transformers ViT to TorchScript with dynamic int8 (every nn.Linear): smaller, the accuracy drop in metadata, the Python wrapper runs it', async () => {
    const { done, pkg } = await exportJob('exp-vit-ts', 'vit', {
      EXPORT_FORMAT: 'torchscript',
      QUANTIZATION_TYPE: 'dynamic',
      QUANTIZATION_DTYPE: 'int8',
      OPTIMIZATION_LEVEL: '2',
      ACCURACY_DROP_MAX: '1',
    });
    expect(done.export_path).toBe(`s3://${s3.config.bucket}/export-jobs/exp-vit-ts/model.torchscript`);
    const details = pkg.metadata.optimization.quantization_details;
    expect(details).toMatchObject({ type: 'dynamic', dtype: 'int8', method: expect.stringContaining('nn.Linear') });
    expect(details.accuracy_drop).toBe(done.validation_metrics.accuracy_drop);
    // The attention and MLP weights in int8: the tiny ViT's archive loses about 40% (TorchScript's code
    // is a fixed part of it); a ViT-base, whose weights are nearly all Linear, shrinks about fourfold.
    expect(pkg.metadata.model.size_mb).toBeLessThan(details.unquantized_size_mb * 0.7);
    expect(pkg.metadata.optimization.passes).toEqual(expect.arrayContaining(['torch dynamic int8 quantization of nn.Linear layers', 'torch.jit.freeze']));
    expect(pkg.metadata.runtime.wrappers).toEqual(['python']);
    expectSamePredictions(runPythonWrapper(pkg), recorded(pkg), SAME_RUNTIME, 'python torchscript');
  });

  it('CLIP zero-shot to ONNX: the class prompts are baked in, so the wrappers classify images alone', async () => {
    const { done, pkg } = await exportJob('exp-clip-onnx', 'clip', { EXPORT_FORMAT: 'onnx' });
    expect(done.validation_metrics.original_accuracy).toBe(done.validation_metrics.accuracy);
    expect(pkg.metadata).toMatchObject({
      task_type: 'zero_shot_classification',
      model: { architecture: 'CLIPModel', inputs: [{ name: 'images', shape: [1, 32, 32, 3] }] },
    });
    // CLIP multiplies cosine similarities by its logit scale (exp(4.6052) = 100): float32 noise of
    // 1e-7 between two onnxruntime builds' kernels becomes ~1e-5 in the probabilities.
    const clipTolerance = { ...SAME_RUNTIME, confidence: SAME_RUNTIME.confidence * 100 };
    expect([...pkg.metadata.model.class_ids].sort((a: number, b: number) => a - b)).toEqual([3, 7, 11]);
    const [python, node] = [runPythonWrapper(pkg), runNodeWrapper(pkg)];
    for (const lines of [python, node]) expectDatasetClassIds(lines, pkg.metadata);
    expectSamePredictions(python, recorded(pkg), clipTolerance, 'python');
    expectSamePredictions(node, recorded(pkg), clipTolerance, 'node');
  });
});
