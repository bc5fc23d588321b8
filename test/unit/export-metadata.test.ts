/** metadata.json, the generated package texts and latency summaries (src/jobs/export/). */
import { describe, expect, it } from 'vitest';
import { designProblems } from '../helpers/design-contract.js';
import { dockerfile, nodePackageJson, pythonRequirements, readme } from '../../src/jobs/export/docs.js';
import { percentile, summarize } from '../../src/jobs/export/latency.js';
import { MetadataSchema, buildMetadata, type MetadataInput, type ValidationReport } from '../../src/jobs/export/metadata.js';
import { packageRuntimes, quantizationRule } from '../../src/jobs/export/formats.js';

const input: MetadataInput = {
  format: 'openvino',
  taskType: 'pose_estimation',
  modelName: 'yolo11n-pose',
  framework: 'ultralytics',
  architecture: 'yolo11n-pose',
  inputSize: [64, 64],
  classNames: ['person'],
  classIds: [4],
  keypointShape: [17, 3],
  inputs: [{ name: 'images', shape: [1, 3, 64, 64], dtype: 'float32' }],
  outputs: [{ name: 'output0', shape: [1, 56, 84], dtype: 'float32' }],
  sizeBytes: 11.5 * 1024 ** 2,
  sourceCheckpoint: 's3://vision-platform/checkpoints/job-1/best.pt',
  versions: { ultralytics: '8.4.190' },
  preprocessing: {
    resize: { method: 'letterbox', size: [64, 64], fill_value: 114, interpolation: 'bilinear' },
    normalize: { method: 'divide', mean: [0, 0, 0], std: [255, 255, 255] },
    channel_order: 'RGB',
    data_type: 'float32',
    layout: 'NCHW',
    embedded: false,
    included: true,
  },
  postprocessing: {
    output_layout: 'output0 [batch, 4 + classes + K*3, anchors]',
    nms: { method: 'nms', class_aware: true, iou_threshold: 0.45, confidence_threshold: 0.25, max_detections: 300 },
    coordinate_format: 'xyxy',
    box_units: 'pixels',
    embedded: false,
    included: true,
  },
  optimization: {
    level: 1,
    quantization: 'dynamic',
    quantization_details: { type: 'dynamic', dtype: 'float16', method: 'OpenVINO float16 weight compression', unquantized_size_mb: null, accuracy_drop: null },
    include_preprocessing: true,
    include_postprocessing: true,
    passes: [],
  },
};

const validation: ValidationReport = {
  accuracy: 0.41,
  original_accuracy: 0.42,
  accuracy_drop: 0.01,
  passed: true,
  metric: 'mAP50-95',
  threshold: 0.02,
  num_samples: 8,
  max_abs_output_diff: 0.003,
  mean_abs_output_diff: 0.0001,
  latency_ms: { exported: { p50: 3.1, p95: 4.2 }, original: { p50: 18.5, p95: 20.1 } },
  exported_metrics: { 'mAP50-95': 0.41 },
  original_metrics: { 'mAP50-95': 0.42 },
  exported_runtime: 'python openvino runtime (package wrapper)',
  dataset_id: 'ds-val',
  split: 'val',
};

describe('metadata.json', () => {
  it("lays out the design's sections, with the format's file layout and runtimes", () => {
    const m = buildMetadata(input, new Date('2026-01-02T03:04:05Z'));
    expect(m).toMatchObject({
      format_version: '1.0',
      export_format: 'openvino',
      generated_at: '2026-01-02T03:04:05.000Z',
      model: { file: 'model.openvino', directory: true, num_classes: 1, class_names: ['person'], class_ids: [4], keypoints: { shape: [17, 3] }, size_mb: 11.5 },
      optimization: { quantization: 'dynamic', quantization_details: { type: 'dynamic', dtype: 'float16' } },
      runtime: { engines: ['openvino'], wrappers: ['python'] },
    });
    expect(Object.keys(m)).toEqual([
      'format_version',
      'export_format',
      'task_type',
      'model_name',
      'generated_at',
      'model',
      'preprocessing',
      'postprocessing',
      'runtime',
      'optimization',
    ]);
    expect(MetadataSchema.parse({ ...m, validation })).toHaveProperty('validation.metric', 'mAP50-95');
    expect(designProblems('metadata', m)).toEqual([]);
  });

  it('refuses what a wrapper could not run: an unknown resize, a bad threshold, no outputs', () => {
    const m = buildMetadata(input);
    expect(MetadataSchema.safeParse({ ...m, preprocessing: { ...m.preprocessing, resize: { method: 'stretch', size: [64, 64] } } }).success).toBe(false);
    expect(() => buildMetadata({ ...input, postprocessing: { ...input.postprocessing, nms: { ...input.postprocessing.nms!, iou_threshold: 2 } } })).toThrow();
    expect(() => buildMetadata({ ...input, outputs: [] })).toThrow();
  });
});

