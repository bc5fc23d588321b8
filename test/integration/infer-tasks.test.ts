/**
 * Test runs for the other tasks and frameworks, through the CLI against SeaweedFS and the
 * receiver: ultralytics segmentation (masks as polygons, mask mAP) and pose (keypoints, OKS
 * mAP), timm (ResNet) and transformers (ViT, CLIP zero-shot) classifiers trained a moment before
 * by `vision-trainer train`, with Grad-CAM on each architecture's default layer.
 */
import { describe, expect, it } from 'vitest';
import { cpuHasNativeBf16 } from '../../src/dev/cpu.js';
import { loadDataset } from '../../src/datasets/load.js';
import { resolveSplits } from '../../src/datasets/splits.js';
import type { TaskType } from '../../src/config/tasks.js';
import { runCli } from '../helpers/cli.js';
import { expectDatasetIds, expectLoopTiming, inferEnv, pngsUnder, readResults, trainTinyModel, type TrainedModel } from '../helpers/inference.js';
import { useCallbackReceiver } from '../helpers/receiver.js';
import { TINY_CLIP, TINY_VIT } from '../helpers/classifier-runs.js';
import { useS3Server } from '../helpers/s3.js';
import { contractClassIds } from '../helpers/synthetic.js';

const s3 = useS3Server();
const backend = useCallbackReceiver();

const doneOf = (jobId: string) =>
  backend.receiver.received.find((c) => c.jobId === jobId && (c.kind === 'testRunDone' || c.kind === 'inferenceJobDone'))?.body as
    | Record<string, any>
    | undefined;

async function valIds(model: TrainedModel, task: TaskType): Promise<string[]> {
  const dataset = await loadDataset(model.dataset.root, { taskType: task });
  const splits = resolveSplits(dataset);
  return dataset.images.filter((i) => splits.get(i.id) === 'val').map((i) => i.id);
}

async function testRun(model: TrainedModel, jobId: string, task: TaskType, extra: Record<string, string> = {}) {
  const result = await runCli(
    ['infer'],
    inferEnv(s3, backend, jobId, { INFERENCE_TYPE: 'test_run', TASK_TYPE: task, CHECKPOINT_PATH: model.checkpointUri, DATASET_ID: model.datasetId, ...extra }),
    { timeoutMs: 240_000 },
  );
  expect(result.code, result.stdout.slice(-4000) + result.stderr.slice(-3000)).toBe(0);
  expect(backend.receiver.requests.filter((r) => r.status !== 200)).toEqual([]);
  const doc = await readResults(s3.storage(), `test_runs/${jobId}/results.json`);
  expect(doc.results.map((r) => r.image_id)).toEqual(await valIds(model, task));
  const done = doneOf(jobId)!;
  expectDatasetIds(model, done, doc);
  return { done, doc };
}

/** Non-contiguous dataset ids, not in name order, for every model trained here. */
const ids = (task: TaskType) => ({ classIds: contractClassIds(task === 'pose_estimation' ? 1 : 3) });

describe('ultralytics segmentation and pose', () => {
  it('segmentation: mask mAP primary, box mAP beside; outlines in predictions and ground truth; EigenCAM', async () => {
    const model = await trainTinyModel(s3, backend, 'instance_segmentation', 'yolo11n-seg', 'infer-seg', {}, ids('instance_segmentation'));
    const { done, doc } = await testRun(model, 'tr-seg', 'instance_segmentation', {
      CONFIDENCE_THRESHOLD: '0.001',
      MAX_VISUALIZATIONS: '2',
      ENABLE_XAI: 'true',
      XAI_METHOD: 'eigencam',
    });
    expect(done.status).toBe('succeeded');
    for (const key of ['mAP50', 'mAP50-95', 'box_mAP50', 'box_mAP50-95']) expect(typeof done.overall_metrics[key]).toBe('number');
    for (const r of doc.results) {
      for (const o of (r.ground_truth as { objects: Array<{ segmentation?: number[][] }> }).objects)
        expect(o.segmentation![0]!.length).toBeGreaterThanOrEqual(6);
      for (const b of (r.predictions as { boxes: Array<{ segmentation?: number[][] }> }).boxes) expect(Array.isArray(b.segmentation)).toBe(true);
    }
    expect(doc.results.filter((r) => r.xai?.method === 'eigencam' && r.xai.error === null)).toHaveLength(2);
    expect(await pngsUnder(s3.storage(), 'test_runs/tr-seg/visualizations/')).toHaveLength(2);
  });

  it('pose: OKS mAP primary; keypoints on every predicted and true object', async () => {
    const model = await trainTinyModel(s3, backend, 'pose_estimation', 'yolo11n-pose', 'infer-pose', {}, ids('pose_estimation'));
    const { done, doc } = await testRun(model, 'tr-pose', 'pose_estimation', { CONFIDENCE_THRESHOLD: '0.001', MAX_VISUALIZATIONS: '1' });
    for (const key of ['mAP50', 'mAP50-95', 'box_mAP50']) expect(typeof done.overall_metrics[key]).toBe('number');
    const kpts = doc.model.keypoint_shape![0]!;
    for (const r of doc.results) {
      for (const o of (r.ground_truth as { objects: Array<{ keypoints?: number[][] }> }).objects) expect(o.keypoints).toHaveLength(kpts);
      for (const b of (r.predictions as { boxes: Array<{ keypoints?: number[][] }> }).boxes) expect(b.keypoints).toHaveLength(kpts);
    }
  });
});