describe('package texts', () => {
  it('README states the measured and validated figures, and the Dockerfile copies a folder model as a folder', () => {
    const m = {
      ...buildMetadata(input),
      validation,
      performance: { inference_speed_ms: 3.1, p95_ms: 4.2, runs: 20, warmup_runs: 3, batch_size: 1, engine: 'openvino', device: 'cpu', cpu_threads: 2 },
    };
    const text = readme(m, { hasSamples: true });
    expect(text).toContain('# yolo11n-pose: pose estimation (OPENVINO)');
    expect(text).toContain('- **Latency**: 3.1 ms median, 4.2 ms p95 per batch of 1 (openvino, cpu, 2 CPU threads, 20 runs)');
    expect(text).toContain('| original | 0.4200 | 18.5 / 20.1 ms |');
    expect(text).toContain('Drop: 0.0100 (allowed: 0.02)');
    expect(text).toContain('keypoints per box');
    expect(text).toContain('1 classes (class id: name): 4: person.');
    expect(text).toContain('- **Quantization**: dynamic float16: OpenVINO float16 weight compression');
    expect(text).not.toContain('runtimes/node');
    expect(dockerfile('openvino', m)).toContain('COPY model.openvino/ ./model.openvino/');
    expect(pythonRequirements('openvino').split('\n')).toEqual(['openvino>=2024.0', 'numpy>=1.23', 'opencv-python-headless>=4.8', '']);
    expect(JSON.parse(nodePackageJson('1.30.0', 'Yolo11n Pose'))).toMatchObject({
      name: 'yolo11n-pose-runtime',
      type: 'module',
      dependencies: { 'onnxruntime-node': '1.30.0' },
    });
  });
});

describe('runtimes a package ships', () => {
  const float = { operators: [':Conv', ':Relu', ':Gemm'], quantization: undefined };
  it('a float32 ONNX graph of standard operators: every wrapper and engine of the format', () => {
    expect(packageRuntimes('onnx', float)).toEqual({ wrappers: ['python', 'node', 'cpp'], engines: ['onnxruntime', 'opencv_dnn', 'tensorrt'], absent: [] });
  });

  it("leaves out the C++ wrapper (OpenCV DNN) for a dynamically quantized, a float16 or ONNX Runtime's own graph, saying why", () => {
    const dynamic = packageRuntimes('onnx', {
      operators: [':ConvInteger', ':DynamicQuantizeLinear'],
      quantization: quantizationRule('timm', 'onnx', 'dynamic', 'int8'),
    });
    expect(dynamic.wrappers).toEqual(['python', 'node']);
    expect(dynamic.engines).toEqual(['onnxruntime', 'tensorrt']);
    expect(dynamic.absent).toEqual([{ wrapper: 'cpp', reason: expect.stringContaining('dynamically quantized (ConvInteger, DynamicQuantizeLinear)') }]);
    const half = packageRuntimes('onnx', { operators: [':Cast', ':Conv'], quantization: quantizationRule('timm', 'onnx', 'dynamic', 'float16') });
    expect(half.absent[0]!.reason).toContain('this float16 graph (dynamic quantization) needs ONNX Runtime');
    const fused = packageRuntimes('onnx', { operators: [':Gemm', 'com.microsoft.nchwc:Conv', 'com.microsoft.nchwc:ReorderOutput'], quantization: undefined });
    expect(fused).toMatchObject({ wrappers: ['python', 'node'], engines: ['onnxruntime'] });
    expect(fused.absent[0]!.reason).toContain("OPTIMIZATION_LEVEL=3 baked ONNX Runtime's own operators (com.microsoft.nchwc: Conv, ReorderOutput)");
  });

  it("leaves out the C++ wrapper for a transformer's LayerNormalization (OpenCV 4.6 cannot create the layer)", () => {
    const segformer = packageRuntimes('onnx', { operators: [':Conv', ':LayerNormalization', ':MatMul', ':Resize'], quantization: undefined });
    expect(segformer).toMatchObject({ wrappers: ['python', 'node'], engines: ['onnxruntime', 'tensorrt'] });
    expect(segformer.absent).toEqual([{ wrapper: 'cpp', reason: expect.stringContaining('uses LayerNormalization (opset 17') }]);
  });

  it("leaves out the C++ wrapper for a graph with NMS built in (OpenCV's DNN has no NonMaxSuppression) and for a uint8 NHWC input of batch > 1", () => {
    const nms = packageRuntimes('onnx', { operators: [':Conv', ':NonMaxSuppression', ':DynamicQuantizeLinear'], quantization: undefined, pixelInputBatch: 1 });
    expect(nms).toMatchObject({ wrappers: ['python', 'node'], engines: ['onnxruntime', 'tensorrt'] });
    expect(nms.absent).toEqual([{ wrapper: 'cpp', reason: expect.stringContaining('INCLUDE_POSTPROCESSING=true: ONNX NonMaxSuppression') }]);
    expect(packageRuntimes('onnx', { operators: [':Conv', ':Cast'], quantization: undefined, pixelInputBatch: 1 }).absent).toEqual([]);
    const batch = packageRuntimes('onnx', { operators: [':Conv', ':Cast'], quantization: undefined, pixelInputBatch: 2 });
    expect(batch).toMatchObject({ wrappers: ['python', 'node'], absent: [{ wrapper: 'cpp', reason: expect.stringContaining('uint8 NHWC input of batch 2') }] });
  });

  it('the README of a package whose graph normalises says the caller resizes and feeds uint8 NHWC pixels; with NMS in the graph, that the wrappers only filter', () => {
    const pre = { ...input.preprocessing, data_type: 'uint8' as const, layout: 'NHWC' as const, embedded: true };
    const post = {
      output_layout: 'output0 [batch, max_detections, 6 + extras]',
      nms: { method: 'nms' as const, class_aware: true, iou_threshold: 0.45, confidence_threshold: 0.25, max_detections: 300, min_confidence: 0.001 },
      coordinate_format: 'xyxy' as const,
      embedded: true,
      included: true,
    };
    const m = buildMetadata({ ...input, format: 'onnx', taskType: 'object_detection', preprocessing: pre, postprocessing: post });
    const text = readme(m, { hasSamples: false });
    expect(text).toMatch(/the model normalises and transposes in its graph .* uint8 NHWC \[batch, \d+, \d+, 3\]\. Resizing stays outside the model/);
    expect(text).toContain('class-aware NMS at IoU 0.45 runs in the model (INCLUDE_POSTPROCESSING=true; it keeps scores above 0.001');
  });

  it('metadata.json and the README name the absent wrapper and the reason', () => {
    const runtimes = packageRuntimes('onnx', { operators: ['com.microsoft:FusedConv'], quantization: undefined });
    const m = buildMetadata({ ...input, format: 'onnx', runtimes });
    expect(m.runtime).toMatchObject({ wrappers: ['python', 'node'], absent_wrappers: [{ wrapper: 'cpp', reason: runtimes.absent[0]!.reason }] });
    const text = readme(m, { hasSamples: false });
    expect(text).toContain('### Runtimes not in this package');
    expect(text).toContain(`- **cpp**: ${runtimes.absent[0]!.reason}`);
    expect(text).not.toContain('### C++');
  });
});

describe('latency', () => {
  it('interpolates percentiles between ranks', () => {
    expect(percentile([4, 1, 3, 2], 50)).toBe(2.5);
    expect(percentile([10], 95)).toBe(10);
    expect(summarize(Array.from({ length: 21 }, (_, i) => i))).toEqual({ p50: 10, p95: 19 });
  });
});