describe('timm and transformers classifiers', () => {
  it('timm ResNet: test run with Grad-CAM on its last feature map; an inference job that reads the framework from the checkpoint', async () => {
    const model = await trainTinyModel(s3, backend, 'image_classification', 'resnet18', 'infer-timm', { FRAMEWORK: 'timm' }, ids('image_classification'));
    // The prefetch asked for explicitly (auto would leave it off: timm computes on every CPU of the
    // budget), so that the plain run below checks it changes no prediction.
    const { done, doc } = await testRun(model, 'tr-timm', 'image_classification', { FRAMEWORK: 'timm', ENABLE_XAI: 'true', PREFETCH_NEXT_BATCH: 'true' });
    expect(typeof done.overall_metrics.accuracy).toBe('number');
    expect(done.confusion_matrix).toHaveLength(3);
    expect(doc.model).toMatchObject({ framework: 'timm', model_name: 'resnet18', architecture: 'resnet18' });
    // At 32 px ResNet's layer4 is 1x1; the last map with an extent is layer3.
    expect(doc.model.xai_layers).toEqual(['layer3']);
    expect(doc.results.every((r) => r.xai?.error === null && r.visualization_path !== null)).toBe(true);
    expect(doc.model.inference_backend).toMatchObject({ name: 'pytorch', xai_backend: 'pytorch' });
    expectLoopTiming(doc.timing, true);
    // By default a batch decodes on the CPU budget's threads, and Python's allocator keeps freed memory.
    const ran = doc.model.inference_backend;
    expect(ran.decode_threads).toBe(ran.cpu_threads);
    expect(ran).toMatchObject({
      prefetch: true,
      prefetch_reason: 'PREFETCH_NEXT_BATCH',
      malloc_tunables: expect.stringMatching(/^glibc\.malloc\.mmap_threshold=268435456:/),
      memory_format: 'channels_last',
      omp_spin_count: '10000',
    });

    // The native loop's way (one decoding thread, glibc's defaults, no prefetch):
    // the settings reach Python, and the predictions are the same (in batches of 2 here: the
    // kernels may round differently at another batch size).
    const plain = await testRun(model, 'tr-timm-plain', 'image_classification', {
      FRAMEWORK: 'timm',
      DECODE_THREADS: '1',
      RETAIN_FREED_MEMORY: 'false',
      PREFETCH_NEXT_BATCH: 'false',
      BATCH_SIZE: '2',
    });
    expect(plain.doc.model.inference_backend).toMatchObject({
      decode_threads: 1,
      prefetch: false,
      prefetch_reason: 'PREFETCH_NEXT_BATCH',
      malloc_tunables: null,
    });
    type Top5 = { top5: Array<{ class_id: number; confidence: number }> };
    plain.doc.results.forEach((r, i) => {
      const expected = (doc.results[i]!.predictions as Top5).top5;
      const got = (r.predictions as Top5).top5;
      expect(got.map((c) => c.class_id)).toEqual(expected.map((c) => c.class_id));
      got.forEach((c, k) => expect(Math.abs(c.confidence - expected[k]!.confidence)).toBeLessThan(1e-5));
    });
    expect(plain.done.overall_metrics.accuracy).toBe(done.overall_metrics.accuracy);

    // INFERENCE_BACKEND=onnx: the same top-5 from the exported graph, accuracy within 0.002;
    // the heatmaps still come from the PyTorch model.
    const onnx = await testRun(model, 'tr-timm-onnx', 'image_classification', { FRAMEWORK: 'timm', ENABLE_XAI: 'true', INFERENCE_BACKEND: 'onnx' });
    expect(onnx.doc.model.inference_backend).toMatchObject({
      name: 'onnx',
      runtime: expect.stringMatching(/^onnxruntime /),
      device: 'cpu',
      xai_backend: 'pytorch',
    });
    expect(Math.abs(onnx.done.overall_metrics.accuracy - done.overall_metrics.accuracy)).toBeLessThanOrEqual(0.002);
    expect(onnx.doc.model.xai_layers).toEqual(['layer3']);
    onnx.doc.results.forEach((r, i) => {
      const expected = (doc.results[i]!.predictions as Top5).top5;
      const got = (r.predictions as Top5).top5;
      expect(got.map((c) => c.class_id)).toEqual(expected.map((c) => c.class_id));
      got.forEach((c, k) => expect(Math.abs(c.confidence - expected[k]!.confidence)).toBeLessThan(1e-4));
      expect(r.xai).toMatchObject({ error: null, method: 'gradcam' });
    });

    // INFERENCE_PRECISION=bf16: OpenVINO in bfloat16 where the CPU has it natively (else float32,
    // said so). 8 bits of mantissa move the probabilities (by ~3e-4 on this model); a top-1 may
    // change only where PyTorch's own margin between its first two classes is within twice that.
    const bf16 = await testRun(model, 'tr-timm-bf16', 'image_classification', {
      FRAMEWORK: 'timm',
      INFERENCE_BACKEND: 'openvino',
      INFERENCE_PRECISION: 'bf16',
    });
    const nativeBf16 = cpuHasNativeBf16();
    expect(bf16.doc.settings.inference_precision).toBe('bf16');
    expect(bf16.doc.model.inference_backend).toMatchObject({
      name: 'openvino',
      precision_requested: 'bf16',
      precision: nativeBf16 ? 'bf16' : 'fp32',
      precision_reason: nativeBf16 ? 'INFERENCE_PRECISION' : expect.stringMatching(/^this CPU has no native bfloat16/),
    });
    expect(doc.model.inference_backend).toMatchObject({ precision: 'fp32', precision_requested: 'fp32', precision_reason: 'INFERENCE_PRECISION' });
    const pairs = bf16.doc.results.map((r, i) => ({ got: (r.predictions as Top5).top5, expected: (doc.results[i]!.predictions as Top5).top5 }));
    const drift = Math.max(
      ...pairs.flatMap(({ got, expected }) => got.map((c) => Math.abs(c.confidence - (expected.find((e) => e.class_id === c.class_id)?.confidence ?? 0)))),
    );
    expect(drift).toBeLessThan(0.01);
    // The job's own account of it: its first batch predicted again in float32 and compared.
    const check = bf16.doc.model.inference_backend.precision_check;
    expect(doc.model.inference_backend.precision_check).toBeUndefined();
    if (!nativeBf16) expect(check).toBeUndefined();
    else {
      expect(check).toMatchObject({ against: 'pytorch float32', compared: 'top-1 class', images: expect.any(Number) });
      const first = pairs.slice(0, check!.images);
      expect(check!.agreement).toBe(first.filter(({ got, expected }) => got[0]!.class_id === expected[0]!.class_id).length / first.length);
      expect(check!.max_score_difference).toBeGreaterThan(0);
      expect(check!.max_score_difference).toBeLessThanOrEqual(drift + 1e-9);
    }
    let nearTies = 0;
    for (const [i, { got, expected }] of pairs.entries()) {
      const margin = expected[0]!.confidence - (expected[1]?.confidence ?? 0);
      if (margin <= 2 * drift) nearTies += 1;
      else expect(got[0]!.class_id, `image ${i}: top-1 at a margin of ${margin.toFixed(4)}`).toBe(expected[0]!.class_id);
    }
    expect(Math.abs(bf16.done.overall_metrics.accuracy - done.overall_metrics.accuracy)).toBeLessThanOrEqual(nearTies === 0 ? 0.002 : nearTies / pairs.length);

    // Kernel SHAP (captum) over superpixels, a bounded number of model evaluations per image.
    const shap = await testRun(model, 'tr-timm-shap', 'image_classification', {
      FRAMEWORK: 'timm',
      ENABLE_XAI: 'true',
      XAI_METHOD: 'shap',
      XAI_SAMPLES: '40',
      MAX_VISUALIZATIONS: '2',
    });
    expectPerturbationXai(shap.doc, 'shap', 2);

    const storage = s3.storage();
    const inputs = model.dataset.annotations.images as Array<{ file_name: string }>;
    const uris: string[] = [];
    for (const [i, image] of inputs.slice(0, 3).entries()) {
      await storage.uploadFile(`${model.dataset.root}/images/${image.file_name}`, `inference-inputs/ij-timm/${i}.png`);
      uris.push(`s3://${s3.config.bucket}/inference-inputs/ij-timm/${i}.png`);
    }
    const job = await runCli(
      ['infer'],
      inferEnv(s3, backend, 'ij-timm', {
        INFERENCE_TYPE: 'inference_job',
        TASK_TYPE: 'image_classification',
        CHECKPOINT_PATH: model.checkpointUri,
        IMAGE_PATHS: JSON.stringify(uris),
      }),
      { timeoutMs: 240_000 },
    );
    expect(job.code, job.stdout.slice(-3000) + job.stderr.slice(-2000)).toBe(0);
    const results = await readResults(storage, 'inference_jobs/ij-timm/results.json');
    expect(results.model.framework).toBe('timm');
    expect(results.results.map((r) => (r.predictions as { top5: unknown[] }).top5.length)).toEqual([3, 3, 3]);
  });

  it('transformers ViT: Grad-CAM on the tokens entering the last attention; FRAMEWORK=ultralytics on its checkpoint is refused', async () => {
    const model = await trainTinyModel(
      s3,
      backend,
      'image_classification',
      'vit-base-patch16-224',
      'infer-vit',
      {
        HF_CONFIG_OVERRIDES: JSON.stringify(TINY_VIT),
      },
      ids('image_classification'),
    );
    const { done, doc } = await testRun(model, 'tr-vit', 'image_classification', { ENABLE_XAI: 'true', XAI_METHOD: 'gradcam' });
    expect(typeof done.overall_metrics.top5_accuracy).toBe('number');
    expect(doc.model).toMatchObject({ framework: 'huggingface', architecture: 'ViTForImageClassification' });
    // After the last attention, patch tokens no longer reach the class token: the default is the norm before it.
    expect(doc.model.xai_layers).toEqual([expect.stringMatching(/^vit\.(encoder\.)?layers?\.1\.layernorm_before$/)]);
    expect(doc.results.every((r) => r.xai?.error === null && (r.xai.gradcam?.top_regions.length ?? 0) > 0)).toBe(true);

    // Attention rollout through the ViT's layers: the class token's attention over the patches.
    const rollout = await testRun(model, 'tr-vit-attention', 'image_classification', { ENABLE_XAI: 'true', XAI_METHOD: 'attention', MAX_VISUALIZATIONS: '2' });
    expectPerturbationXai(rollout.doc, 'attention', 2);
    for (const r of rollout.doc.results.filter((r) => r.xai !== null)) expect(r.xai!.attention!.max_activation).toBeGreaterThan(0);

    const wrong = await runCli(
      ['infer'],
      inferEnv(s3, backend, 'fw-mismatch', {
        INFERENCE_TYPE: 'test_run',
        TASK_TYPE: 'image_classification',
        FRAMEWORK: 'ultralytics',
        CHECKPOINT_PATH: model.checkpointUri,
        DATASET_ID: model.datasetId,
      }),
      { timeoutMs: 240_000 },
    );
    expect(wrong.code).toBe(2);
    expect(doneOf('fw-mismatch')!.error_message).toContain('FRAMEWORK="ultralytics": FRAMEWORK=ultralytics, but the checkpoint was written by huggingface');
  });

  it('transformers CLIP zero-shot: a test run over the class prompts', async () => {
    const model = await trainTinyModel(
      s3,
      backend,
      'image_classification',
      'clip-vit-base-patch32',
      'infer-clip',
      {
        TASK_TYPE: 'zero_shot_classification',
        HF_CONFIG_OVERRIDES: JSON.stringify(TINY_CLIP),
      },
      ids('image_classification'),
    );
    const { done, doc } = await testRun(model, 'tr-clip', 'zero_shot_classification', {
      ENABLE_XAI: 'true',
      XAI_METHOD: 'lime',
      XAI_SAMPLES: '40',
      MAX_VISUALIZATIONS: '3',
    });
    expect(typeof done.overall_metrics.accuracy).toBe('number');
    // transformers numbers the classes in ascending dataset id.
    const byId = model.dataset.classIds.map((id, i) => ({ id, name: model.dataset.classNames[i]! })).sort((a, b) => a.id - b.id);
    expect(doc.model).toMatchObject({ framework: 'huggingface', task: 'classify', class_names: byId.map((c) => c.name), class_ids: byId.map((c) => c.id) });
    // LIME (captum) over superpixels explains the predicted class of the sample's images.
    expectPerturbationXai(doc, 'lime', 3);
  });
});

/** LIME/SHAP: the sampled images carry the method's statistics (Grad-CAM's fields), no layers, a stored overlay. */
function expectPerturbationXai(doc: Awaited<ReturnType<typeof testRun>>['doc'], method: 'lime' | 'shap' | 'attention', sampled: number) {
  expect(doc.model.xai_layers).toEqual([]);
  const explained = doc.results.filter((r) => r.xai !== null);
  expect(explained).toHaveLength(sampled);
  for (const r of explained) {
    expect(r.xai).toMatchObject({ method, error: null, target: { class_id: (r.predictions as { class_id: number }).class_id } });
    const stats = r.xai![method]!;
    // A weak tiny model may find no superpixel in favour of its class (an all-zero heatmap): the numbers are there either way.
    expect(stats.max_activation).toBeGreaterThanOrEqual(0);
    expect(Array.isArray(stats.top_regions)).toBe(true);
    expect(r.xai!.heatmap_path).toMatch(/\/xai\/\d{6}-.*\.png$/);
  }
}
